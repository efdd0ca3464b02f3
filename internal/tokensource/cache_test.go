package tokensource

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/poll"
	"github.com/coop-proxy/coop-proxy/tokenstore"

	"go.uber.org/zap"
)

// stack builds Cache over Stored over a memStore and a fakeGrant.
func stack(t *testing.T, g *fakeGrant) (*Cache, *Stored, *memStore) {
	t.Helper()
	st := newMemStore()
	stored := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Now: g.clock.Now, Log: zap.NewNop()}
	c := &Cache{Source: stored, Margin: 5 * time.Minute, Backoff: Backoff{Min: time.Second, Max: time.Minute}, Now: g.clock.Now}
	t.Cleanup(c.Close)
	return c, stored, st
}

func mustToken(t *testing.T, c *Cache) *Token {
	t.Helper()
	tok, err := c.Token(context.Background())
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestCacheRefreshesAheadOfExpiry(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	if got := mustToken(t, c).Access(); got != "access-1" {
		t.Fatalf("first token %q", got)
	}
	g.clock.Advance(54 * time.Minute) // 6 minutes left: before the 5-minute margin
	if got := mustToken(t, c).Access(); got != "access-1" || g.calls.Load() != 1 {
		t.Fatalf("before the margin: token %q after %d fetches, want access-1 after 1", got, g.calls.Load())
	}
	g.clock.Advance(2 * time.Minute) // 4 minutes left: inside the margin
	if got := mustToken(t, c).Access(); got != "access-1" {
		t.Fatalf("inside the margin the still-valid token is served while refreshing, got %q", got)
	}
	poll.Until(t, "the background refresh", func() bool { return c.Current() != nil && c.Current().Access() == "access-2" })
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestCacheShortLivedTokenRefreshedAtHalfLife(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: 4 * time.Minute} // shorter than the margin
	c, _, _ := stack(t, g)
	mustToken(t, c)
	g.clock.Advance(119 * time.Second)
	mustToken(t, c)
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("fetches before half-life = %d, want 1", n)
	}
	g.clock.Advance(2 * time.Second)
	mustToken(t, c)
	poll.Until(t, "the half-life refresh", func() bool { return g.calls.Load() == 2 })
}

func TestCacheNeverReturnsAnExpiredToken(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	mustToken(t, c)
	g.gate = make(chan struct{})
	g.clock.Advance(time.Hour + time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if tok, err := c.Token(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("with the token expired and the fetch blocked, Token = %v, %v; want to wait", tok, err)
	}
	close(g.gate)
	if got := mustToken(t, c).Access(); got != "access-2" {
		t.Fatalf("after the fetch: %q", got)
	}
}

func TestCacheOneFetchForManyWaiters(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	mustToken(t, c)
	g.gate = make(chan struct{})
	g.clock.Advance(2 * time.Hour)

	const callers = 500
	var wg sync.WaitGroup
	got := make([]string, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Go(func() {
			tok, err := c.Token(context.Background())
			errs[i] = err
			if tok != nil {
				got[i] = tok.Access()
			}
		})
	}
	poll.Until(t, "the refresh to start", func() bool { return g.calls.Load() == 2 })
	close(g.gate)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || got[i] != "access-2" {
			t.Fatalf("caller %d: %q, %v", i, got[i], errs[i])
		}
	}
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2 (one at start, one at expiry)", n)
	}
}

