package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// closeRecorder is a request body that notes whether it was closed.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func newBearer(t *testing.T, src *source, base http.RoundTripper) *bearer {
	cache := &tokensource.Cache{Source: src, Margin: time.Minute}
	t.Cleanup(cache.Close)
	return &bearer{base: base, tokens: cache}
}

// A RoundTripper must not change the request it is given (net/http's
// RoundTripper contract): the token goes on a copy, as oauth2.Transport does.
func TestBearerLeavesTheRequestAlone(t *testing.T) {
	var sent *http.Request
	b := newBearer(t, &source{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
	}))
	req := httptest.NewRequest("GET", "http://coop.invalid/api/me", nil)
	req.Header.Set("X-Keep", "1")
	if _, err := b.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if got := req.Header.Get("Authorization"); got != "" {
		t.Fatalf("the request given was changed: Authorization %q", got)
	}
	if sent.Header.Get("Authorization") != "Bearer tok-1-0123456789abcdef" || sent.Header.Get("X-Keep") != "1" {
		t.Fatalf("sent header %v", sent.Header)
	}
}

// RoundTrip closes the request body even when it sends nothing.
func TestBearerClosesTheBodyWithoutAToken(t *testing.T) {
	src := &source{err: &tokensource.Error{Code: tokensource.Unavailable, Description: "down"}}
	b := newBearer(t, src, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Fatal("sent without a token")
		return nil, nil
	}))
	body := &closeRecorder{Reader: strings.NewReader("payload")}
	req := httptest.NewRequest("POST", "http://coop.invalid/api/1/eggs-collect", nil)
	req.Body = body
	if _, err := b.RoundTrip(req); err == nil {
		t.Fatal("no error without a token")
	}
	if !body.closed {
		t.Fatal("the request body was not closed")
	}
}
