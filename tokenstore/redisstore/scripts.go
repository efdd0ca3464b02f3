package redisstore

import "github.com/redis/go-redis/v9"

// The scripts run atomically in Redis (https://redis.io/docs/latest/develop/programmability/eval-intro/):
// nothing else runs between their check and their write. Each touches one
// grant's keys and the index of grants.

// lockScript takes a grant's lock (SET NX PX, https://redis.io/docs/latest/develop/use/patterns/distributed-locks/)
// and, in the same step, its marker: the hash field holder, naming the
// lock's owner until the holder's tokens are written or it releases with
// nothing to write. A marker left by another owner means a holder whose
// lock expired (it died, or it or Redis paused) and that may have spent
// the refresh token: this holder waits, calling the script again (which
// keeps the lock it took alive), until the marker goes (the previous
// holder wrote, or released) or for grace. The wait is measured on
// Redis's clock from when a holder first found that marker (orphaned_at),
// so that waiters whose ctx ends one after another add up to one grace.
// A marker that is the caller's own is no other holder's: the script ran
// before, and its answer was lost (go-redis sends it again on a new
// connection when the first one breaks).
//
// It returns {"ok", ""}; {"ok", the previous marker} when it took over
// after the grace; {"wait", marker}; or {"busy", ""} when another
// replica holds the lock.
//
//	KEYS[1] lock, KEYS[2] grant hash; ARGV[1] owner, ARGV[2] TTL in milliseconds, ARGV[3] grace in milliseconds
var lockScript = redis.NewScript(`
local l = redis.call('GET', KEYS[1])
if not l then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif l == ARGV[1] then
	redis.call('PEXPIRE', KEYS[1], ARGV[2])
else
	return {'busy', ''}
end
local h = redis.call('HGET', KEYS[2], 'holder')
if h == ARGV[1] then
	h = false
end
if h then
	local t = redis.call('TIME')
	local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
	local since = tonumber(redis.call('HGET', KEYS[2], 'orphaned_at'))
	if not since then -- none yet (or not a number: changed by hand)
		redis.call('HSET', KEYS[2], 'orphaned_at', now)
		since = now
	end
	if now - since < tonumber(ARGV[3]) then
		return {'wait', h}
	end
end
redis.call('HSET', KEYS[2], 'holder', ARGV[1])
redis.call('HDEL', KEYS[2], 'orphaned_at')
return {'ok', h or ''}`)

// releaseScript deletes the lock if it is still ours (the owner value is
// random per holder): a holder whose lock expired must not release the
// lock another replica took since (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/).
// With ARGV[2] = "1" it clears our marker too: nothing of ours is left to
// write. A holder whose write's outcome is unknown leaves its marker. The
// lock goes first: an error (a grant's hash changed by hand into another
// type) stops a script, but keeps what it did before.
//
//	KEYS[1] lock, KEYS[2] grant hash; ARGV[1] owner, ARGV[2] "1" to clear the marker
var releaseScript = redis.NewScript(`
local n = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
	n = redis.call('DEL', KEYS[1])
end
if ARGV[2] == '1' and redis.call('HGET', KEYS[2], 'holder') == ARGV[1] then
	redis.call('HDEL', KEYS[2], 'holder', 'orphaned_at')
end
return n`)

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
// still ours OR our marker is still there (see lockScript), AND the
// grant's version is still the one read under the lock (compare-and-swap).
// A holder whose lock expired but whose marker nobody replaced knows that
// nobody started a refresh since (the next holder waits for the marker),
// so its write is safe; one whose marker was taken over after the grace
// never writes over what the next holder wrote. It returns
// {"ok", new version}, {"lock", 0} or {"version", current version}.
// ARGV[11] = "1" clears our marker with the write (the tokens are in);
// a write-back before fn leaves it.
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
//	ARGV[8] lowest version to continue from, ARGV[9] changes channel, ARGV[10] message,
//	ARGV[11] "1" to clear the marker
var writeScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'op') == ARGV[3] then
	return {'ok', tonumber(redis.call('HGET', KEYS[1], 'version'))}
end
local marked = redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
if redis.call('GET', KEYS[2]) ~= ARGV[1] and not marked then
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
if marked and ARGV[11] == '1' then
	redis.call('HDEL', KEYS[1], 'holder', 'orphaned_at')
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return {'ok', nv}`)