func TestCacheBacksOffAndRecovers(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	g.setErr(&Error{Code: Unavailable, Description: "the token endpoint could not be reached"})

	_, err := c.Token(context.Background())
	var te *Error
	if !errors.As(err, &te) || te.Code != Unavailable || te.RetryAfter <= 0 {
		t.Fatalf("first failure: %v (RetryAfter %v)", err, te)
	}
	// Within the backoff window: answered at once, no request to COOP.
	if _, err := c.Token(context.Background()); !errors.As(err, &te) || te.RetryAfter <= 0 {
		t.Fatalf("during backoff: %v", err)
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("fetches during backoff = %d, want 1", n)
	}
	// Backoff grows: second failure waits up to 2s, third up to 4s.
	g.clock.Advance(time.Second + time.Millisecond)
	_, _ = c.Token(context.Background())
	if n := g.calls.Load(); n != 2 {
		t.Fatalf("fetches after the first backoff = %d, want 2", n)
	}
	g.setErr(nil)
	g.clock.Advance(2*time.Second + time.Millisecond)
	if got := mustToken(t, c).Access(); got != "access-1" {
		t.Fatalf("after recovery: %q", got)
	}
	if c.LastError() != nil {
		t.Fatalf("LastError after recovery = %v", c.LastError())
	}
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	b := Backoff{Min: time.Second, Max: time.Minute}
	for failures, max := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 7: time.Minute, 50: time.Minute} {
		for range 100 {
			d := b.delay(failures)
			if d < max/2 || d > max {
				t.Fatalf("delay(%d) = %v, want in [%v, %v]", failures, d, max/2, max)
			}
		}
	}
}

func TestCacheInvalidateFetchesANewToken(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	first := mustToken(t, c)
	c.Invalidate(first)
	second := mustToken(t, c)
	if second.Access() != "access-2" {
		t.Fatalf("after Invalidate: %q, want a new token", second.Access())
	}
	// A stale report about the old token changes nothing.
	c.Invalidate(first)
	if got := mustToken(t, c); got != second || g.calls.Load() != 2 {
		t.Fatalf("stale Invalidate caused a fetch (%d fetches)", g.calls.Load())
	}
}

func TestCacheLoginRequiredIsRecheckedEverySecond(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true}
	c, _, st := stack(t, g)
	_, err := c.Token(context.Background())
	var te *Error
	if !errors.As(err, &te) || te.Code != LoginRequired {
		t.Fatalf("no grant stored: %v, want login_required", err)
	}
	// A login writes a grant; the proxy picks it up within a second.
	g.live = "refresh-login"
	st.put(testKey, freshGrant(g.clock.Now()))
	g.clock.Advance(loginRecheck)
	if got := mustToken(t, c).Access(); got != "access-login" {
		t.Fatalf("after login: %q", got)
	}
}

func TestCacheHeaderIsBearer(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	if h := mustToken(t, c).Header(); h != "Bearer access-1" {
		t.Fatalf("Header() = %q", h)
	}
}

func TestCacheAfterCloseFailsWithoutFetching(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	c.Close()
	var te *Error
	if _, err := c.Token(context.Background()); !errors.As(err, &te) || te.Code != Unavailable {
		t.Fatalf("after Close: %v", err)
	}
	if g.calls.Load() != 0 {
		t.Fatal("fetched after Close")
	}
}

func TestRenewAt(t *testing.T) {
	now := newClock().Now()
	rec := func(issued time.Time, life time.Duration) tokenstore.Record {
		return tokenstore.Record{AccessToken: "a", UpdatedAt: issued, Expiry: issued.Add(life)}
	}
	tests := []struct {
		name string
		rec  tokenstore.Record
		want time.Time
	}{
		{"long-lived: margin before expiry", rec(now, time.Hour), now.Add(55 * time.Minute)},
		{"short-lived: half the lifetime", rec(now, 8*time.Second), now.Add(4 * time.Second)},
		{"renewed by another process 2s ago", rec(now.Add(-2*time.Second), 8*time.Second), now.Add(2 * time.Second)},
		{"written in the future by a skewed clock", rec(now.Add(time.Minute), 8*time.Second), now.Add(34 * time.Second)},
		{"no issue time: margin only", tokenstore.Record{AccessToken: "a", Expiry: now.Add(time.Hour)}, now.Add(55 * time.Minute)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renewAt(tt.rec, now, 5*time.Minute); !got.Equal(tt.want) {
				t.Fatalf("renewAt = %v, want %v", got.Sub(now), tt.want.Sub(now))
			}
		})
	}
	if got := renewAt(tokenstore.Record{AccessToken: "a"}, now, time.Minute); got.Before(now.Add(time.Hour * 24 * 365)) {
		t.Fatalf("no expiry: renewAt = %v, want far away", got)
	}
}

