package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/poll"
)

// issuer serves OpenID metadata for its own URL; doc gets that URL and
// returns the document. While down is set it answers 503.
type issuer struct {
	url  string
	down atomic.Bool
	hits atomic.Int32
}

func newIssuer(t *testing.T, doc func(issuer string) string) *issuer {
	t.Helper()
	is := &issuer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		is.hits.Add(1)
		if is.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(doc(is.url)))
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

// With an issuer whose metadata cannot be read at start, the proxy listens
// all the same (callers get 503 + Retry-After, /readyz is not ready), reads
// it again with backoff, then gets tokens from the token endpoint the
// metadata names. The grant is stored under the issuer.
func TestServeListensUntilTheIssuersMetadataArrivesThenUsesItsTokenEndpoint(t *testing.T) {
	f := newFarm(t)
	is := newIssuer(t, func(iss string) string {
		return `{"issuer":"` + iss + `","token_endpoint":"` + f.url + `/token","token_endpoint_auth_methods_supported":["client_secret_post"]}`
	})
	is.down.Store(true)
	r := start(t, f.settings(t, "ISSUER", is.url), Options{})

	poll.Until(t, "metadata request", func() bool { return is.hits.Load() > 0 })
	resp, err := http.Post(r.proxy+"/api/1/eggs-count", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a caller while the issuer is down: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := get(t, r.adm+"/readyz"); code != 503 || !strings.Contains(body, "metadata") {
		t.Fatalf("/readyz while the issuer is down: %d %s", code, body)
	}

	is.down.Store(false)
	poll.Until(t, "ready", func() bool { code, _ := get(t, r.adm+"/readyz"); return code == 200 })
	resp, err = http.Post(r.proxy+"/api/1/eggs-count", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("through the proxy: %d", resp.StatusCode)
	}
	if !strings.Contains(r.logs.String(), "cannot read the issuer's metadata: retrying") || !strings.Contains(r.logs.String(), "issuer's metadata read") {
		t.Errorf("logs:\n%s", r.logs)
	}
	b, err := os.ReadFile(r.srv.settings.Load().Store)
	if err != nil || !strings.Contains(string(b), "client_credentials|Brent's Lazy CRON Job|"+is.url+"|") {
		t.Errorf("the grant is not stored under the issuer: %v\n%s", err, b)
	}
	if err := r.stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// A provider that cannot serve the settings stops serve with one error
// naming the setting, once its metadata is read.
func TestServeStopsWhenTheProviderCannotServeTheSettings(t *testing.T) {
	for name, tt := range map[string]struct {
		doc  func(f *farm, iss string) string
		want string
	}{
		"another issuer": {func(f *farm, iss string) string {
			return `{"issuer":"https://elsewhere.example","token_endpoint":"` + f.url + `/token"}`
		}, "COOP_PROXY_ISSUER (--issuer): " + "http"},
		"no token endpoint": {func(f *farm, iss string) string { return `{"issuer":"` + iss + `"}` },
			"COOP_PROXY_ISSUER (--issuer): the metadata of "},
		"an auth style it does not take": {func(f *farm, iss string) string {
			return `{"issuer":"` + iss + `","token_endpoint":"` + f.url + `/token","token_endpoint_auth_methods_supported":["private_key_jwt"]}`
		}, "COOP_PROXY_AUTH_STYLE (--auth-style): "},
	} {
		t.Run(name, func(t *testing.T) {
			f := newFarm(t)
			is := newIssuer(t, func(iss string) string { return tt.doc(f, iss) })
			srv, err := New(f.settings(t, "ISSUER", is.url), Options{})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Run(context.Background()) }()
			select {
			case err := <-done:
				if _, ok := errors.AsType[*config.Problem](err); !ok || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("%v; want one line starting %q", err, tt.want)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("serve goes on with a provider that cannot serve its settings")
			}
		})
	}
}
