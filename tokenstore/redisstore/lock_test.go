//go:build unix

package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/poll"
	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

var key = storetest.KeyA

// increment adds one to the counter kept in UserID.
func increment(cur tokenstore.Record, _ bool) (*tokenstore.Record, error) {
	cur.UserID++
	return &cur, nil
}

// A replica that died holding a grant's lock leaves the lock to its TTL:
// another takes over once it expires, not before.
func TestDeadHoldersLockExpires(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := open(t, srv, Options{Plaintext: true, LockTTL: 5 * time.Second})
	const ttl = 1500 * time.Millisecond
	if err := srv.Client(t).Set(t.Context(), nameOf(key).lock, "dead-replica 0123", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(t.Context(), key); err != nil || info.LockHolder != "dead-replica" {
		t.Fatalf("Info = %+v, %v; want the dead replica as lock holder", info, err)
	}
	start := time.Now()
	if _, err := s.Update(t.Context(), key, increment); err != nil {
		t.Fatal(err)
	}
	// Redis expires keys to the millisecond; a little slack for its clock.
	if d := time.Since(start); d < ttl-100*time.Millisecond {
		t.Errorf("Update took the lock after %v, before the dead holder's TTL of %v", d, ttl)
	}
	if r, _ := storetest.Load(t, s, key); r.UserID != 1 {
		t.Errorf("counter = %d, want 1", r.UserID)
	}
}

// While fn outlives the lock's TTL the holder extends the lock: nobody else
// gets it meanwhile, and the write goes through.
func TestLockExtendedWhileFnRuns(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const ttl = 600 * time.Millisecond
	a := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "a"})
	b := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "b"})
	raw := srv.Client(t)
	inFn := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Update(t.Context(), key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
			close(inFn)
			time.Sleep(4 * ttl)
			return increment(cur, ok)
		})
		done <- err
	}()
	<-inFn
	ctx, cancel := context.WithTimeout(t.Context(), 2*ttl+ttl/2)
	defer cancel()
	_, err := b.Update(ctx, key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		t.Error("a second holder got the lock while the first extended it")
		return nil, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Update = %v, want it to wait until its ctx ended", err)
	}
	if owner, err := raw.Get(t.Context(), nameOf(key).lock).Result(); err != nil || holder(owner) != "a" {
		t.Errorf("lock owner after %v = %q, %v; want a's", 3*ttl, owner, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the holder's Update: %v", err)
	}
	if r, _ := storetest.Load(t, b, key); r.UserID != 1 {
		t.Errorf("counter = %d, want 1", r.UserID)
	}
}

// A holder whose lock expired during fn (simulated by deleting it) and
// that another replica took over after the grace, and wrote: its write is
// fenced off.
func TestFencedWriteAfterLockLost(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	log, logged := logs()
	a := open(t, srv, Options{Plaintext: true, LockTTL: 5 * time.Second, Replica: "a", Log: log})
	b := open(t, srv, Options{Plaintext: true, LockTTL: 5 * time.Second, Grace: 300 * time.Millisecond, Replica: "b"})
	storetest.Put(t, a, key, tokenstore.Record{RefreshToken: "rt-0"})
	raw := srv.Client(t)
	inFn, goOn := make(chan struct{}), make(chan struct{})
	type result struct {
		r   tokenstore.Record
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := a.Update(t.Context(), key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
			close(inFn)
			<-goOn
			return &tokenstore.Record{RefreshToken: "rt-from-a"}, nil
		})
		done <- result{r, err}
	}()
	<-inFn
	if err := raw.Del(t.Context(), nameOf(key).lock).Err(); err != nil {
		t.Fatal(err)
	}
	storetest.Put(t, b, key, tokenstore.Record{RefreshToken: "rt-from-b"})
	close(goOn)
	res := <-done
	var we *tokenstore.WriteError
	if !errors.As(res.err, &we) || !errors.Is(res.err, tokenstore.ErrLockLost) || we.Path != srv.URL() {
		t.Fatalf("Update after its lock was lost = %v; want a *WriteError on %s wrapping ErrLockLost", res.err, srv.URL())
	}
	if res.r.RefreshToken != "rt-from-a" {
		t.Errorf("Update returned %v; want the new tokens, for the caller to keep pending", res.r)
	}
	if r, _ := storetest.Load(t, b, key); r.RefreshToken != "rt-from-b" {
		t.Errorf("the grant holds %s; the fenced-off write must not overwrite b's", r.RefreshToken)
	}
	if logged.FilterMessageSnippet("lost the grant's lock").Len() != 1 {
		t.Errorf("the lost lock was not logged: %v", logged.All())
	}
}

