package tokensource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/fakeclock"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

func newClock() *fakeclock.Clock { return fakeclock.New(time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)) }

// memStore is an in-memory Store whose writes can be made to fail.
type memStore struct {
	mu        sync.Mutex
	recs      map[string]tokenstore.Record
	failWrite atomic.Bool
	failAll   atomic.Bool // Update fails as when another process holds the lock
	// shared makes it a store shared by replicas; down makes it fail as a
	// shared store out of reach, fence as one whose lock expired during fn.
	shared, down, fence atomic.Bool
	writes              int
}

func (m *memStore) Shared() bool { return m.shared.Load() }

func newMemStore() *memStore { return &memStore{recs: map[string]tokenstore.Record{}} }

// storeLockPath is the lock file named by the error of a failAll store.
const storeLockPath = "/var/lib/coop-proxy/tokens.json.lock"

func (m *memStore) Update(ctx context.Context, k tokenstore.Key, fn func(tokenstore.Record, bool) (*tokenstore.Record, error)) (tokenstore.Record, error) {
	if m.failAll.Load() {
		return tokenstore.Record{}, fmt.Errorf("tokenstore: waiting for the lock %s: %w", storeLockPath, context.DeadlineExceeded)
	}
	if m.down.Load() {
		return tokenstore.Record{}, fmt.Errorf("redis 127.0.0.1:6379: connection refused: %w", tokenstore.ErrUnavailable)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.recs[k.String()]
	next, err := fn(cur, ok)
	if err != nil {
		return tokenstore.Record{}, err
	}
	if next == nil {
		return cur, nil
	}
	if m.failWrite.Load() {
		return *next, &tokenstore.WriteError{Path: "mem", Err: errors.New("no space left on device")}
	}
	if m.fence.Load() {
		return *next, &tokenstore.WriteError{Path: "mem", Err: tokenstore.ErrLockLost}
	}
	m.writes++
	m.recs[k.String()] = *next
	return *next, nil
}

func (m *memStore) get(k tokenstore.Key) (tokenstore.Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.recs[k.String()]
	return r, ok
}

func (m *memStore) put(k tokenstore.Key, r tokenstore.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs[k.String()] = r
}

// fakeGrant issues numbered tokens that live `life`, rotating a refresh
// token like COOP: a refresh token works once.
type fakeGrant struct {
	clock   *fakeclock.Clock
	life    time.Duration
	refresh bool // behave as the refresh grant
	farmer  bool // under farmerKey, an authorization-code grant's key
	calls   atomic.Int32
	gate    chan struct{} // when set, each Fetch waits for it
	mu      sync.Mutex
	err     error
	live    string // the one refresh token that works
	n       int
}

var testKey = tokenstore.Key{TokenURL: "http://coop.test/token", ClientID: "Brent's Lazy CRON Job", GrantType: "client_credentials"}

var farmerKey = tokenstore.Key{TokenURL: "http://coop.test/token", ClientID: "Brent's Lazy CRON Job", GrantType: "authorization_code"}

func (g *fakeGrant) Key() tokenstore.Key {
	if g.farmer {
		return farmerKey
	}
	return testKey
}

func (g *fakeGrant) setErr(err error) {
	g.mu.Lock()
	g.err = err
	g.mu.Unlock()
}

func (g *fakeGrant) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	g.calls.Add(1)
	if g.gate != nil {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return tokenstore.Record{}, ctx.Err()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err != nil {
		return tokenstore.Record{}, g.err
	}
	if g.refresh {
		if !ok || cur.RefreshToken == "" || cur.RefreshToken != g.live {
			return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "refused"}
		}
	}
	g.n++
	rec := tokenstore.Record{AccessToken: fmt.Sprintf("access-%d", g.n), Expiry: g.clock.Now().Add(g.life)}
	if g.refresh {
		rec.RefreshToken = fmt.Sprintf("refresh-%d", g.n)
		g.live = rec.RefreshToken
	}
	return rec, nil
}
