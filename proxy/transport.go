package proxy

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/internal/wwwauth"
)

// bearer is the RoundTripper to COOP. The request comes with the token the
// handler got for it; when COOP says that token is no good, bearer drops
// the token and fails with errTokenRejected, and the handler sends the
// request again with a new one when it can (Handler.retry). It never
// changes the request it is given (net/http's RoundTripper contract).
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

// RoundTrip sends the request. On 401 invalid_token it drops the token and
// fails with errTokenRejected.
func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.send(req)
	if err != nil || !tokenRejected(resp) {
		return resp, err
	}
	// RFC 6750 §3.1: invalid_token means "expired, revoked, malformed, or
	// invalid for other reasons": the token, not the request, is at fault.
	// Only then is a new token worth a request to COOP; scope and ownership
	// failures also come as 401 from COOP and pass through untouched.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	if tok := b.sent(req); tok != nil {
		b.tokens.Invalidate(tok)
	}
	return nil, errTokenRejected
}

// sent returns the token req carries when it is still the cache's current
// one, or nil: an older one, already replaced. (The one header last gave out
// will not do: a request that got the older token may go out after one with
// the current token.)
func (b *bearer) sent(req *http.Request) *tokensource.Token {
	tok := b.tokens.Current()
	if v := req.Header["Authorization"]; tok != nil && len(v) == 1 && v[0] == tok.Header() {
		return tok
	}
	return nil
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

var _ Tokens = (*tokensource.Cache)(nil)
