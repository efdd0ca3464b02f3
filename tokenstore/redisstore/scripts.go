package redisstore

import "github.com/redis/go-redis/v9"

// The scripts run atomically in Redis (https://redis.io/docs/latest/develop/programmability/eval-intro/):
// nothing else runs between their check and their write. Each touches one
// grant's keys and the index of grants.

// releaseScript deletes the lock if it is still ours (the owner value is
// random per holder): a holder whose lock expired must not release the
// lock another replica took since (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/).
//
//	KEYS[1] lock; ARGV[1] owner
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0`)

// extendScript sets the lock's TTL again if it is still ours: 1, or 0 when
// it is not (it expired, another replica holds it).
//
//	KEYS[1] lock; ARGV[1] owner, ARGV[2] TTL in milliseconds
var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)

// writeScript is the fenced write: it writes the grant only if the lock is
// still ours AND the grant's version is still the one read under it
// (compare-and-swap), so a holder whose lock expired during a slow token
// request never writes over what the next holder wrote. It returns
// {"ok", new version}, {"lock", 0} or {"version", current version}.
//
// An empty record writes a tombstone (a logout): the record goes, the
// hash stays with deleted=1, so that a grant Redis lost can be told from
// one deleted on purpose. The new version is one more than both the
// current one and ARGV[8]: after Redis lost the grant (version 0) the
// copy written back continues the version this replica saw.
//
// A call with the op id of the last write is that write retried after its
// answer was lost (a timeout, a reconnect): it reports success again
// rather than a conflict with itself.
//
//	KEYS[1] grant hash, KEYS[2] lock, KEYS[3] index of grants
//	ARGV[1] owner, ARGV[2] version read, ARGV[3] op id, ARGV[4] record ("" = tombstone),
//	ARGV[5] written_at, ARGV[6] writer, ARGV[7] grant name (index member),
//	ARGV[8] lowest version to continue from, ARGV[9] changes channel, ARGV[10] message
var writeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'op') == ARGV[3] then
	return {'ok', tonumber(redis.call('HGET', KEYS[1], 'version'))}
end
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
	return {'lock', 0}
end
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[2]) then
	return {'version', v}
end
local nv = math.max(v, tonumber(ARGV[8])) + 1
if ARGV[4] == '' then
	redis.call('HDEL', KEYS[1], 'record')
	redis.call('HSET', KEYS[1], 'deleted', '1', 'version', nv, 'written_at', ARGV[5], 'writer', ARGV[6], 'op', ARGV[3])
	redis.call('SREM', KEYS[3], ARGV[7])
else
	redis.call('HDEL', KEYS[1], 'deleted')
	redis.call('HSET', KEYS[1], 'record', ARGV[4], 'version', nv, 'written_at', ARGV[5], 'writer', ARGV[6], 'op', ARGV[3])
	redis.call('SADD', KEYS[3], ARGV[7])
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {'ok', nv}`)
