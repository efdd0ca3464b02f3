package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

var _ tokenstore.Backend = (*Store)(nil)

// Redis names (see the package doc).
const (
	prefix         = "coop-proxy:"
	indexKey       = prefix + "grants"
	changesChannel = prefix + "changes"
)

// names are the Redis keys of one grant.
type names struct {
	grant string // Key.String(): the index member and the seal's associated data
	hash  string // coop-proxy:{<16 hex>}: the grant's hash
	lock  string // <hash>:lock
}

func nameOf(k tokenstore.Key) names {
	grant := k.String()
	sum := sha256.Sum256([]byte(grant))
	// The braces are a Cluster hash tag: a grant's hash and its lock
	// share a slot, as a script touching both needs.
	hash := prefix + "{" + hex.EncodeToString(sum[:8]) + "}"
	return names{grant: grant, hash: hash, lock: hash + ":lock"}
}

// state is a grant as read from its hash.
type state struct {
	exists    bool  // the hash exists (a record or a tombstone)
	deleted   bool  // a tombstone
	version   int64 // 0 when the hash does not exist
	record    tokenstore.Record
	encoded   []byte // the record, opened; nil when there is none
	writtenAt time.Time
	writer    string
}

// read reads the grant g and opens its record.
func (s *Store) read(ctx context.Context, g names) (state, error) {
	vals, err := s.rdb.HMGet(ctx, g.hash, "record", "version", "deleted", "written_at", "writer").Result()
	if err == nil && len(vals) != 5 {
		// Not Redis, or not a Redis that keeps to its protocol.
		err = fmt.Errorf("unexpected answer to HMGET: %d values, not 5", len(vals))
	}
	if err != nil {
		return state{}, s.unavailable("reading "+g.grant, err)
	}
	var st state
	if v, ok := vals[1].(string); ok {
		st.exists = true
		if st.version, err = strconv.ParseInt(v, 10, 64); err != nil {
			s.report("corrupt")
			return state{}, fmt.Errorf("redisstore: %s: grant %q: %w: its version is not a number", s.desc, g.grant, errCorrupt)
		}
	}
	st.deleted = vals[2] == "1"
	st.writer, _ = vals[4].(string)
	if w, ok := vals[3].(string); ok {
		st.writtenAt, _ = time.Parse(time.RFC3339Nano, w)
	}
	sealed, ok := vals[0].(string)
	if !ok {
		return st, nil
	}
	st.encoded, err = s.sealer.open(g.grant, []byte(sealed))
	if err == nil {
		st.record, err = tokenstore.UnmarshalRecord(g.grant, st.encoded)
		if err != nil {
			err = fmt.Errorf("%w: %w", errCorrupt, err)
		}
	}
	if err != nil {
		if errors.Is(err, errUnseal) {
			s.report("unseal")
		} else {
			s.report("corrupt")
		}
		return state{}, fmt.Errorf("redisstore: %s: grant %q: %w", s.desc, g.grant, err)
	}
	return st, nil
}

// locked runs body with the lock of k's grant held and the grant just
// read. When Redis lost the grant (no hash, not even a tombstone) that this
// Store saw since it opened, it first writes back the copy it held.
// body's error is returned unchanged.
func (s *Store) locked(ctx context.Context, k tokenstore.Key, body func(g names, st state, l *heldLock) error) error {
	g := nameOf(k)
	if err := s.finish(ctx, g); err != nil {
		return err
	}
	l, err := s.lock(ctx, g)
	if err != nil {
		return err
	}
	defer s.unlock(l)
	st, err := s.read(ctx, g)
	if err != nil {
		return err
	}
	if !st.exists {
		if st, err = s.writeBack(ctx, g, l); err != nil {
			return err
		}
	}
	return body(g, st, l)
}

