package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/internal/wwwauth"
)

// bearer is the RoundTripper that puts the token on every forwarded request
// and, when COOP says the token is no good, gets a new one and tries once
// more. It wraps the transport to COOP the way oauth2.Transport does.
type bearer struct {
	base    http.RoundTripper
	tokens  Tokens
	metrics *Metrics
}

// RoundTrip gets a token (or fails without sending anything), sends the
// request with it, and retries once on 401 invalid_token when the body can
// be sent again.
func (b *bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := b.token(req.Context())
	if err != nil {
		return nil, err
	}
	// req is ReverseProxy's own outbound copy, made for this round trip.
	req.Header.Set("Authorization", tok.Header())
	resp, err := b.send(req)
	if err != nil || !tokenRejected(resp) || !replayable(req) {
		return resp, err
	}

	// RFC 6750 §3.1: invalid_token means "expired, revoked, malformed, or
	// invalid for other reasons": the token, not the request, is at fault.
	// Only then is a new token worth a request to COOP; scope and ownership
	// failures also come as 401 from COOP and pass through untouched.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	b.tokens.Invalidate(tok)
	tok, err = b.token(req.Context())
	if err != nil {
		return nil, err
	}
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	retry.Header.Set("Authorization", tok.Header())
	if info := infoFrom(req.Context()); info != nil {
		info.retried = true
	}
	b.metrics.retry()
	return b.send(retry)
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