// The fence checks the version too: a grant changed under the lock (by a
// writer that ignored it) is not written over.
func TestFencedWriteAfterVersionChanged(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := open(t, srv, Options{Plaintext: true, LockTTL: 5 * time.Second})
	storetest.Put(t, a, key, tokenstore.Record{RefreshToken: "rt-0"})
	raw := srv.Client(t)
	_, err := a.Update(t.Context(), key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		if err := raw.HIncrBy(t.Context(), nameOf(key).hash, "version", 1).Err(); err != nil {
			t.Fatal(err)
		}
		return &tokenstore.Record{RefreshToken: "rt-1"}, nil
	})
	if !errors.Is(err, tokenstore.ErrLockLost) || !strings.Contains(err.Error(), "version 2, not the 1 read") {
		t.Fatalf("Update of a grant changed under its lock = %v; want ErrLockLost naming the versions", err)
	}
}

// Redis paused beyond the lock's TTL and resumed: the holders' writes are
// fenced so that no two wrote over one version; the counter loses no
// successful increment.
func TestPausedRedisNoTwoWritersOnOneVersion(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const ttl = 500 * time.Millisecond
	var ok, unsure, fenced atomic.Int64 // writes that succeeded, whose outcome is unknown, fenced off
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 3 {
		s := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: string(rune('a' + i))})
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
				_, err := s.Update(ctx, key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
					time.Sleep(ttl / 4) // a token request
					return increment(cur, ok)
				})
				cancel()
				var we *tokenstore.WriteError
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, tokenstore.ErrLockLost):
					fenced.Add(1) // nothing written
				case errors.As(err, &we):
					unsure.Add(1) // the script may have run after the pause
				}
			}
		})
	}
	poll.Until(t, "a few writes", func() bool { return ok.Load() >= 5 })
	srv.Pause()
	time.Sleep(3 * ttl)
	srv.Resume()
	poll.Until(t, "writes after the pause", func() bool { return ok.Load() >= 15 })
	close(stop)
	wg.Wait()
	r, _ := storetest.Load(t, open(t, srv, Options{Plaintext: true}), key)
	t.Logf("counter %d: %d writes succeeded, %d fenced off, %d of unknown outcome", r.UserID, ok.Load(), fenced.Load(), unsure.Load())
	if r.UserID < ok.Load() || r.UserID > ok.Load()+unsure.Load() {
		t.Errorf("counter = %d after %d successful writes and %d of unknown outcome: two holders wrote over one version", r.UserID, ok.Load(), unsure.Load())
	}
}

// A write retried after its answer was lost (the client's retry on a
// timeout) is recognised by its op id: success again, one version.
func TestRetriedWriteIsIdempotent(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := srv.Client(t)
	g := nameOf(key)
	if err := raw.Set(t.Context(), g.lock, "me 01", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	run := func() []any {
		res, err := writeScript.Run(t.Context(), raw, []string{g.hash, g.lock, indexKey},
			"me 01", 0, "op-1", "{}", "2030-01-01T00:00:00Z", "me", g.grant, 0, changesChannel, g.hash, 1).Slice()
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first, again := run(), run()
	if first[0] != "ok" || again[0] != "ok" || first[1] != int64(1) || again[1] != int64(1) {
		t.Errorf("a write and its retry = %v, %v; want ok at version 1 both", first, again)
	}
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu     sync.Mutex
	ops    map[string]int
	errors map[string]int
	waits  int
}

func newRecorder() *recorder { return &recorder{ops: map[string]int{}, errors: map[string]int{}} }

func (r *recorder) Op(op string, _ time.Duration, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops[op]++
}

func (r *recorder) LockWait(time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits++
}

func (r *recorder) Error(kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[kind]++
}

func TestObserverTold(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rec := newRecorder()
	s := open(t, srv, Options{Plaintext: true, Observer: rec})
	storetest.Put(t, s, key, secretRecord)
	storetest.Load(t, s, key)
	_, err := s.Update(t.Context(), key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		// another replica took over: the lock and the marker are not ours
		_ = srv.Client(t).Del(t.Context(), nameOf(key).lock).Err()
		_ = srv.Client(t).HDel(t.Context(), nameOf(key).hash, "holder").Err()
		return &secretRecord, nil
	})
	if !errors.Is(err, tokenstore.ErrLockLost) {
		t.Fatalf("Update = %v", err)
	}
	srv.Kill()
	_, _, _ = s.Load(t.Context(), key)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.ops["update"] != 2 || rec.ops["load"] != 2 || rec.ops["write"] != 2 || rec.waits != 2 ||
		rec.errors["lock_lost"] != 1 || rec.errors["unreachable"] != 1 {
		t.Errorf("observer was told ops %v, %d lock waits, errors %v", rec.ops, rec.waits, rec.errors)
	}
}

// A holder in the middle of fn while Redis is paused beyond the lock's
// TTL, and that stays in fn beyond the grace: on resume the lock has
// expired (Redis keeps expiry times on its clock), another replica takes
// it, waits the grace for the marker, takes over and writes, and the first
// holder's write, on the version it read before, is fenced off.
func TestPausedRedisExpiresHoldersLock(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const ttl = 600 * time.Millisecond
	a := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "a"})
	b := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "b"})
	storetest.Put(t, a, key, tokenstore.Record{RefreshToken: "rt-0"})
	inFn, goOn := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := a.Update(t.Context(), key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
			close(inFn)
			<-goOn
			return &tokenstore.Record{RefreshToken: "rt-from-a"}, nil
		})
		done <- err
	}()
	<-inFn
	srv.Pause()
	time.Sleep(3 * ttl)
	srv.Resume()
	if _, err := b.Update(t.Context(), key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		return &tokenstore.Record{RefreshToken: "rt-from-b"}, nil
	}); err != nil {
		t.Fatalf("b's Update after the pause: %v", err)
	}
	close(goOn)
	if err := <-done; !errors.Is(err, tokenstore.ErrLockLost) {
		t.Errorf("a's Update across the pause = %v; want ErrLockLost", err)
	}
	if r, _ := storetest.Load(t, b, key); r.RefreshToken != "rt-from-b" {
		t.Errorf("the grant holds %s; a's write over the version b replaced must be fenced off", r.RefreshToken)
	}
}

