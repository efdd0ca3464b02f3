package main

// coop-proxy end to end against an independent OpenID provider, zitadel/oidc's
// op package run in-process by internal/oidctest (issue 8, part 4): the
// settings a user would give (an issuer and a client, nothing about
// endpoints), the commands (check-config, status, login) through run, and
// serve through the server, in front of an API that verifies the tokens
// itself with go-jose against the provider's published keys.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/fakeclock"
	"github.com/coop-proxy/coop-proxy/internal/oidctest"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// oidcRig is a provider, one client of it, and coop-proxy's settings for
// them in a test directory.
type oidcRig struct {
	p      *oidctest.Provider
	c      oidctest.Client
	dir    string
	env    map[string]string // without the prefix
	secret string            // the client secret file, when the client has a secret
}

// newOIDCRig registers c with p and sets coop-proxy up for it by issuer:
// ISSUER, UPSTREAM (the provider's API), the client id and its secret file
// (when it has a secret), a store of its own, ephemeral ports; kv are
// further settings.
func newOIDCRig(t *testing.T, p *oidctest.Provider, c oidctest.Client, kv ...string) *oidcRig {
	t.Helper()
	r := &oidcRig{p: p, c: p.AddClient(c), dir: t.TempDir()}
	r.env = map[string]string{"ISSUER": p.Issuer, "UPSTREAM": p.APIURL, "CLIENT_ID": r.c.ID,
		"STORE": filepath.Join(r.dir, "state", "tokens.json"), "LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "127.0.0.1:0"}
	if r.c.Secret != "" {
		r.secret = filepath.Join(r.dir, "secret")
		if err := os.WriteFile(r.secret, []byte(r.c.Secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r.env["CLIENT_SECRET_FILE"] = r.secret
	}
	for i := 0; i+1 < len(kv); i += 2 {
		r.env[kv[i]] = kv[i+1]
	}
	return r
}

// settings loads the rig's settings as serve does.
func (r *oidcRig) settings(t *testing.T) *config.Settings {
	t.Helper()
	env := map[string]string{}
	for k, v := range r.env {
		env[config.EnvPrefix+k] = v
	}
	s, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// command runs `coop-proxy args...` through run, with the rig's settings in
// the environment, as a user would, and returns its exit status and output.
func (r *oidcRig) command(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	r.setenv(t)
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// setenv puts the rig's settings in the environment, and takes out those
// an earlier setenv put there that the rig no longer has.
func (r *oidcRig) setenv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, config.EnvPrefix) {
			if _, ok := r.env[strings.TrimPrefix(k, config.EnvPrefix)]; !ok {
				t.Setenv(k, "") // restored at the end of the test
				os.Unsetenv(k)
			}
		}
	}
	for k, v := range r.env {
		t.Setenv(config.EnvPrefix+k, v)
	}
}

// serve runs serve with the rig's settings until the test ends; now is the
// proxy's clock (nil: the real one). Its log must hold no secret or token
// of the provider's at the end.
func (r *oidcRig) serve(t *testing.T, now func() time.Time) *proc {
	t.Helper()
	return runServer(t, r.settings(t), server.Options{TokenOptions: server.TokenOptions{Now: now}}, func(log string) { r.noSecretsIn(t, "the log", log) })
}

// jwtRE matches a JWT (the provider's access tokens, our assertions).
var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.`)

// noSecretsIn fails when text holds the client secret, a JWT or an
// Authorization value.
func (r *oidcRig) noSecretsIn(t *testing.T, what, text string) {
	t.Helper()
	if r.c.Secret != "" && strings.Contains(text, r.c.Secret) {
		t.Errorf("%s holds the client secret", what)
	}
	if jwtRE.MatchString(text) {
		t.Errorf("%s holds a JWT", what)
	}
	if strings.Contains(text, "Bearer ") {
		t.Errorf("%s holds an Authorization value", what)
	}
}

// seen is what the provider's API answered: the claims of the token it
// accepted.
type seen struct {
	Sub, Path string
	ClientID  string   `json:"client_id"`
	Scope     []string `json:"scope"`
}

// callAPI sends GET path through the proxy and wants the API's 200.
func callAPI(t *testing.T, p *proc, path string) seen {
	t.Helper()
	a := call(t, "GET", p.url+path, nil)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s through the proxy: %d %s", path, a.status, a.body)
	}
	var s seen
	if err := json.Unmarshal([]byte(a.body), &s); err != nil {
		t.Fatalf("the API's answer: %v: %s", err, a.body)
	}
	if s.Path != path {
		t.Errorf("the API was called at %q, want %q", s.Path, path)
	}
	return s
}

// apiStatuses are the statuses the provider's API answered, in order.
func apiStatuses(p *oidctest.Provider) []int {
	var s []int
	for _, a := range p.APIRequests() {
		s = append(s, a.Status)
	}
	return s
}

// metric is the value of a /metrics line that starts with name ("" when
// there is none).
func metric(t *testing.T, p *proc, name string) string {
	t.Helper()
	for line := range strings.Lines(call(t, "GET", p.admin+"/metrics", nil).body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			return v
		}
	}
	return ""
}

// (a) Discovery: the issuer and a client, nothing else about endpoints;
// check-config reads the provider's metadata, a request through the proxy
// reaches the API with a token it accepts, and status shows the grant.
func TestOIDCDiscoveryByIssuer(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []oidctest.Option
	}{
		{"issuer at the root", nil},
		{"issuer with a path", []oidctest.Option{oidctest.WithIssuerPath("/realms/acme")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := oidctest.New(t, tc.opts...)
			r := newOIDCRig(t, p, oidctest.Client{AuthMethod: oidctest.ClientSecretBasic, Scopes: []string{"things:read"}},
				"AUTH_STYLE", "client_secret_basic", "SCOPES", "things:read")

			code, out, errOut := r.command(t, "check-config")
			if code != 0 || out != "configuration OK\n" {
				t.Fatalf("check-config: exit %d, %q %q", code, out, errOut)
			}

			proxy := r.serve(t, nil)
			got := callAPI(t, proxy, "/things/1")
			if got.Sub != r.c.ID || got.ClientID != r.c.ID || !slices.Equal(got.Scope, []string{"things:read"}) {
				t.Errorf("the API saw %+v", got)
			}
			if ready := call(t, "GET", proxy.admin+"/readyz", nil); ready.status != 200 {
				t.Errorf("/readyz: %d %s", ready.status, ready.body)
			}

			code, out, errOut = r.command(t, "status")
			if code != 0 {
				t.Fatalf("status: exit %d, %q %q", code, out, errOut)
			}
			for _, want := range []string{"grant:          client_credentials\n", "client id:      " + r.c.ID + "\n",
				"issuer:         " + p.Issuer + "\n", "token url:      " + p.TokenURL + "\n", "scopes:         things:read\n", "access token:   sha256:"} {
				if !strings.Contains(out, want) {
					t.Errorf("status lacks %q:\n%s", want, out)
				}
			}
			r.noSecretsIn(t, "status", out)

			// `token` prints the stored token and nothing else; the API
			// takes it.
			code, out, errOut = r.command(t, "token")
			tok, ok := strings.CutSuffix(out, "\n")
			if code != 0 || !ok || strings.ContainsAny(tok, " \n") {
				t.Fatalf("token: exit %d, %q %q", code, out, errOut)
			}
			if a := call(t, "GET", p.APIURL+"/direct", map[string]string{"Authorization": "Bearer " + tok}); a.status != 200 {
				t.Errorf("the printed token at the API: %d %s", a.status, a.body)
			}

			// A provider that cannot serve the settings is a check-config
			// problem: zitadel lists no tls_client_auth.
			r.env["AUTH_STYLE"] = "tls_client_auth"
			r.env["CLIENT_CERT_FILE"], r.env["CLIENT_KEY_FILE"] = selfSignedCert(t, r.dir)
			delete(r.env, "CLIENT_SECRET_FILE")
			if code, out, _ := r.command(t, "check-config"); code != 1 || !strings.Contains(out, "COOP_PROXY_AUTH_STYLE") {
				t.Errorf("check-config with an auth style the provider does not list: exit %d, %q", code, out)
			}
		})
	}
}

// selfSignedCert writes a certificate and its key, and returns their paths.
func selfSignedCert(t *testing.T, dir string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), writeKey(t, dir, "tls.key", key)
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// writeKey writes key as a PKCS#8 PEM file in dir, mode 0600.
func writeKey(t *testing.T, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// (b) The client-credentials grant with client_secret_post and with
// private_key_jwt (ES256 and RS256), endpoints by discovery. The provider
// holds each client to the method it registered.
func TestOIDCClientCredentialsWithEachAuthStyle(t *testing.T) {
	p := oidctest.New(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    oidctest.Client
		kv   []string
		key  crypto.Signer
	}{
		{"client_secret_post", oidctest.Client{AuthMethod: oidctest.ClientSecretPost, Scopes: []string{"things:read"}},
			[]string{"AUTH_STYLE", "client_secret_post"}, nil},
		// The key is known to the provider by its RFC 7638 thumbprint,
		// coop-proxy's default kid; aud is the token endpoint (the default).
		{"private_key_jwt ES256", oidctest.Client{AuthMethod: oidctest.PrivateKeyJWT, Scopes: []string{"things:read"},
			PublicKey: &jose.JSONWebKey{Key: ecKey.Public(), KeyID: thumbprint(t, ecKey.Public()), Algorithm: string(jose.ES256), Use: "sig"}},
			[]string{"AUTH_STYLE", "private_key_jwt"}, ecKey},
		// A kid of the provider's choosing, and the issuer as aud.
		{"private_key_jwt RS256", oidctest.Client{AuthMethod: oidctest.PrivateKeyJWT, Scopes: []string{"things:read"},
			PublicKey: &jose.JSONWebKey{Key: rsaKey.Public(), KeyID: "rsa-2026", Algorithm: string(jose.RS256), Use: "sig"}},
			[]string{"AUTH_STYLE", "private_key_jwt", "CLIENT_KEY_ID", "rsa-2026", "CLIENT_ASSERTION_AUDIENCE", p.Issuer}, rsaKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newOIDCRig(t, p, tc.c, append([]string{"SCOPES", "things:read"}, tc.kv...)...)
			if tc.key != nil {
				r.env["CLIENT_KEY_FILE"] = writeKey(t, r.dir, "client.pem", tc.key)
			}
			if code, out, errOut := r.command(t, "check-config"); code != 0 {
				t.Fatalf("check-config: exit %d, %q %q", code, out, errOut)
			}
			proxy := r.serve(t, nil)
			if got := callAPI(t, proxy, "/things/"+r.c.ID); got.ClientID != r.c.ID || got.Sub != r.c.ID {
				t.Errorf("the API saw %+v", got)
			}
			// A second token (after a revocation) needs a fresh assertion:
			// the provider refuses a replayed jti.
			p.RevokeAccessTokens()
			callAPI(t, proxy, "/things/again")
			if n := metric(t, proxy, `coop_proxy_token_fetches_total{outcome="ok",route="default"}`); n != "2" {
				t.Errorf("token fetches = %q, want 2", n)
			}
		})
	}

	// A key the provider does not know: invalid_client, and no assertion
	// in the answer.
	t.Run("private_key_jwt with another key", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		r := newOIDCRig(t, p, oidctest.Client{AuthMethod: oidctest.PrivateKeyJWT,
			PublicKey: &jose.JSONWebKey{Key: ecKey.Public(), Algorithm: string(jose.ES256), Use: "sig"}}, "AUTH_STYLE", "private_key_jwt")
		r.env["CLIENT_KEY_FILE"] = writeKey(t, r.dir, "other.pem", other)
		proxy := r.serve(t, nil)
		a := call(t, "GET", proxy.url+"/things/1", nil)
		if a.status != 503 || a.json["error"] != "invalid_client" {
			t.Errorf("%d %s", a.status, a.body)
		}
		r.noSecretsIn(t, "the answer", a.body)
	})

	// The wrong method for the client: the provider's refusal reaches the
	// caller as invalid_client, its description naming both methods.
	t.Run("client_secret_post for a client_secret_basic client", func(t *testing.T) {
		r := newOIDCRig(t, p, oidctest.Client{AuthMethod: oidctest.ClientSecretBasic}, "AUTH_STYLE", "client_secret_post")
		proxy := r.serve(t, nil)
		a := call(t, "GET", proxy.url+"/things/1", nil)
		desc, _ := a.json["error_description"].(string)
		if a.status != 503 || a.json["error"] != "invalid_client" ||
			!strings.Contains(desc, "client must authenticate with client_secret_basic, not client_secret_post") {
			t.Errorf("%d %s", a.status, a.body)
		}
		if strings.Contains(desc, "COOP") {
			t.Errorf("the answer blames COOP for another provider: %s", desc)
		}
		r.noSecretsIn(t, "the answer", a.body)
	})
}

// thumbprint is the RFC 7638 SHA-256 thumbprint of pub, base64url, by
// go-jose.
func thumbprint(t *testing.T, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// loginLine is login's line with the address to open.
var loginLine = regexp.MustCompile(`Open this address in a browser to log in[^:]*: (\S+)`)

// login runs `coop-proxy login` (args are its flags) through run, with the
// provider's Authorize acting as the user's browser: it opens the address
// login prints and brings the redirect back, to login's listener or, with
// --paste, pasted on standard input. It returns login's exit status and
// output.
func (r *oidcRig) login(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r.setenv(t)
	paste := slices.Contains(args, "--paste")
	var pasteIn *os.File
	if paste {
		in, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := os.Stdin
		os.Stdin, pasteIn = in, w
		t.Cleanup(func() { os.Stdin = old; in.Close(); w.Close() })
	}
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		code := run(append([]string{"login"}, args...), pw, &stderr)
		pw.Close()
		done <- code
	}()
	lines := readLines(pr) // read on, so that login never blocks writing
	var out strings.Builder
	for line := range lines {
		out.WriteString(line + "\n")
		m := loginLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		back, err := r.p.Authorize(context.Background(), m[1])
		if err != nil {
			t.Errorf("the browser: %v", err)
			continue
		}
		if paste {
			_, _ = io.WriteString(pasteIn, back.String()+"\n")
			continue
		}
		resp, err := http.Get(back.String()) // to login's loopback listener
		if err != nil {
			t.Errorf("the redirect to login's listener: %v", err)
			continue
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(page), "COOP") {
			t.Errorf("login's page names COOP:\n%s", page)
		}
	}
	code := <-done
	out.WriteString(stderr.String())
	return code, out.String()
}

// loginClient is a confidential client for a user's grant, with a loopback
// redirect URI.
func loginClient(t *testing.T) oidctest.Client {
	return oidctest.Client{AuthMethod: oidctest.ClientSecretBasic, Scopes: []string{"things:read"},
		GrantTypes:   []string{oidctest.GrantAuthorizationCode, oidctest.GrantRefreshToken},
		RedirectURIs: []string{freeRedirectURI(t)}}
}

// (c) The authorization-code grant with PKCE, then serve with refresh:
// login (listener and paste) stores the user's grant, serve acts as the
// user, and when the access token expires or is revoked coop-proxy
// refreshes it; the provider rotates refresh tokens, and the store holds
// the one alive.
func TestOIDCLoginThenServeRefreshesWithRotation(t *testing.T) {
	for _, mode := range []string{"listener", "paste"} {
		t.Run(mode, func(t *testing.T) {
			p := oidctest.New(t)
			p.SetUser("brent")
			c := loginClient(t)
			r := newOIDCRig(t, p, c, "GRANT", "authorization_code", "AUTH_STYLE", "client_secret_basic",
				"SCOPES", "openid offline_access things:read", "REDIRECT_URI", c.RedirectURIs[0], "NO_BROWSER", "true", "LOGIN_TIMEOUT", "10s")
			args := []string{}
			if mode == "paste" {
				args = append(args, "--paste")
			}
			code, out := r.login(t, args...)
			if code != 0 || !strings.Contains(out, "Logged in as") {
				t.Fatalf("login: exit %d\n%s", code, out)
			}
			if strings.Contains(out, "log in to COOP") {
				t.Errorf("login sends the user to COOP:\n%s", out)
			}
			r.noSecretsIn(t, "login's output", out)
			cfg := r.settings(t)
			first := storedRecord(t, cfg)
			if first.RefreshToken == "" || !slices.Contains(first.Scopes, "offline_access") {
				t.Fatalf("login stored no refresh token, scopes %v", first.Scopes)
			}

			code, status, _ := r.command(t, "status")
			for _, want := range []string{"grant:          authorization_code\n", "refresh token:  held (sha256:", "issuer:         " + p.Issuer + "\n"} {
				if code != 0 || !strings.Contains(status, want) {
					t.Errorf("status (exit %d) lacks %q:\n%s", code, want, status)
				}
			}

			clock := fakeclock.New(time.Now())
			proxy := r.serve(t, clock.Now)
			if got := callAPI(t, proxy, "/things/1"); got.Sub != "brent" || got.ClientID != r.c.ID {
				t.Fatalf("the API saw %+v, want the user brent", got)
			}

			// Expiry, as coop-proxy's clock sees it: a refresh, not a
			// rejected request.
			clock.Advance(6 * time.Minute)
			if got := callAPI(t, proxy, "/things/2"); got.Sub != "brent" {
				t.Fatalf("after expiry the API saw %+v", got)
			}
			second := storedRecord(t, cfg)
			if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
				t.Fatal("the store does not hold the refreshed tokens")
			}

			// Revoked by the provider: the API refuses the token
			// (invalid_token), coop-proxy refreshes and retries once.
			clock.Advance(15 * time.Second)
			p.RevokeAccessTokens()
			if got := callAPI(t, proxy, "/things/3"); got.Sub != "brent" {
				t.Fatalf("after revocation the API saw %+v", got)
			}

			// Expired by the provider's clock while coop-proxy still
			// holds it valid (a lifetime under 30 s counts as 30 s): the
			// API's invalid_token leads to a refresh too.
			clock.Advance(15 * time.Second)
			// 2 s: the token's exp is in whole seconds, so it may end up
			// to a second early, and the retry must still find it alive.
			p.SetAccessTokenLifetime(2 * time.Second)
			p.RevokeAccessTokens()
			callAPI(t, proxy, "/things/4") // gets a 2 s token
			time.Sleep(2100 * time.Millisecond)
			clock.Advance(15 * time.Second)
			if got := callAPI(t, proxy, "/things/5"); got.Sub != "brent" {
				t.Fatalf("after the provider's expiry the API saw %+v", got)
			}
			if want := []int{200, 200, 401, 200, 401, 200, 401, 200}; !slices.Equal(apiStatuses(p), want) {
				t.Errorf("the API answered %v, want %v", apiStatuses(p), want)
			}
			if err := proxy.stop(); err != nil {
				t.Fatal(err)
			}

			// Rotation: every refresh token but the stored one is dead at
			// the provider; the stored one works.
			last := storedRecord(t, cfg)
			conf := oauth2.Config{ClientID: r.c.ID, ClientSecret: r.c.Secret, Endpoint: p.Endpoint()}
			conf.Endpoint.AuthStyle = oauth2.AuthStyleInHeader
			for i, old := range []string{first.RefreshToken, second.RefreshToken} {
				if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: old}).Token(); oauthErrorCode(err) != "invalid_grant" {
					t.Errorf("refresh token %d, rotated away: %v, want invalid_grant", i+1, err)
				}
			}
			if slices.Contains([]string{first.RefreshToken, second.RefreshToken}, last.RefreshToken) {
				t.Fatal("the store holds a rotated-away refresh token")
			}
			if _, err := conf.TokenSource(context.Background(), &oauth2.Token{RefreshToken: last.RefreshToken}).Token(); err != nil {
				t.Errorf("the stored refresh token: %v", err)
			}
		})
	}
}

func oauthErrorCode(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// (d) An API that checks scopes: a token without the scope gets the API's
// 403 insufficient_scope, passed through untouched and not retried; a
// revoked token costs one fetch and one retry.
func TestOIDCAPIThatChecksTokens(t *testing.T) {
	p := oidctest.New(t, oidctest.WithAPIScope("things:write"))

	t.Run("missing scope passes through", func(t *testing.T) {
		r := newOIDCRig(t, p, oidctest.Client{Scopes: []string{"things:read"}}, "AUTH_STYLE", "basic", "SCOPES", "things:read")
		proxy := r.serve(t, nil)
		before := len(p.APIRequests())
		a := call(t, "POST", proxy.url+"/things", nil)
		if a.status != http.StatusForbidden || a.header.Get("WWW-Authenticate") != `Bearer realm="oidctest", error="insufficient_scope", scope="things:write"` {
			t.Fatalf("%d %v %s", a.status, a.header, a.body)
		}
		if a.body != "" {
			t.Errorf("the API's empty 403 came with a body: %q", a.body)
		}
		if got := apiStatuses(p)[before:]; !slices.Equal(got, []int{403}) {
			t.Errorf("the API answered %v, want one 403", got)
		}
		if n := metric(t, proxy, `coop_proxy_token_fetches_total{outcome="ok",route="default"}`); n != "1" {
			t.Errorf("token fetches = %q, want 1", n)
		}
		if n := metric(t, proxy, `coop_proxy_retries_total{route="default"}`); n != "0" {
			t.Errorf("retries = %q, want 0", n)
		}
	})

	t.Run("revoked token is replaced once", func(t *testing.T) {
		r := newOIDCRig(t, p, oidctest.Client{Scopes: []string{"things:write"}}, "AUTH_STYLE", "basic", "SCOPES", "things:write")
		proxy := r.serve(t, nil)
		before := len(p.APIRequests())
		callAPI(t, proxy, "/things/1")
		p.RevokeAccessTokens()
		callAPI(t, proxy, "/things/2")
		if got := apiStatuses(p)[before:]; !slices.Equal(got, []int{200, 401, 200}) {
			t.Errorf("the API answered %v, want [200 401 200]", got)
		}
		if n := metric(t, proxy, `coop_proxy_token_fetches_total{outcome="ok",route="default"}`); n != "2" {
			t.Errorf("token fetches = %q, want 2", n)
		}
		if n := metric(t, proxy, `coop_proxy_retries_total{route="default"}`); n != "1" {
			t.Errorf("retries = %q, want 1", n)
		}
	})
}

// (c) A grant the provider ends: its refusal of the refresh token is
// 503 login_required for the callers, naming the token endpoint; a new
// login is picked up by the running proxy, without a restart.
func TestOIDCGrantEndedByTheProviderThenLoginAgain(t *testing.T) {
	p := oidctest.New(t)
	c := loginClient(t)
	r := newOIDCRig(t, p, c, "GRANT", "authorization_code", "AUTH_STYLE", "client_secret_basic",
		"SCOPES", "openid offline_access", "REDIRECT_URI", c.RedirectURIs[0], "NO_BROWSER", "true", "LOGIN_TIMEOUT", "10s")
	if code, out := r.login(t); code != 0 {
		t.Fatalf("login: exit %d\n%s", code, out)
	}
	proxy := r.serve(t, nil)
	if got := callAPI(t, proxy, "/things/1"); got.Sub != "alice" {
		t.Fatalf("the API saw %+v", got)
	}

	p.RevokeRefreshTokens()
	p.RevokeAccessTokens()
	a := call(t, "GET", proxy.url+"/things/2", nil)
	desc, _ := a.json["error_description"].(string)
	if a.status != 503 || a.json["error"] != "login_required" || a.header.Get("Retry-After") == "" ||
		!strings.HasPrefix(desc, "the token endpoint refused the stored grant (expired or revoked)") || !strings.Contains(desc, "coop-proxy login") {
		t.Fatalf("after the provider ended the grant: %d %s", a.status, a.body)
	}
	r.noSecretsIn(t, "the answer", a.body)

	p.SetUser("bob")
	if code, out := r.login(t); code != 0 {
		t.Fatalf("login again: exit %d\n%s", code, out)
	}
	waitUntil(t, "the new grant to be used", func() bool {
		return call(t, "GET", proxy.url+"/things/3", nil).status == http.StatusOK
	})
	if got := callAPI(t, proxy, "/things/4"); got.Sub != "bob" {
		t.Errorf("after the new login the API saw %+v, want bob", got)
	}
}

// The user refuses at the provider (RFC 6749 §4.1.2.1 access_denied): login
// ends with one line that says so, sends nobody to COOP, and stores nothing.
func TestOIDCLoginRefused(t *testing.T) {
	p := oidctest.New(t)
	p.DenyConsent(true)
	c := loginClient(t)
	r := newOIDCRig(t, p, c, "GRANT", "authorization_code", "AUTH_STYLE", "client_secret_basic",
		"SCOPES", "openid offline_access", "REDIRECT_URI", c.RedirectURIs[0], "NO_BROWSER", "true", "LOGIN_TIMEOUT", "10s")
	code, out := r.login(t)
	if code != 1 || !strings.Contains(out, "coop-proxy login: login refused at the authorization server (access_denied): nothing was saved") || strings.Contains(out, "COOP") {
		t.Fatalf("login refused: exit %d\n%s", code, out)
	}
	if _, err := os.Stat(r.env["STORE"]); err == nil {
		if code, status, _ := r.command(t, "status"); code != 0 || !strings.Contains(status, "no farmer logged in") {
			t.Errorf("a grant is stored after a refusal:\n%s", status)
		}
	}
}