func TestCacheRetryNowEndsTheBackoff(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, stored, _ := stack(t, g)
	g.setErr(&Error{Code: ClientRejected, Description: "rejected"})
	if _, err := c.Token(context.Background()); err == nil {
		t.Fatal("want an error")
	}
	// The operator fixes the secret: a new grant and a reload.
	fixed := &fakeGrant{clock: g.clock, life: time.Hour}
	stored.SetGrant(fixed)
	if _, err := c.Token(context.Background()); err == nil || fixed.calls.Load() != 0 {
		t.Fatal("during the backoff, no fetch was expected")
	}
	c.RetryNow()
	if got := mustToken(t, c).Access(); got != "access-1" || fixed.calls.Load() != 1 {
		t.Fatalf("after RetryNow: %q, %d fetches", got, fixed.calls.Load())
	}
}

func TestCacheBacksOffWhenNewTokensAreRejectedAtOnce(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	ctx := context.Background()
	// A minute of requests against an API that rejects every token
	// (invalid_token) as soon as it sees it: one every 100ms, and one at once
	// after each rejection.
	var backoffs []time.Duration // the Retry-After that starts each backoff
	inBackoff := false
	requests := 0
	for end := g.clock.Now().Add(time.Minute); g.clock.Now().Before(end) && requests < 1000; requests++ {
		tok, err := c.Token(ctx)
		var te *Error
		switch {
		case err == nil:
			c.Invalidate(tok) // the next request comes at once
			inBackoff = false
			continue
		case !errors.As(err, &te) || te.Code != TokenRejected || te.RetryAfter <= 0:
			t.Fatalf("during the storm: %v, want %s with a Retry-After", err, TokenRejected)
		case !inBackoff:
			backoffs = append(backoffs, te.RetryAfter)
			inBackoff = true
		}
		g.clock.Advance(100 * time.Millisecond)
	}
	// The first rejection refetches at once; then 1s, 2s, 4s... (jittered
	// down to half) between fetches: at most 8 fetches in a minute (the 9th
	// would come after 0.5+1+2+4+8+16+32 s).
	if n := g.calls.Load(); n > 8 {
		t.Fatalf("%d token requests in a minute of rejections, want at most 8", n)
	}
	t.Logf("%d requests in a minute, each token rejected: %d token requests, backoffs %v", requests, g.calls.Load(), backoffs)
	if len(backoffs) < 5 {
		t.Fatalf("backoffs %v, want at least 5", backoffs)
	}
	for i, ra := range backoffs {
		d := min(time.Second<<i, time.Minute)
		if ra < d/2 || ra > d {
			t.Fatalf("backoff %d: Retry-After %v, want in [%v, %v] (all: %v)", i+1, ra, d/2, d, backoffs)
		}
	}
	if e := c.LastError(); e == nil || e.Code != TokenRejected {
		t.Fatalf("LastError = %v, want %s", e, TokenRejected)
	}

	// A token that is used a while before it is rejected was revoked, not
	// refused at once: it is replaced at once, and the count starts over.
	g.clock.Advance(time.Minute)
	tok := mustToken(t, c)
	g.clock.Advance(time.Minute)
	c.Invalidate(tok)
	before := g.calls.Load()
	tok = mustToken(t, c)
	if g.calls.Load() != before+1 {
		t.Fatal("a token rejected after a minute of use was not replaced at once")
	}
	c.Invalidate(tok) // its replacement is rejected at once: the shortest backoff
	_, err := c.Token(ctx)
	var te *Error
	if !errors.As(err, &te) || te.Code != TokenRejected || te.RetryAfter > time.Second {
		t.Fatalf("after a surviving token: %v (Retry-After %v), want %s within 1s", err, te.RetryAfter, TokenRejected)
	}
}

func TestCacheOnFetchIsCalledWithoutTheLock(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	var locked atomic.Bool
	c.OnFetch = func(error) {
		if !c.mu.TryLock() {
			locked.Store(true) // only this test's one fetch uses the cache
			return
		}
		c.mu.Unlock()
	}
	mustToken(t, c)
	if locked.Load() {
		t.Fatal("OnFetch was called with the cache's lock held")
	}
}

