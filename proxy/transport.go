package proxy

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/internal/wwwauth"
)

// bearer is the RoundTripper to COOP: the request comes with the token the
// handler got for it (rewrite sets it), and when COOP says that token is no
// good, bearer gets a new one and tries once more, on a copy of the request
// (a RoundTripper does not change the request it is given), as
// oauth2.Transport does.
type bearer struct {
	base    http.RoundTripper
	tokens  Tokens
	metrics *Metrics
	auth    atomic.Pointer[authValue] // the last token's header value
}

// authValue is the Authorization header value of a token, built once per
// token rather than once per request. Requests share it: nothing changes a
// header value slice once set.
type authValue struct {
	tok   *tokensource.Token
	value []string
}

// header returns the Authorization header value for tok.
func (b *bearer) header(tok *tokensource.Token) []string {
	a := b.auth.Load()
	if a == nil || a.tok != tok {
		a = &authValue{tok, []string{tok.Header()}}
		b.auth.Store(a)
	}
	return a.value
}

// RoundTrip sends the request, and retries once on 401 invalid_token when
// the body can be sent again. A rejection it does not retry, or a second
// one, drops the token and fails with a *rejection (a 503 to the caller).
func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	st := stateOf(req.Context())
	resp, err := b.send(req)
	if err != nil || st == nil || !tokenRejected(resp) {
		return resp, err
	}

	// RFC 6750 §3.1: invalid_token means "expired, revoked, malformed, or
	// invalid for other reasons": the token, not the request, is at fault.
	// Only then is a new token worth a request to COOP; scope and ownership
	// failures also come as 401 from COOP and pass through untouched.
	b.reject(resp, st.tok)
	if !replayable(req) {
		return nil, errBodyNotKept
	}
	tok, err := b.token(req.Context())
	if err != nil {
		return nil, err
	}
	retry := b.withToken(req, tok)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	st.retried = true
	b.metrics.retry()
	if resp, err = b.send(retry); err != nil || !tokenRejected(resp) {
		return resp, err
	}
	b.reject(resp, tok)
	return nil, errRejectedTwice
}

// reject discards COOP's answer and drops the token it rejected.
func (b *bearer) reject(resp *http.Response, tok *tokensource.Token) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	b.tokens.Invalidate(tok)
}

// withToken returns a copy of req that carries tok. The copy has its own
// header map; the value slices are shared, and neither side changes them.
func (b *bearer) withToken(req *http.Request, tok *tokensource.Token) *http.Request {
	out := new(http.Request)
	*out = *req
	out.Header = make(http.Header, len(req.Header)+1)
	maps.Copy(out.Header, req.Header)
	out.Header["Authorization"] = b.header(tok)
	return out
}

// token waits for a token; running out of time while waiting is a token
// failure (503), not an upstream timeout.
func (b *bearer) token(ctx context.Context) (*tokensource.Token, error) {
	tok, err := b.tokens.Token(ctx)
	if err != nil && errors.Is(err, context.DeadlineExceeded) {
		return nil, &tokensource.Error{Code: tokensource.Unavailable, Err: err, RetryAfter: time.Second,
			Description: "no token could be had within the request timeout"}
	}
	return tok, err
}

func (b *bearer) send(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := b.base.RoundTrip(req)
	b.metrics.upstream(time.Since(start))
	return resp, err
}

func tokenRejected(resp *http.Response) bool {
	return resp.StatusCode == http.StatusUnauthorized &&
		wwwauth.BearerError(resp.Header.Values("WWW-Authenticate")) == "invalid_token"
}

// replayable: the request has no body, or a body the handler kept in memory.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

var _ Tokens = (*tokensource.Cache)(nil)