// tokenEndpoint spends refresh tokens as COOP does: each is good once.
type tokenEndpoint struct {
	mu      sync.Mutex
	live    map[string]bool
	issued  int
	refused int
}

func newTokenEndpoint(rt string) *tokenEndpoint {
	return &tokenEndpoint{live: map[string]bool{rt: true}}
}

// refresh spends cur's refresh token for a new one, or counts a refusal.
func (e *tokenEndpoint) refresh(cur tokenstore.Record, _ bool) (*tokenstore.Record, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.live[cur.RefreshToken] {
		e.refused++
		return nil, errors.New("invalid_grant")
	}
	delete(e.live, cur.RefreshToken)
	e.issued++
	rt := fmt.Sprintf("rt-%d", e.issued)
	e.live[rt] = true
	return &tokenstore.Record{RefreshToken: rt}, nil
}

func (e *tokenEndpoint) refusals() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.refused
}

// Redis paused beyond the lock's TTL while a holder's refresh is answered:
// on resume the lock has expired and another replica takes it, but finds
// the holder's marker and waits; the holder's write lands (its marker
// fences it), and the other replica refreshes from the new refresh token.
// No refresh token is spent twice.
func TestPausedRedisHoldersWriteLandsAfterResume(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const ttl = 600 * time.Millisecond
	a := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "a"})
	b := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Grace: time.Minute, Replica: "b"})
	coop := newTokenEndpoint("rt-0")
	storetest.Put(t, a, key, tokenstore.Record{RefreshToken: "rt-0"})
	raw := srv.Client(t)
	inFn, goOn := make(chan struct{}), make(chan struct{})
	aDone := make(chan error, 1)
	go func() {
		_, err := a.Update(t.Context(), key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
			next, err := coop.refresh(cur, ok) // COOP answers; Redis pauses before the write
			close(inFn)
			<-goOn
			return next, err
		})
		aDone <- err
	}()
	<-inFn
	srv.Pause()
	time.Sleep(3 * ttl)
	srv.Resume()
	bDone := make(chan error, 1)
	var bSaw string
	go func() {
		_, err := b.Update(t.Context(), key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
			bSaw = cur.RefreshToken
			return coop.refresh(cur, ok)
		})
		bDone <- err
	}()
	poll.Until(t, "b holding the expired holder's lock and waiting for its marker", func() bool {
		owner, _ := raw.Get(t.Context(), nameOf(key).lock).Result()
		waiting, _ := raw.HExists(t.Context(), nameOf(key).hash, "orphaned_at").Result()
		return holder(owner) == "b" && waiting
	})
	close(goOn)
	if err := <-aDone; err != nil {
		t.Errorf("a's write after the pause = %v; want it made, fenced by its marker", err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("b's Update: %v", err)
	}
	if bSaw != "rt-1" || coop.refusals() != 0 {
		t.Errorf("b refreshed from %q, %d refusals; want a's rt-1, none", bSaw, coop.refusals())
	}
	if r, _ := storetest.Load(t, b, key); r.RefreshToken != "rt-2" {
		t.Errorf("the grant holds %s, want b's rt-2", r.RefreshToken)
	}
	if n, _ := raw.HLen(t.Context(), nameOf(key).hash).Result(); n == 0 || raw.HExists(t.Context(), nameOf(key).hash, "holder").Val() {
		t.Error("a marker is left after both holders finished")
	}
}

