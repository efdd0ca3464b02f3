// Package tokensource gives the proxy a valid access token, composed the way
// golang.org/x/oauth2 composes token sources: a Grant (client credentials, or
// the refresh of a farmer's stored grant) under Stored, which persists every
// new token before handing it out, under Cache, which keeps the token in
// memory, refreshes it ahead of expiry with one fetch in flight at a time,
// and backs off after failures.
package tokensource

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Token is an access token the proxy may send.
type Token struct {
	Expiry    time.Time // zero: unknown
	Scopes    []string
	refreshAt time.Time
	header    string // "Bearer <token>" or "DPoP <token>", built once
	access    string
	key       *dpop.Key // the key the token is bound to; nil: a bearer token
	issued    time.Time // when the token endpoint issued it, as far as known
	replaces  int       // how many tokens in a row were rejected before it was fetched (see Invalidate)
}

// Header returns the value of the Authorization header (RFC 6750 §2.1,
// RFC 9449 §7.1).
func (t *Token) Header() string { return t.header }

// DPoP returns the key the token is bound to, whose proof must go with
// every request that carries it (RFC 9449 §7); nil for a bearer token.
func (t *Token) DPoP() *dpop.Key { return t.key }

// Access returns the access token itself.
func (t *Token) Access() string { return t.access }

// Source is what the cache draws from: *Stored.
type Source interface {
	Token(ctx context.Context, rejected string) (tokenstore.Record, error)
}

// Backoff bounds the retries after a failed fetch: the n-th consecutive
// failure waits a random duration in [d/2, d] with d = min(Max, Min·2ⁿ⁻¹)
// ("equal jitter").
type Backoff struct {
	Min, Max time.Duration
}

func (b Backoff) delay(failures int) time.Duration {
	d := b.Min
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + rand.N(d/2+1)
}

// Expiry skew: a token this close to its expiry is treated as expired and
// never sent (it could expire on the way).
const expirySkew = 5 * time.Second

// rejectWindow: a token rejected sooner than this after it was issued was
// rejected at once (see Invalidate).
const rejectWindow = 10 * time.Second

// loginRecheck is how often a dead or missing grant is looked for again in
// the store; it costs a file read, not a request to COOP.
const loginRecheck = time.Second

// Cache hands out the current token and refreshes it. Its zero value is not
// usable; fill the exported fields and use it from many goroutines.
type Cache struct {
	Source       Source
	Margin       time.Duration // refresh this long before expiry (at most half the lifetime)
	Backoff      Backoff
	FetchTimeout time.Duration // bound on one fetch; 0: 30s
	// MaxWait bounds how long Token waits for a fetch when no valid token
	// is held; then it answers Unavailable with a Retry-After, and the
	// fetch goes on. 0: as long as the caller's ctx allows.
	MaxWait time.Duration
	Now     func() time.Time
	// OnFetch, when set, is called after each fetch with nil or the error,
	// without the cache's lock held.
	OnFetch func(err error)
	// DPoP gives a token the key it is bound to; Stored's, which hands out
	// only tokens it fits. nil: bearer tokens.
	DPoP *dpop.Keys

	cur atomic.Pointer[Token]

	mu         sync.Mutex
	inflight   *call
	failures   int // failed fetches in a row
	rejections int // tokens rejected in a row: the next token's replaces (see Invalidate)
	retryAt    time.Time
	lastErr    *Error
	rejected   string
	reloads    int // RetryNow calls: a fetch started before the last one fails for what has changed since
	closed     bool
	ctx        context.Context // parent of fetches; cancelled by Close
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

type call struct {
	done    chan struct{}
	tok     *Token
	err     error
	reloads int // Cache.reloads when it started
}

func (c *Cache) now() time.Time { return now(c.Now) }

// Token returns a token that is not known to be expired. The fast path is an
// atomic load and a clock read. Past the refresh point it starts one fetch
// in the background and keeps returning the current token while that token
// is still valid; with no valid token it waits for the fetch (or ctx).
func (c *Cache) Token(ctx context.Context) (*Token, error) {
	now := c.now()
	if t := c.cur.Load(); t != nil && now.Before(t.refreshAt) {
		return t, nil
	}
	call, t, err := c.refresh(now)
	if err != nil || call == nil {
		return t, err
	}
	var waited <-chan time.Time
	if c.MaxWait > 0 {
		timer := time.NewTimer(c.MaxWait)
		defer timer.Stop()
		waited = timer.C
	}
	select {
	case <-call.done:
		return call.tok, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-waited:
		return nil, &Error{Code: Unavailable, RetryAfter: time.Second,
			Description: fmt.Sprintf("no token yet: the token endpoint has not answered within %s; still trying", c.MaxWait)}
	}
}

// refresh returns either a token to use now (still valid), an error (backing
// off with no valid token), or the fetch to wait for.
func (c *Cache) refresh(now time.Time) (*call, *Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.cur.Load()
	if t != nil && now.Before(t.refreshAt) {
		return nil, t, nil
	}
	valid := t != nil && (t.Expiry.IsZero() || now.Before(t.Expiry.Add(-expirySkew)))
	if c.inflight == nil {
		if c.closed {
			if valid {
				return nil, t, nil
			}
			return nil, nil, &Error{Code: Unavailable, Description: "coop-proxy is shutting down"}
		}
		if now.Before(c.retryAt) {
			if valid {
				return nil, t, nil
			}
			return nil, nil, c.lastErr.withRetryAfter(c.retryAt.Sub(now))
		}
		c.startLocked()
	}
	if valid {
		return nil, t, nil
	}
	return c.inflight, nil, nil
}

// startLocked starts a fetch. The fetch is detached from any one caller's
// context: a caller giving up must not cancel it for the others.
func (c *Cache) startLocked() {
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	cl := &call{done: make(chan struct{}), reloads: c.reloads}
	c.inflight = cl
	rejected := c.rejected
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		timeout := c.FetchTimeout
		if timeout == 0 {
			timeout = 30 * time.Second
		}
		ctx, cancel := context.WithTimeout(c.ctx, timeout)
		rec, err := c.Source.Token(ctx, rejected)
		cancel()
		c.finish(cl, rec, err)
	}()
}

