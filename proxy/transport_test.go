package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// On 401 invalid_token, bearer sends nothing more: it drops the token and
// fails, leaving the request it was given as it was (net/http's
// RoundTripper contract); the handler sends it again.
func TestBearerDropsARejectedTokenAndLeavesTheRequestAlone(t *testing.T) {
	sent := 0
	b := newBearer(t, &source{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		return &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {invalidToken}}, Body: http.NoBody, Request: r}, nil
	}))
	first, err := b.tokens.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://coop.invalid/api/me", nil)
	req.Header["Authorization"] = []string{first.Header()}
	if _, err := b.RoundTrip(req); err != errTokenRejected {
		t.Fatalf("err = %v, want errTokenRejected", err)
	}
	if sent != 1 || req.Header.Get("Authorization") != first.Header() {
		t.Fatalf("sent %d requests; the request's Authorization is now %q", sent, req.Header.Get("Authorization"))
	}
	next, err := b.tokens.Token(t.Context())
	if err != nil || next == first {
		t.Fatalf("the rejected token is still handed out (err %v)", err)
	}
}

// A rejection of a token already replaced (another request had it dropped)
// does not drop the token that replaced it.
func TestBearerKeepsTheTokenThatReplacedARejectedOne(t *testing.T) {
	b := newBearer(t, &source{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {invalidToken}}, Body: http.NoBody, Request: r}, nil
	}))
	first, _ := b.tokens.Token(t.Context())
	old := httptest.NewRequest("GET", "http://coop.invalid/api/me", nil)
	old.Header["Authorization"] = []string{first.Header()}
	b.tokens.Invalidate(first)
	second, _ := b.tokens.Token(t.Context())
	if _, err := b.RoundTrip(old); err != errTokenRejected {
		t.Fatalf("err = %v", err)
	}
	if now, _ := b.tokens.Token(t.Context()); now != second {
		t.Fatal("the token that replaced the rejected one was dropped too")
	}
}

// A request that got the old token before it was replaced, and goes out
// after one with the new token, does not keep the new one from being
// dropped when COOP rejects it: the retry would go out with it again.
func TestBearerDropsTheCurrentTokenWhicheverWentOutLast(t *testing.T) {
	b := newBearer(t, &source{}, roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 401, Header: http.Header{"Www-Authenticate": {invalidToken}}, Body: http.NoBody, Request: r}, nil
	}))
	first, _ := b.tokens.Token(t.Context())
	b.tokens.Invalidate(first)
	second, _ := b.tokens.Token(t.Context())
	req := httptest.NewRequest("GET", "http://coop.invalid/api/me", nil)
	req.Header["Authorization"] = []string{second.Header()}
	if _, err := b.RoundTrip(req); err != errTokenRejected {
		t.Fatalf("err = %v", err)
	}
	if now, _ := b.tokens.Token(t.Context()); now == second {
		t.Fatal("the rejected token is still handed out")
	}
}

// With no new token to be had after a rejection, the request is not sent
// again, and the caller gets the token failure (503).
func TestARejectionWithoutANewTokenSendsNothingMore(t *testing.T) {
	var f *fixture
	f = newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		f.src.mu.Lock()
		f.src.err = &tokensource.Error{Code: tokensource.Unavailable, Description: "down"}
		f.src.mu.Unlock()
		w.Header().Set("WWW-Authenticate", invalidToken)
		w.WriteHeader(401)
	})
	resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
	var p problem
	if resp.StatusCode != 503 || json.Unmarshal([]byte(body), &p) != nil || p.Error != string(tokensource.Unavailable) {
		t.Fatalf("status %d body %q, want 503 %s", resp.StatusCode, body, tokensource.Unavailable)
	}
	if n := len(f.up.requests()); n != 1 {
		t.Fatalf("COOP got %d requests, want 1", n)
	}
}

// Requests racing one another over a rejected token: each is sent at most
// twice, all get through with the one new token, and the rejection of the
// old one by all of them costs one token request, not one per request.
func TestConcurrentRejectionsOfOneTokenFetchOneNewToken(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Authorization") == "Bearer tok-1-0123456789abcdef" {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := http.Post(f.proxy.URL+"/api/1/eggs-collect", "text/plain", strings.NewReader("x"))
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d %s", resp.StatusCode, body)
			}
		})
	}
	wg.Wait()
	if n := len(f.up.requests()); n > 40 {
		t.Errorf("COOP got %d requests for 20", n)
	}
	if n := f.src.fetches(); n != 2 {
		t.Errorf("%d token requests, want 2 (the rejected token, then one new)", n)
	}
}