// writeBack writes the copy of g this Store saw, if it saw one, into the
// hash Redis lost (it restarted without its data, or was flushed), and
// returns the grant as now stored.
func (s *Store) writeBack(ctx context.Context, g names, l *heldLock) (state, error) {
	s.mu.Lock()
	saw, ok := s.seen[g.grant]
	s.mu.Unlock()
	if !ok {
		return state{}, nil
	}
	r, err := tokenstore.UnmarshalRecord(g.grant, saw.record)
	if err != nil {
		return state{}, err // it was checked when it was seen
	}
	now := time.Now().UTC()
	// The marker stays: fn has yet to run.
	v, err := s.write(ctx, g, fencedWrite{owner: l.owner, floor: saw.version, op: randomHex(8), encoded: saw.record, at: now})
	if err != nil {
		return state{}, err
	}
	s.log.Warn("Redis lost the grant; wrote back the copy this replica held",
		zapStore(s), zap.String("grant", g.grant), zap.Int64("version", v))
	return state{exists: true, version: v, record: r, encoded: saw.record, writtenAt: now, writer: s.replica}, nil
}

// remember keeps the grant as this Store last saw it (nil: deleted).
func (s *Store) remember(grant string, encoded []byte, version int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if encoded == nil {
		delete(s.seen, grant)
		return
	}
	s.seen[grant] = seenGrant{record: encoded, version: version}
}

// Load returns the grant under k without taking its lock: while another
// replica refreshes it, Load returns the record from before. A grant Redis
// lost that this Store saw is written back first (see locked).
func (s *Store) Load(ctx context.Context, k tokenstore.Key) (r tokenstore.Record, ok bool, err error) {
	defer s.observe("load", time.Now(), &err)
	g := nameOf(k)
	st, err := s.read(ctx, g)
	if err != nil {
		return tokenstore.Record{}, false, err
	}
	if !st.exists && s.saw(g.grant) {
		err = s.locked(ctx, k, func(_ names, cur state, _ *heldLock) error {
			st = cur
			return nil
		})
		if err != nil {
			return tokenstore.Record{}, false, err
		}
	}
	s.remember(g.grant, st.encoded, st.version)
	return st.record, st.encoded != nil, nil
}

func (s *Store) saw(grant string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.seen[grant]
	return ok
}

