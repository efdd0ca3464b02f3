package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hangingTokenEndpoint never answers until the test ends.
func hangingTokenEndpoint(t *testing.T) (url string, calls *atomic.Int32) {
	t.Helper()
	calls = &atomic.Int32{}
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv.URL + "/token", calls
}

// Defects 3 and 4: with the token endpoint hanging, the server listens at
// once, /healthz is alive, /readyz and /metrics answer, callers get 503
// with Retry-After, and shutdown does not wait for the fetch.
func TestAHangingTokenEndpointHoldsUpNothing(t *testing.T) {
	f := newFarm(t)
	tokenURL, calls := hangingTokenEndpoint(t)
	r := start(t, f.settings(t, "TOKEN_URL", tokenURL), Options{})
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if code, _ := get(t, r.adm+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, r.adm+"/readyz"); code != 503 || !strings.Contains(body, "no valid token") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	if code, body := get(t, r.adm+"/metrics"); code != 200 || !strings.Contains(body, `coop_proxy_token_store_durable{route="default"} 1`) {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	c := &http.Client{Timeout: 20 * time.Second} // callers wait at most tokenWait (10 s)
	resp, err := c.Get(r.proxy + "/api/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a caller before any token: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waits for the hanging token fetch")
	}
}