func TestTokenWaitsAtMostMaxWaitForAFetch(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	c := &Cache{Source: hangingSource(release), MaxWait: 50 * time.Millisecond}
	defer c.Close()
	_, err := c.Token(context.Background())
	var te *Error
	if !errors.As(err, &te) || te.Code != Unavailable || te.RetryAfter <= 0 || !strings.Contains(te.Description, "no token yet") {
		t.Fatalf("Token with the fetch hanging: %v", err)
	}
}

// hangingSource answers nothing until release is closed or the fetch is cancelled.
type hangingSource chan struct{}

func (h hangingSource) Token(ctx context.Context, _ string) (tokenstore.Record, error) {
	select {
	case <-h:
	case <-ctx.Done():
	}
	return tokenstore.Record{}, ctx.Err()
}

// A reload replaces a wrong client secret while a fetch with the old one is
// in flight: that fetch's failure, which comes after RetryNow, must not start
// a backoff (up to Backoff.Max) against the fixed secret.
func TestCacheRetryNowDuringAFetchOutlivesItsFailure(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, gate: make(chan struct{})}
	c, stored, _ := stack(t, g)
	g.setErr(&Error{Code: ClientRejected, Description: "rejected"})
	c.Prefetch() // the fetch with the old secret, held at the gate
	poll.Until(t, "the fetch to start", func() bool { return g.calls.Load() == 1 })
	fixed := &fakeGrant{clock: g.clock, life: time.Hour}
	stored.SetGrant(fixed)
	c.RetryNow()
	close(g.gate) // the old fetch fails now
	poll.Until(t, "the old fetch to end", func() bool { return c.LastError() != nil })
	if tok, err := c.Token(context.Background()); err != nil || tok.Access() != "access-1" || fixed.calls.Load() != 1 {
		t.Fatalf("after the reload: %v, %d fetches with the fixed secret; want a token fetched at once", err, fixed.calls.Load())
	}
}

// At shutdown a fetch in flight gets its grace to finish (a refresh COOP is
// answering carries the rotated refresh token), and is cancelled after it.
func TestCloseAfterLetsAFetchInFlightFinish(t *testing.T) {
	release := make(chan struct{})
	c := &Cache{Source: hangingSource(release)}
	go func() { _, _ = c.Token(context.Background()) }()
	for {
		c.mu.Lock()
		started := c.inflight != nil
		c.mu.Unlock()
		if started {
			break
		}
		runtime.Gosched()
	}
	closed := make(chan struct{})
	go func() { c.CloseAfter(time.Hour); close(closed) }()
	select {
	case <-closed:
		t.Fatal("CloseAfter cancelled the fetch without waiting for it")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	// Without grace, a hanging fetch is cancelled at once.
	c2 := &Cache{Source: hangingSource(make(chan struct{}))}
	go func() { _, _ = c2.Token(context.Background()) }()
	for {
		c2.mu.Lock()
		started := c2.inflight != nil
		c2.mu.Unlock()
		if started {
			break
		}
		runtime.Gosched()
	}
	c2.Close()
}

// Adopt takes a token another replica wrote without a fetch, but not one
// due for renewal, the one held, or the one just rejected.
func TestCacheAdoptsAnotherReplicasToken(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	c, _, _ := stack(t, g)
	held := mustToken(t, c)
	now := g.clock.Now()
	other := tokenstore.Record{AccessToken: "access-other", Expiry: now.Add(time.Hour), UpdatedAt: now}
	for name, rec := range map[string]tokenstore.Record{
		"the one held":    {AccessToken: held.Access(), Expiry: now.Add(2 * time.Hour), UpdatedAt: now},
		"due for renewal": {AccessToken: "access-old", Expiry: now.Add(4 * time.Minute), UpdatedAt: now.Add(-time.Hour)},
		"without a token": {Expiry: now.Add(time.Hour)},
	} {
		if c.Adopt(rec) {
			t.Errorf("adopted %s", name)
		}
	}
	if !c.Adopt(other) || mustToken(t, c).Access() != "access-other" || g.calls.Load() != 1 {
		t.Fatalf("after Adopt: %q after %d fetches; want access-other and no fetch", mustToken(t, c).Access(), g.calls.Load())
	}
	c.Invalidate(c.Current())
	if c.Adopt(other) {
		t.Fatal("adopted the token just rejected")
	}
}