func (c *Cache) finish(cl *call, rec tokenstore.Record, err error) {
	now := c.now()
	var key *dpop.Key
	if err == nil {
		key, err = c.DPoP.Of(rec)
	}
	c.mu.Lock()
	c.inflight = nil
	if err != nil {
		te := classify(err, "")
		c.failures++
		wait := c.Backoff.delay(c.failures)
		if te.Code == LoginRequired {
			wait = loginRecheck
		}
		c.retryAt = now.Add(wait)
		if cl.reloads != c.reloads {
			// started before a reload (with the old secret): its failure
			// says nothing of the settings now in effect
			c.retryAt = time.Time{}
		}
		c.lastErr = te
		cl.err = te.withRetryAfter(wait)
	} else {
		cl.tok = newToken(rec, key, now, c.Margin)
		cl.tok.replaces = c.rejections
		c.failures, c.rejections, c.retryAt, c.lastErr, c.rejected = 0, 0, time.Time{}, nil, ""
		c.cur.Store(cl.tok)
	}
	c.mu.Unlock()
	if c.OnFetch != nil {
		c.OnFetch(cl.err)
	}
	close(cl.done)
}

func newToken(rec tokenstore.Record, key *dpop.Key, now time.Time, margin time.Duration) *Token {
	issued := rec.UpdatedAt // when Stored fetched it, or another process wrote it
	if issued.IsZero() || issued.After(now) {
		issued = now
	}
	header := "Bearer " + rec.AccessToken
	if key != nil {
		header = "DPoP " + rec.AccessToken // RFC 9449 §7.1
	}
	return &Token{Expiry: rec.Expiry, Scopes: rec.Scopes, access: rec.AccessToken, header: header, key: key,
		refreshAt: renewAt(rec, now, margin), issued: issued}
}

// renewAt is when a token should be renewed: margin before it expires, but
// not later than half its lifetime, so that a token living less than twice
// the margin is not renewed on every request. The lifetime is counted from
// when the record was obtained or written (UpdatedAt). Cache and Stored both
// use it, so that a process finding a token another process just renewed
// takes it instead of renewing it again.
func renewAt(rec tokenstore.Record, now time.Time, margin time.Duration) time.Time {
	if rec.Expiry.IsZero() {
		return now.Add(100 * 365 * 24 * time.Hour) // until rejected
	}
	if rec.UpdatedAt.IsZero() {
		return rec.Expiry.Add(-margin) // lifetime unknown
	}
	issued := rec.UpdatedAt
	if issued.After(now) {
		issued = now
	}
	if life := rec.Expiry.Sub(issued); life < 2*margin {
		return issued.Add(life / 2)
	}
	return rec.Expiry.Add(-margin)
}

