package redisstore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// heldLock is a grant's lock this Store holds: SET lock owner NX PX ttl,
// extended every ttl/3 by a goroutine while the holder works, released by
// its owner only (https://redis.io/docs/latest/develop/use/patterns/distributed-locks/,
// single instance). It is advisory: what makes a write safe is the fence
// of writeScript, which checks the owner again.
type heldLock struct {
	key, owner string
	lost       atomic.Bool // an extension found the lock no longer ours
	stop, done chan struct{}
	unqueue    func()
}

// Lock waits back off from 5ms to 200ms between attempts, with jitter so
// that replicas do not retry in step.
const (
	firstBackoff = 5 * time.Millisecond
	maxBackoff   = 200 * time.Millisecond
)

// lock takes the lock of the grant g, waiting as long as ctx allows: first
// behind this Store's other goroutines, then for other replicas.
func (s *Store) lock(ctx context.Context, g names) (*heldLock, error) {
	start := time.Now()
	q, _ := s.queues.LoadOrStore(g.hash, make(chan struct{}, 1))
	queue := q.(chan struct{})
	select {
	case queue <- struct{}{}:
	case <-ctx.Done():
		return nil, s.waitError(g, ctx.Err())
	}
	l := &heldLock{key: g.lock, owner: s.replica + " " + randomHex(8), stop: make(chan struct{}), done: make(chan struct{}),
		unqueue: func() { <-queue }}
	backoff := firstBackoff
	for {
		ok, err := s.rdb.SetNX(ctx, l.key, l.owner, s.ttl).Result()
		if err != nil {
			l.unqueue()
			if ctx.Err() != nil {
				return nil, s.waitError(g, ctx.Err())
			}
			return nil, s.unavailable("taking the lock of "+g.grant, err)
		}
		if ok {
			break
		}
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			l.unqueue()
			return nil, s.waitError(g, ctx.Err())
		}
		backoff = min(2*backoff, maxBackoff)
	}
	if s.obs != nil {
		s.obs.LockWait(time.Since(start))
	}
	go s.extend(l)
	return l, nil
}

// extend keeps l alive every ttl/3 until released; it stops when the lock
// turns out to be no longer ours (then the fenced write refuses).
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
			l.lost.Store(true)
			return
		}
	}
}

// unlock stops the extension and releases l if it is still ours. A failed
// release leaves the lock to expire after its TTL.
func (s *Store) unlock(l *heldLock) {
	close(l.stop)
	<-l.done
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := releaseScript.Run(ctx, s.rdb, []string{l.key}, l.owner).Err(); err != nil {
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
