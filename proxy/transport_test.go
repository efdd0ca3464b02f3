package proxy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newBearer(t *testing.T, src *source, base http.RoundTripper) *bearer {
	cache := &tokensource.Cache{Source: src, Margin: time.Minute}
	t.Cleanup(cache.Close)
	return &bearer{base: base, tokens: cache}
}

// withState is req as the handler hands it to ReverseProxy: carrying the
// token it got, which rewrite set on the outbound copy.
func withState(req *http.Request, b *bearer, tok *tokensource.Token) *http.Request {
	req = req.WithContext(context.WithValue(req.Context(), stateKey{}, &requestState{tok: tok}))
	req.Header["Authorization"] = b.header(tok)
	return req
}

// A RoundTripper must not change the request it is given (net/http's
// RoundTripper contract): the retry's new token goes on a copy, as
// oauth2.Transport does.
func TestBearerLeavesTheRequestAlone(t *testing.T) {
	var sent []*http.Request
	b := newBearer(t, &source{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r)
		if len(sent) == 1 {
			return &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {invalidToken}}, Body: http.NoBody, Request: r}, nil
		}
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	}))
	first, err := b.tokens.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://coop.invalid/api/me", nil)
	req.Header.Set("X-Keep", "1")
	req = withState(req, b, first)
	if _, err := b.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != first.Header() {
		t.Fatalf("the request given was changed: Authorization %q", got)
	}
	if len(sent) != 2 || sent[1] == req || sent[1].Header.Get("Authorization") != "Bearer tok-2-0123456789abcdef" || sent[1].Header.Get("X-Keep") != "1" {
		t.Fatalf("sent %d requests, the retry with header %v", len(sent), sent[len(sent)-1].Header)
	}
}

// With no new token to be had, the rejected request is not sent again.
func TestBearerSendsNothingMoreWithoutAToken(t *testing.T) {
	src := &source{}
	var sent int
	b := newBearer(t, src, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		return &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {invalidToken}}, Body: http.NoBody, Request: r}, nil
	}))
	first, err := b.tokens.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.err = &tokensource.Error{Code: tokensource.Unavailable, Description: "down"}
	src.mu.Unlock()
	req := withState(httptest.NewRequest("GET", "http://coop.invalid/api/me", nil), b, first)
	if _, err := b.RoundTrip(req); err == nil {
		t.Fatal("no error without a token")
	}
	if sent != 1 {
		t.Fatalf("sent %d times, want 1", sent)
	}
}
