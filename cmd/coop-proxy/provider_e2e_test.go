package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// issuerInFront is an authorization server with OpenID metadata: COOP's
// emulator behind its own address, recording what reaches its
// authorization and token endpoints.
type issuerInFront struct {
	url   string
	mu    sync.Mutex
	auth  []url.Values          // queries of GET /authorize
	token map[string]url.Values // the last form of POST /token, by grant_type
}

func newIssuerInFront(t *testing.T, f *farm) *issuerInFront {
	t.Helper()
	is := &issuerInFront{token: map[string]url.Values{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"issuer":"` + is.url + `","token_endpoint":"` + is.url + `/token","authorization_endpoint":"` + is.url +
				`/authorize","token_endpoint_auth_methods_supported":["client_secret_post"],"grant_types_supported":["authorization_code","refresh_token","client_credentials"]}`))
			return
		case "/authorize":
			is.mu.Lock()
			is.auth = append(is.auth, r.URL.Query())
			is.mu.Unlock()
		case "/token":
			_ = r.ParseForm()
			is.mu.Lock()
			is.token[r.PostForm.Get("grant_type")] = r.PostForm
			is.mu.Unlock()
		}
		f.em.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

// A farmer's grant from a provider found by its issuer, with resource
// indicators and an audience: login, serve (and its refresh), token and
// status all go to the endpoints of the metadata, every token request
// carries the parameters, and the grant is stored under a key of its own.
func TestAnIssuersGrantWithResourcesAndAudienceThroughLoginServeAndStatus(t *testing.T) {
	f := newFarm(t)
	is := newIssuerInFront(t, f)
	cfg := f.config(t, "ISSUER", is.url, "GRANT", "authorization_code", "SCOPES", "eggs-collect eggs-count",
		"RESOURCE", "https://r1.example/ https://r2.example/", "AUDIENCE", "https://api.example", "TOKEN_PARAMS", "organization=acme")
	out, err := f.login(t, cfg, true)
	if err != nil || !strings.Contains(out, "Logged in as the farmer") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	wantParams := func(where string, v url.Values, extra bool) {
		t.Helper()
		if r := v["resource"]; len(r) != 2 || r[0] != "https://r1.example/" || r[1] != "https://r2.example/" || v.Get("audience") != "https://api.example" ||
			(v.Get("organization") == "acme") != extra {
			t.Errorf("%s: %v", where, v)
		}
	}
	is.mu.Lock()
	if len(is.auth) == 0 {
		t.Fatal("no authorization request at the issuer's endpoint")
	}
	for _, q := range is.auth { // login's preflight, then the browser
		wantParams("authorization request", q, false)
	}
	wantParams("code exchange", is.token["authorization_code"], true)
	is.mu.Unlock()

	rec := storedRecord(t, cfg)
	if rec.RefreshToken == "" {
		t.Fatalf("stored: %v", rec)
	}
	// The proxy refreshes once COOP forgets the access token; the refresh
	// carries the parameters too.
	f.em.RevokeToken(rec.AccessToken)
	p := f.start(t, cfg)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("through the proxy: %d %s", a.status, a.body)
	}
	is.mu.Lock()
	wantParams("refresh", is.token["refresh_token"], true)
	is.mu.Unlock()

	var status bytes.Buffer
	if err := runStatus(context.Background(), &invocation{settings: cfg, out: &status}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"issuer:         " + is.url, "token url:      " + is.url + "/token", "refresh token:  held"} {
		if !strings.Contains(status.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, status.String())
		}
	}
	// Without the audience it is another grant, not logged in.
	other := f.config(t, "ISSUER", is.url, "GRANT", "authorization_code", "RESOURCE", "https://r1.example/ https://r2.example/")
	status.Reset()
	_ = runStatus(context.Background(), &invocation{settings: other, out: &status})
	if !strings.Contains(status.String(), "no farmer logged in") {
		t.Errorf("a grant for another audience is found:\n%s", status.String())
	}
}

func TestCheckConfigReadsTheIssuersMetadata(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"http://` + r.Host + `","authorization_endpoint":"http://` + r.Host + `/authorize"}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	t.Setenv(config.EnvPrefix+"STORE", filepath.Join(dir, "tokens.json"))
	t.Setenv(config.EnvPrefix+"CLIENT_ID", "app")
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET", "s3cret-value")
	t.Setenv(config.EnvPrefix+"ISSUER", srv.URL)
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config"}, &stdout, &stderr)
	if want := "COOP_PROXY_ISSUER (--issuer): the metadata of " + srv.URL + " names no token endpoint: set COOP_PROXY_TOKEN_URL\n"; code != 1 || stdout.String() != want {
		t.Fatalf("exit %d, %q; want 1, %q", code, stdout.String(), want)
	}
	stdout.Reset()
	if code := run([]string{"check-config", "--issuer", srv.URL + "/other"}, &stdout, &stderr); code != 1 || !strings.Contains(stdout.String(), "COOP_PROXY_ISSUER (--issuer): cannot read the issuer's metadata") {
		t.Fatalf("exit %d, %q", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"check-config", "--token-url", srv.URL + "/token"}, &stdout, &stderr); code != 0 {
		t.Fatalf("with TOKEN_URL: exit %d, %q", code, stdout.String())
	}
}

// `token` finds the token endpoint in the issuer's metadata; `status`
// names a preset's endpoint without any request.
func TestTokenWithAnIssuerAndStatusWithAPreset(t *testing.T) {
	f := newFarm(t)
	is := newIssuerInFront(t, f)
	cfg := f.config(t, "ISSUER", is.url)
	tok, err := runTokenTo(t, cfg)
	if err != nil || strings.TrimSpace(tok) == "" {
		t.Fatalf("token: %q %v", tok, err)
	}
	if a := call(t, "POST", f.url+"/api/1/eggs-count", map[string]string{"Authorization": "Bearer " + strings.TrimSpace(tok)}); a.status != 200 {
		t.Fatalf("the printed token does not work at COOP: %d %s", a.status, a.body)
	}
	is.mu.Lock()
	if is.token["client_credentials"] == nil {
		t.Error("the token was not asked for at the issuer's token endpoint")
	}
	is.mu.Unlock()

	var status bytes.Buffer
	if err := runStatus(context.Background(), &invocation{settings: f.config(t, "PROVIDER", "github"), out: &status}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status.String(), "token url:      https://github.com/login/oauth/access_token\n") {
		t.Errorf("status:\n%s", status.String())
	}
}