// Invalidate reports that the resource server rejected t (RFC 6750 §3.1
// invalid_token); a token other than the current one (already replaced) is
// ignored. The next Token call fetches a new one at once, unless t was
// itself fetched to replace a rejected token and is rejected within
// rejectWindow of its issue: then the token is not what the API refuses
// (wrong upstream, scopes, clock...), and fetching again would only rotate
// tokens as fast as callers call. Such rejections in a row back off as
// failed fetches do (Backoff), Token answering TokenRejected meanwhile; a
// token that outlives the window ends the streak.
func (c *Cache) Invalidate(t *Token) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur.Load() != t {
		return
	}
	c.rejected = t.access
	c.cur.Store(nil)
	if t.replaces == 0 || !now.Before(t.issued.Add(rejectWindow)) {
		c.rejections = 1
		c.retryAt = time.Time{}
		return
	}
	c.rejections = t.replaces + 1
	c.retryAt = now.Add(c.Backoff.delay(t.replaces))
	c.lastErr = &Error{Code: TokenRejected, Description: "the API rejects (invalid_token) the tokens the token endpoint has just issued: " +
		"check that the upstream and the token endpoint belong together, the scopes asked for, and the clock"}
}

// RetryNow ends a backoff, so that the next Token call fetches at once (after
// a reload has changed what failed); a fetch in flight that fails then
// starts no backoff either.
func (c *Cache) RetryNow() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.retryAt = time.Time{}
	c.reloads++
}

// Forget drops the token held, so that the next Token call asks the source
// (after a logout removed the grant it came from).
func (c *Cache) Forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur.Store(nil)
	c.retryAt = time.Time{}
}

// Adopt makes rec the token held, without a fetch: a token another
// process or replica wrote to the store (the maintenance loop learns of it
// from the store's change notifications). It does nothing, and reports
// false, when a fetch is in flight (which finds rec itself), when rec's
// access token is the one held or the one just rejected, when its DPoP
// binding does not fit, or when it is due for renewal already.
func (c *Cache) Adopt(rec tokenstore.Record) bool {
	key, err := c.DPoP.Of(rec)
	if err != nil || rec.AccessToken == "" {
		return false
	}
	now := c.now()
	t := newToken(rec, key, now, c.Margin)
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cur.Load(); c.inflight != nil || c.closed || !now.Before(t.refreshAt) || rec.AccessToken == c.rejected ||
		cur != nil && cur.access == rec.AccessToken {
		return false
	}
	c.failures, c.rejections, c.retryAt, c.lastErr = 0, 0, time.Time{}, nil
	c.cur.Store(t)
	return true
}

// Current returns the token held now, or nil; it never fetches.
func (c *Cache) Current() *Token { return c.cur.Load() }

// Prefetch starts a fetch when one is due and none is running, without
// waiting for it. A maintenance loop calls it so that the token is renewed
// (and a new login picked up) even when no request comes.
func (c *Cache) Prefetch() {
	_, _, _ = c.refresh(c.now())
}

// LastError returns the error of the last fetch when it failed, or
// TokenRejected during the backoff after tokens rejected at once, or nil.
func (c *Cache) LastError() *Error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Close cancels a fetch in flight and waits for it to end.
func (c *Cache) Close() { c.CloseAfter(0) }

// CloseAfter starts no more fetches, lets a fetch in flight finish for up
// to grace, then cancels it and waits for it to end. A refresh cancelled
// once COOP has rotated the refresh token loses the grant: the grace lets
// an answering token endpoint complete, a hanging one is cut short.
func (c *Cache) CloseAfter(grace time.Duration) {
	c.mu.Lock()
	c.closed = true
	inflight := c.inflight
	c.mu.Unlock()
	if inflight != nil && grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-inflight.done:
		case <-t.C:
		}
		t.Stop()
	}
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	c.wg.Wait()
}