// Keys returns the names (Key.String) of the grants in the store, sorted.
func (s *Store) Keys(ctx context.Context) (keys []string, err error) {
	defer s.observe("keys", time.Now(), &err)
	keys, err = s.rdb.SMembers(ctx, indexKey).Result()
	if err != nil {
		return nil, s.unavailable("listing the grants", err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Update is the locked read-modify-write of the grant under k, with the
// contract of (*tokenstore.Store).Update: it takes the grant's lock (as
// long as ctx allows), reads the grant and calls fn with it; what fn
// returns is written by the fenced write. When the lock was lost meanwhile
// (fn outlived the TTL and another replica took it, or Redis lost it), or
// the grant changed under it, nothing is written and Update returns next
// with a *tokenstore.WriteError wrapping tokenstore.ErrLockLost: the caller
// keeps the tokens pending. A write that fails, or that fewer than
// WaitReplicas replicas acknowledged, is a *tokenstore.WriteError too.
func (s *Store) Update(ctx context.Context, k tokenstore.Key, fn func(cur tokenstore.Record, ok bool) (next *tokenstore.Record, err error)) (out tokenstore.Record, err error) {
	defer s.observe("update", time.Now(), &err)
	var writeErr error
	err = s.locked(ctx, k, func(g names, st state, l *heldLock) error {
		next, err := fn(st.record, st.encoded != nil)
		if err != nil || next == nil {
			out = st.record
			return err
		}
		out = *next
		out.UpdatedAt = time.Now().UTC()
		encoded, err := tokenstore.MarshalRecord(g.grant, out)
		if err != nil {
			writeErr = &tokenstore.WriteError{Path: s.desc, Err: err}
			return nil
		}
		w := fencedWrite{owner: l.owner, version: st.version, op: randomHex(8), encoded: encoded, at: out.UpdatedAt, clearMarker: true}
		var v int64
		v, writeErr = s.write(ctx, g, w)
		if unknownOutcome(v, writeErr) {
			l.unfinished = true
			s.mu.Lock()
			s.unfinished[g.grant] = w
			s.mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return tokenstore.Record{}, err
	}
	return out, writeErr
}

// Delete writes a tombstone over the grant under k (a logout) and reports
// whether there was a record.
func (s *Store) Delete(ctx context.Context, k tokenstore.Key) (existed bool, err error) {
	defer s.observe("delete", time.Now(), &err)
	err = s.locked(ctx, k, func(g names, st state, l *heldLock) error {
		s.remember(g.grant, nil, 0)
		if st.encoded == nil {
			return nil
		}
		existed = true
		_, err := s.write(ctx, g, fencedWrite{owner: l.owner, version: st.version, op: randomHex(8), at: time.Now(), clearMarker: true})
		return err
	})
	return existed, err
}

// fencedWrite is one fenced write of a grant (see writeScript): the same
// op id when it is tried again.
type fencedWrite struct {
	owner          string // the lock's owner value, and the marker's
	version, floor int64  // the version read under the lock; the lowest to continue from
	op             string
	encoded        []byte // the record (nil: a tombstone)
	at             time.Time
	clearMarker    bool // the tokens are in: the marker goes with the write
}

// unknownOutcome reports whether a write's answer (v, err) leaves unknown
// whether it was made: Redis did not answer the script.
func unknownOutcome(v int64, err error) bool {
	return v == 0 && errors.Is(err, tokenstore.ErrUnavailable)
}

// finish tries again the unfinished write of g, if any (see
// Store.unfinished), without the lock: the marker it left fences it. Once
// Redis answers, it is forgotten: made, or fenced off (then its marker,
// if still there, is cleared: the caller's pending tokens are reconciled
// under the lock). It returns an error only while Redis still does not
// answer.
func (s *Store) finish(ctx context.Context, g names) error {
	s.mu.Lock()
	w, ok := s.unfinished[g.grant]
	s.mu.Unlock()
	if !ok {
		return nil
	}
	v, err := s.write(ctx, g, w)
	if unknownOutcome(v, err) {
		return err
	}
	s.mu.Lock()
	delete(s.unfinished, g.grant)
	s.mu.Unlock()
	if v > 0 {
		s.log.Info("a write of new tokens that Redis had not answered is made", zapStore(s), zap.String("grant", g.grant), zap.Int64("version", v))
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ioTimeout)
	defer cancel()
	_ = releaseScript.Run(rctx, s.rdb, []string{g.lock, g.hash}, w.owner, 1).Err() // else the next holder's grace ends it
	return nil
}

// write is the fenced write w of g. It runs even when ctx has ended.
// It returns the new version, or a *tokenstore.WriteError (with the new
// version when the write was made but not acknowledged by enough
// replicas).
func (s *Store) write(ctx context.Context, g names, w fencedWrite) (v int64, err error) {
	defer s.observe("write", time.Now(), &err)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	var sealed []byte
	if w.encoded != nil {
		if sealed, err = s.sealer.seal(g.grant, w.encoded); err != nil {
			return 0, &tokenstore.WriteError{Path: s.desc, Err: err}
		}
	}
	// One connection for the write and its WAIT, which counts the
	// replicas that acknowledged that connection's writes.
	conn := s.rdb.Conn()
	defer conn.Close()
	clear := 0
	if w.clearMarker {
		clear = 1
	}
	res, err := writeScript.Run(ctx, conn, []string{g.hash, g.lock, indexKey},
		w.owner, w.version, w.op, sealed, w.at.UTC().Format(time.RFC3339Nano),
		s.replica, g.grant, w.floor, changesChannel, g.hash, clear).Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("unexpected answer from the write script: %d values", len(res))
	}
	if err != nil {
		return 0, &tokenstore.WriteError{Path: s.desc, Err: s.unavailable("writing "+g.grant, err)}
	}
	got, _ := res[1].(int64)
	switch res[0] {
	case "ok":
	case "lock":
		s.report("lock_lost")
		s.log.Warn("lost the grant's lock and marker before writing (another replica took over); nothing written, the new tokens stay pending",
			zapStore(s), zap.String("grant", g.grant))
		return 0, &tokenstore.WriteError{Path: s.desc, Err: fmt.Errorf("%w: another replica holds it now", tokenstore.ErrLockLost)}
	default:
		s.report("conflict")
		s.log.Warn("the grant changed under its lock; nothing written, the new tokens stay pending",
			zapStore(s), zap.String("grant", g.grant), zap.Int64("read_version", w.version), zap.Int64("version", got))
		return 0, &tokenstore.WriteError{Path: s.desc, Err: fmt.Errorf("%w: the grant is at version %d, not the %d read", tokenstore.ErrLockLost, got, w.version)}
	}
	s.remember(g.grant, w.encoded, got)
	if s.waitN > 0 {
		n, err := conn.Wait(ctx, s.waitN, s.waitT).Result()
		if err != nil || n < int64(s.waitN) {
			s.report("wait")
			cause := fmt.Errorf("written, but %d of the %d replicas required acknowledged it within %v", n, s.waitN, s.waitT)
			if err != nil {
				cause = s.unavailable("waiting for the replicas", err)
			}
			return got, &tokenstore.WriteError{Path: s.desc, Err: cause}
		}
	}
	return got, nil
}

// Info tells the backend, the holder of the grant's lock and its last
// write.
func (s *Store) Info(ctx context.Context, k tokenstore.Key) (info tokenstore.Info, err error) {
	defer s.observe("info", time.Now(), &err)
	info.Backend = s.desc
	g := nameOf(k)
	var owner *redis.StringCmd
	var fields *redis.SliceCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		owner = p.Get(ctx, g.lock)
		fields = p.HMGet(ctx, g.hash, "written_at", "writer")
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return info, s.unavailable("reading "+g.grant, err)
	}
	if o, err := owner.Result(); err == nil {
		info.LockHolder = holder(o)
	}
	vals := fields.Val()
	if len(vals) == 2 {
		if w, ok := vals[0].(string); ok {
			info.WrittenAt, _ = time.Parse(time.RFC3339Nano, w)
		}
		info.Writer, _ = vals[1].(string)
	}
	return info, nil
}

// Changes signals each write or delete of a grant by any replica (the
// write script publishes on coop-proxy:changes), and once each time the
// subscription is made or made again after Redis was unreachable, since
// writes may have been missed meanwhile. The channel is closed when ctx
// ends.
func (s *Store) Changes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	ps := s.rdb.Subscribe(ctx, changesChannel)
	msgs := ps.ChannelWithSubscriptions()
	go func() {
		defer close(out)
		defer ps.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default: // a signal is pending already
				}
			}
		}
	}()
	return out
}