// A holder that died with its marker set (its lock expired): the next
// holder waits the grace, counted from the first waiter even when that one
// gave up, then takes over with a warning; a write of the dead holder's
// after that is fenced off.
func TestDeadHoldersMarkerTakenOverAfterGrace(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const grace = 800 * time.Millisecond
	log, logged := logs()
	s := open(t, srv, Options{Plaintext: true, LockTTL: 5 * time.Second, Grace: grace, Replica: "b", Log: log})
	storetest.Put(t, s, key, tokenstore.Record{RefreshToken: "rt-0"})
	raw := srv.Client(t)
	g := nameOf(key)
	if err := raw.HSet(t.Context(), g.hash, "holder", "dead 01").Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), grace/4)
	defer cancel()
	_, err := s.Update(ctx, key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		t.Error("fn called within the grace")
		return nil, nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Update whose ctx ends within the grace = %v", err)
	}
	if raw.Exists(t.Context(), g.lock).Val() != 0 || !raw.HExists(t.Context(), g.hash, "orphaned_at").Val() {
		t.Fatal("a waiter that gave up kept the lock, or the grace's start is not in the hash")
	}
	if _, err := s.Update(t.Context(), key, func(cur tokenstore.Record, _ bool) (*tokenstore.Record, error) {
		return &tokenstore.Record{RefreshToken: cur.RefreshToken + "+b"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < grace-100*time.Millisecond {
		t.Errorf("took over after %v, within the grace of %v", d, grace)
	}
	if logged.FilterMessageSnippet("took over a grant whose previous lock holder never finished").FilterField(zap.String("previous_holder", "dead")).Len() != 1 {
		t.Errorf("the takeover was not logged: %v", logged.All())
	}
	res, err := writeScript.Run(t.Context(), raw, []string{g.hash, g.lock, indexKey},
		"dead 01", 1, "op-dead", "{}", "2030-01-01T00:00:00Z", "dead", g.grant, 0, changesChannel, g.hash, 1).Slice()
	if err != nil || res[0] != "lock" {
		t.Errorf("the dead holder's write after the takeover = %v, %v; want fenced off (lock)", res, err)
	}
	if r, _ := storetest.Load(t, s, key); r.RefreshToken != "rt-0+b" {
		t.Errorf("the grant holds %s", r.RefreshToken)
	}
}

// A write whose outcome is unknown (Redis went away as it was sent) leaves
// its marker; once Redis is back, the holder's next Update makes that
// write first, without the lock another replica took and holds while it
// waits for the marker, which then refreshes from the new refresh token.
func TestUnfinishedWriteMadeBeforeTheNextLock(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Persist: true})
	const ttl = 600 * time.Millisecond
	a := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Replica: "a"})
	b := open(t, srv, Options{Plaintext: true, LockTTL: ttl, Grace: time.Minute, Replica: "b"})
	coop := newTokenEndpoint("rt-0")
	storetest.Put(t, a, key, tokenstore.Record{RefreshToken: "rt-0"})
	_, err := a.Update(t.Context(), key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		next, err := coop.refresh(cur, ok)
		srv.Kill()
		return next, err
	})
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("a's write with Redis gone = %v; want ErrUnavailable", err)
	}
	srv.Restart(true)
	raw := srv.Client(t)
	poll.Until(t, "a's lock expiring", func() bool { return raw.Exists(t.Context(), nameOf(key).lock).Val() == 0 })
	if !raw.HExists(t.Context(), nameOf(key).hash, "holder").Val() {
		t.Fatal("the marker of a write of unknown outcome was cleared")
	}
	bDone := make(chan error, 1)
	var bSaw string
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		_, err := b.Update(ctx, key, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
			bSaw = cur.RefreshToken
			return coop.refresh(cur, ok)
		})
		bDone <- err
	}()
	poll.Until(t, "b waiting for a's marker", func() bool { return raw.HExists(t.Context(), nameOf(key).hash, "orphaned_at").Val() })
	// a's next Update (the caller's Flush of its pending tokens)
	if _, err := a.Update(t.Context(), key, func(cur tokenstore.Record, _ bool) (*tokenstore.Record, error) {
		if cur.RefreshToken == "rt-0" {
			t.Error("a's unfinished write was not made before its next Update")
		}
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := <-bDone; err != nil {
		t.Fatalf("b's Update: %v", err)
	}
	if bSaw != "rt-1" || coop.refusals() != 0 {
		t.Errorf("b refreshed from %q, %d refusals; want a's rt-1, none", bSaw, coop.refusals())
	}
}
