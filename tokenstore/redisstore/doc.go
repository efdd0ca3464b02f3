// Package redisstore keeps grants in Redis, shared by replicas of the proxy
// on many hosts: a tokenstore.Backend whose Update is the same locked
// read-modify-write as the token file's, with a lock and a fence that hold
// across hosts. Refresh tokens rotate (each refresh kills the one used), so
// two replicas that refresh one grant at once lose it: only the lock stands
// between them.
//
// # URL
//
// redis://[user@]host:port/db, or rediss:// for TLS (Options.CAFile to
// trust a private CA, CertFile and KeyFile for a client certificate).
// Redis Sentinel is go-redis's failover URL (redis.ParseFailoverURL): the
// host is a Sentinel, further Sentinels come as addr= parameters, and
// master_name= names the master, which is what selects Sentinel:
//
//	redis://sentinel-1:26379/0?master_name=coop&addr=sentinel-2:26379&addr=sentinel-3:26379
//
// Other go-redis URL parameters (dial_timeout=...) are accepted. A URL
// never holds a password (Open refuses one): it comes from
// Options.Password, read from a file. SetPassword changes it for new
// connections. Redis Cluster is not supported: a grant's hash and its lock
// share a hash tag, but the index of grants lives in another slot.
//
// With Sentinel, the password is sent to the Sentinels as to the master:
// Sentinels must require the same one, or none (go-redis authenticates
// with HELLO's AUTH default <password>, which a user without a password
// accepts); SetPassword reaches the master's new connections but not the
// Sentinels' (go-redis has no provider for theirs). In go-redis's form a
// user@ is the Sentinels' ACL user and username= the master's. With
// rediss://, each server's certificate is checked against the address it
// is dialled at: the Sentinels' against the URL's, the master's against
// the one the Sentinels give (an IP address unless they announce
// hostnames), which its certificate must name. A server that asks for a
// client certificate when none is set makes the store's errors say so.
//
// Both are tested against real servers (internal/redistest): TLS with and
// without client certificates, and a primary, a replica and a Sentinel
// through a failover.
//
// # Keys
//
// Each grant is a hash, coop-proxy:{<first 16 hex of SHA-256(Key.String())>},
// with the fields
//
//	record      the record (tokenstore.MarshalRecord), sealed (below)
//	version     an integer, one more on every write
//	written_at  RFC 3339 time of the last write
//	writer      the replica that wrote it (Options.Replica)
//	op          a random id of the last write (a retried write is recognised)
//	deleted     "1" for a tombstone: the grant was deleted (a logout)
//	holder      the marker: the owner of the lock whose tokens are not yet
//	            written (see Lock and fence); absent when none
//	orphaned_at when a holder first found the marker of an earlier one
//	            whose lock had expired (Redis's clock, milliseconds)
//
// Its lock is the string <hash>:lock, the set coop-proxy:grants holds the
// names (Key.String) of the grants that have a record, for Keys (they hold
// a client id and a token URL, no secret), and every write publishes the
// grant's hash name on the channel coop-proxy:changes.
//
// # Lock and fence
//
// Update takes the grant's lock with a script that sets <lock> to the
// owner "<replica> <random>" (NX PX <LockTTL>) and, in the same step, the
// grant's marker (the field holder) to the same owner, trying again with
// a growing, jittered back-off (5ms to 200ms) while ctx allows (ctx's
// error is returned as soon as it ends); a Store's own goroutines queue in
// memory first. While fn runs (it may wait for the token endpoint) the
// lock's TTL is extended every LockTTL/3 by a script that checks the
// owner; the lock is released by a script that deletes it only if it is
// still ours. Under the lock Update reads the grant again and gives fn the
// current record.
//
// The lock alone is not enough: a holder paused longer than the TTL (a
// long GC, a SIGSTOPped process, Redis itself paused) may come back after
// another replica took the lock. So the write is fenced: one script writes
// only if the grant's version is still the one read under the lock, AND
// the lock is still ours OR our marker is still there. The marker says
// "a refresh may be under way, its tokens not yet written": it is cleared
// by the write of the tokens, or by the release when there was nothing to
// write. A holder that takes the lock and finds another owner's marker
// (a holder whose lock expired before it finished: dead, or paused) does
// not call fn: it keeps the lock and looks again every 100ms until the
// marker goes (the previous holder wrote, or released with nothing to
// write; then it reads the grant again and fn adopts what was written),
// for at most Options.Grace (default LockTTL), counted on Redis's clock
// from when a holder first found that marker (orphaned_at), so that
// waiters whose ctx ends one after another do not restart it. Then it
// takes over: it replaces the marker with its own, logs at warn that the
// previous holder never finished and that its refresh may have spent the
// refresh token, and calls fn. So a holder whose lock expired but whose
// marker is still there knows nobody has refreshed since, and its write
// lands (after Redis paused beyond the TTL, no refresh token is spent
// twice); one taken over after the grace writes nothing, the Store logs
// that it lost the lock, and Update returns the new record with a
// *tokenstore.WriteError wrapping tokenstore.ErrLockLost: the caller keeps
// the new tokens pending and reconciles. The lock wait that
// Observer.LockWait reports includes the wait for a marker. The usual
// path costs no round trip more than a bare SET NX: the marker is set by
// the lock script, cleared by the write or the release script.
//
// The write runs even when ctx has ended (it may hold a rotated refresh
// token), bounded by its own timeout. When Redis does not answer it (its
// outcome is unknown) the release leaves the marker, and the Store makes
// that write again, with the same op id and fenced by that marker, before
// its next lock of the grant (the caller's next Update: the Flush of its
// pending tokens), without waiting for the lock the next holder keeps
// while it waits for the marker.
//
// # Sealing
//
// Records are sealed with AES-256-GCM (random 96-bit nonce; the grant's
// Key.String() as associated data, so a record copied to another grant
// does not open) and stored as {"v":1,"kid":"<KeyID>","n":...,"ct":...}.
// The first of Options.SealKeys seals; all of them open, so keys rotate by
// putting the new one first: records move to it as they are written.
// Without keys (Options.Plaintext) records are stored as
// {"v":1,"grant":"<Key.String()>","plain":{...}}. A sealed store refuses a
// plaintext record and the reverse, and a record that no key opens is an
// error naming the key ids tried and the record's: one line, no crash, no
// secret.
//
// # Failures
//
// Every Redis call has a dial, read and write timeout of a few seconds, so
// a Redis that hangs holds no caller beyond them, whatever its ctx. A call
// that fails returns an error wrapping tokenstore.ErrUnavailable: the
// caller works from memory and tries again. Open does not connect.
//
// Delete writes a tombstone. A grant whose hash has vanished (Redis
// restarted without its data, or was flushed) although this Store read or
// wrote it since it opened is written back, under the lock and only if
// still absent, from the copy this Store held, with a warning ("Redis lost
// the grant; wrote back the copy this replica held"). That copy may be
// older than another replica's: a replica holding newer tokens pending
// writes them at its next Update.
//
// With Options.WaitReplicas > 0 every write is followed by WAIT on the
// same connection: fewer acknowledgements than asked within WaitTimeout
// make the write not durable (a *tokenstore.WriteError; the record was
// written to the master, and the caller writes it again).
//
// Changes subscribes to coop-proxy:changes and signals each write, and
// each (re)subscription, since writes may have been missed while Redis
// was unreachable.
package redisstore