// unavailable wraps a failed Redis call in an error that wraps
// tokenstore.ErrUnavailable and names the store, and reports it. A
// cancelled ctx is the caller's doing: its error is returned as it is.
// WRONGTYPE (https://redis.io/docs/latest/commands/type/: a command on a
// key of another type) is a corrupt grant, not Redis out of reach.
func (s *Store) unavailable(what string, err error) error {
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("redisstore: %s: %s: %w", s.desc, what, err)
	}
	if strings.HasPrefix(err.Error(), "WRONGTYPE ") {
		// Redis answers, but a grant's key holds what the Store never
		// writes there (changed by hand, or by another program sharing
		// the database): no use looking at the network.
		s.report("corrupt")
		return fmt.Errorf("redisstore: %s: %s: %w: a key of the grant (%s*) is not of the type the store writes; "+
			"delete the grant's keys to start it afresh: %w", s.desc, what, errCorrupt, prefix, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		s.report("timeout")
	} else {
		s.report("unreachable")
	}
	return fmt.Errorf("redisstore: %s: %s: %w: %w", s.desc, what, tokenstore.ErrUnavailable, err)
}

// waitError is the error of a wait for a grant's lock that ctx ended.
func (s *Store) waitError(g names, err error) error {
	return fmt.Errorf("redisstore: %s: waiting for the lock of %s: %w", s.desc, g.grant, err)
}

func (s *Store) report(kind string) {
	if s.obs != nil {
		s.obs.Error(kind)
	}
}

func (s *Store) observe(op string, start time.Time, err *error) {
	if s.obs != nil {
		s.obs.Op(op, time.Since(start), *err)
	}
}

func zapStore(s *Store) zap.Field { return zap.String("store", s.desc) }
