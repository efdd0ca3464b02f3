package redisstore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.uber.org/zap"
)

// heldLock is a grant's lock this Store holds: SET lock owner NX PX ttl,
// extended every ttl/3 by a goroutine while the holder works, released by
// its owner only (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/,
// single instance), and the marker taken with it (see lockScript). The
// lock is advisory: what makes a write safe is the fence of writeScript,
// which checks the owner again.
type heldLock struct {
	key, hash, owner string
	stop, done       chan struct{}
	unqueue          func()
	// unfinished: new tokens whose write's outcome is unknown (Redis did
	// not answer); the release leaves the marker, so that the next holder
	// waits for their write rather than refresh from the grant before them.
	unfinished bool
}

// Lock waits back off from 5ms to 200ms between attempts, with jitter so
// that replicas do not retry in step. A holder waiting for a previous
// holder's marker looks again every markerPoll.
const (
	firstBackoff = 5 * time.Millisecond
	maxBackoff   = 200 * time.Millisecond
	markerPoll   = 100 * time.Millisecond
)

// lock takes the lock of the grant g, and its marker, waiting as long as
// ctx allows: first behind this Store's other goroutines, then for other
// replicas, then for a previous holder that never finished (see
// lockScript), at most the grace. Observer.LockWait is told the whole
// wait.
func (s *Store) lock(ctx context.Context, g names) (*heldLock, error) {
	start := time.Now()
	q, _ := s.queues.LoadOrStore(g.hash, make(chan struct{}, 1))
	queue := q.(chan struct{})
	select {
	case queue <- struct{}{}:
	case <-ctx.Done():
		return nil, s.waitError(g, ctx.Err())
	}
	l := &heldLock{key: g.lock, hash: g.hash, owner: s.replica + " " + randomHex(8), stop: make(chan struct{}), done: make(chan struct{}),
		unqueue: func() { <-queue }}
	if err := s.acquire(ctx, g, l); err != nil {
		l.unqueue()
		return nil, err
	}
	if s.obs != nil {
		s.obs.LockWait(time.Since(start))
	}
	go s.extend(l)
	return l, nil
}

// acquire runs lockScript until it answers "ok". While it answers "wait"
// the lock is ours (each call keeps it alive) and we wait for another
// holder's marker; a wait that ctx ends releases it.
func (s *Store) acquire(ctx context.Context, g names, l *heldLock) error {
	backoff, waiting := firstBackoff, ""
	for {
		res, err := lockScript.Run(ctx, s.rdb, []string{g.lock, g.hash}, l.owner, s.ttl.Milliseconds(), s.grace.Milliseconds()).StringSlice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("unexpected answer from the lock script: %d values", len(res))
		}
		if err != nil {
			// The script may have run, its answer lost or late; Redis may
			// hang: released in the background, which Close waits for,
			// so as not to add a second timeout to the caller's.
			s.releasing.Add(1)
			go func() {
				defer s.releasing.Done()
				s.abandon(l)
			}()
			if ctx.Err() != nil {
				return s.waitError(g, ctx.Err())
			}
			return s.unavailable("taking the lock of "+g.grant, err)
		}
		pause := markerPoll
		switch res[0] {
		case "ok":
			if res[1] != "" {
				s.log.Warn("took over a grant whose previous lock holder never finished (it died, or was cut off from Redis) within the grace: "+
					"its refresh, if it made one, may have spent the refresh token",
					zapStore(s), zap.String("grant", g.grant), zap.String("previous_holder", holder(res[1])), zap.Duration("grace", s.grace))
			}
			return nil
		case "wait":
			if waiting == "" {
				s.log.Info("the grant's previous lock holder never finished; waiting for its write before refreshing",
					zapStore(s), zap.String("grant", g.grant), zap.String("previous_holder", holder(res[1])), zap.Duration("grace", s.grace))
			}
			waiting = res[1]
		default: // busy: another replica holds the lock (it may have taken ours while Redis paused)
			waiting = ""
			pause = backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, maxBackoff)
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			if waiting != "" {
				s.abandon(l)
			}
			return s.waitError(g, ctx.Err())
		}
	}
}

// abandon releases the lock of a wait that did not end with the lock
// taken, and our marker with it (fn has not run: nothing of ours is left
// to write); another holder's marker stays. A wait for another's marker
// held the lock; a lock script whose answer was lost or late (ctx ended
// during the call) may have taken it, and left alone it would hold the
// grant for the lock's TTL and then, through its marker, the next
// holder's grace.
func (s *Store) abandon(l *heldLock) {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	_ = releaseScript.Run(ctx, s.rdb, []string{l.key, l.hash}, l.owner, 1).Err() // else it expires
}

// extend keeps l alive every ttl/3 until released; it stops when the lock
// turns out to be no longer ours (then the fenced write relies on the
// marker).
func (s *Store) extend(l *heldLock) {
	defer close(l.done)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
		n, err := extendScript.Run(ctx, s.rdb, []string{l.key}, l.owner, s.ttl.Milliseconds()).Int()
		cancel()
		// An error (Redis unreachable for a moment) is tried again at the
		// next tick; the lock may still be ours.
		if err == nil && n == 0 {
			return
		}
	}
}

// unlock stops the extension and releases l if it is still ours, and its
// marker unless l.unfinished. A failed release leaves the lock to expire
// after its TTL, and the marker to the next holder's grace.
func (s *Store) unlock(l *heldLock) {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	clear := 1
	if l.unfinished {
		clear = 0
	}
	if err := releaseScript.Run(ctx, s.rdb, []string{l.key, l.hash}, l.owner, clear).Err(); err != nil {
		s.log.Warn("could not release a grant's lock in Redis; it expires by itself", zapStore(s), zap.Error(err))
	}
	l.unqueue()
}

// holder is the replica named by a lock's owner value ("<replica> <random>").
func holder(owner string) string {
	if i := strings.LastIndexByte(owner, ' '); i >= 0 {
		return owner[:i]
	}
	return owner
}

// randomHex is n random bytes in hex: what tells apart two holders, or
// two writes, of one replica. (crypto/rand.Read never fails.)
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
