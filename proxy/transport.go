package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
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
	nonces  dpop.Nonces // COOP's DPoP nonces (RFC 9449 §9)
}

// RoundTrip sends a request whose token is a bearer token (see roundTrip).
func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	return b.roundTrip(req, nil)
}

// proving is the RoundTripper of the requests a DPoP-bound token sends:
// bearer's, with a proof of the token's key added to each (see withProof).
// Handler.proxyFor gives such a token's ReverseProxy one.
type proving struct {
	*bearer
	tok *tokensource.Token
}

func (p proving) RoundTrip(req *http.Request) (*http.Response, error) {
	return p.roundTrip(req, p.tok)
}

// roundTrip sends the request, with a DPoP proof of tok's key when tok is
// not nil (a DPoP-bound token). On 401 invalid_token it drops the token and
// fails with errTokenRejected; on a 401 asking for a DPoP nonce, it keeps
// the nonce and fails with errNonceRequired.
func (b *bearer) roundTrip(req *http.Request, tok *tokensource.Token) (*http.Response, error) {
	if tok != nil {
		var err error
		if req, err = b.withProof(req, tok); err != nil {
			return nil, err
		}
	}
	resp, err := b.send(req)
	if err != nil {
		return resp, err
	}
	if tok != nil && b.nonceRequired(req, resp) {
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		resp.Body.Close()
		return nil, errNonceRequired
	}
	if !tokenRejected(resp) {
		return resp, nil
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
// one, or nil: an older one, already replaced. (The token of the last
// ReverseProxy built will not do: a request that got the older token may go
// out after one with the current token.)
func (b *bearer) sent(req *http.Request) *tokensource.Token {
	tok := b.tokens.Current()
	if v := req.Header["Authorization"]; tok != nil && len(v) == 1 && v[0] == tok.Header() {
		return tok
	}
	return nil
}

func (b *bearer) send(req *http.Request) (*http.Response, error) {
	start := monotonic()
	resp, err := b.base.RoundTrip(req)
	b.metrics.upstream(monotonic() - start)
	return resp, err
}

// epoch is what monotonic measures from.
var epoch = time.Now()

// monotonic reads the monotonic clock alone (time.Since of a reading that
// has one does), at half the cost of time.Now, which reads the wall clock
// too: for measuring durations on the request path.
func monotonic() time.Duration { return time.Since(epoch) }

// tokenRejected: 401 with invalid_token in a Bearer challenge (RFC 6750
// §3.1) or a DPoP one (RFC 9449 §7.1).
func tokenRejected(resp *http.Response) bool {
	if resp.StatusCode != http.StatusUnauthorized {
		return false
	}
	challenges := resp.Header.Values("WWW-Authenticate")
	return wwwauth.BearerError(challenges) == "invalid_token" || wwwauth.SchemeError(challenges, "dpop") == "invalid_token"
}

// withProof returns a copy of req with a DPoP header (RFC 9449 §7.1): a
// fresh proof of the token's key for this method and URL (§4.2: htm, htu
// without query and fragment), the token's hash (ath), and COOP's nonce
// when it gave one. The copy's header is req's, cloned: a RoundTripper must
// not change the request it is given.
func (b *bearer) withProof(req *http.Request, tok *tokensource.Token) (*http.Request, error) {
	proof, err := tok.DPoP().Proof(req.Method, dpop.HTU(req.URL), tok.Access(), b.nonces.Get(req.URL), time.Now())
	if err != nil {
		return nil, fmt.Errorf("DPoP: signing the proof: %w", err)
	}
	out := *req
	out.Header = req.Header.Clone()
	out.Header["Dpop"] = []string{proof}
	return &out, nil
}

// nonceRequired keeps a DPoP-Nonce COOP's answer carries (RFC 9449 §8.2: a
// server may give a fresh one with any answer), and reports whether the
// answer is §9's demand for one: 401 with a DPoP challenge whose error is
// use_dpop_nonce, and a nonce to send.
func (b *bearer) nonceRequired(req *http.Request, resp *http.Response) bool {
	given := b.nonces.Observe(req.URL, resp.Header)
	return given && resp.StatusCode == http.StatusUnauthorized &&
		wwwauth.SchemeError(resp.Header.Values("WWW-Authenticate"), "dpop") == "use_dpop_nonce"
}

var _ Tokens = (*tokensource.Cache)(nil)

// silentConn ends a connection to COOP that sends nothing for too long: a
// read deadline moved forward as reads are made. It bounds a COOP that
// stalls in the middle of an answer whatever the caller does; the request's
// own bound (see bound) goes unnoticed when the caller pipelines its next
// request. The deadline is moved at most once per half of limit, so that a
// read costs a reading of the monotonic clock, not a deadline change: a
// connection gets between limit/2 and limit of silence, and an idle one in
// the pool is closed after as much, as a server closes its idle keep-alive
// connections.
type silentConn struct {
	net.Conn
	limit   time.Duration
	renewAt atomic.Int64 // monotonic(), in nanoseconds
}

func (c *silentConn) Read(p []byte) (int, error) {
	if now := monotonic(); int64(now) >= c.renewAt.Load() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.limit))
		c.renewAt.Store(int64(now + c.limit/2))
	}
	return c.Conn.Read(p)
}
