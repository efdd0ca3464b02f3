package main

// `coop-proxy login --device` (RFC 8628) end to end against an
// independent OpenID provider (zitadel/oidc's op, through internal/oidctest).

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/oidctest"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// deviceUser reads login's output as a person would, and once the user
// code is shown, decides it on the provider (decide is called once, in a
// goroutine, after delay).
type deviceUser struct {
	mu     sync.Mutex
	out    bytes.Buffer
	decide func(userCode string) error
	delay  time.Duration
	done   chan error
}

var userCodeRE = regexp.MustCompile(`enter the code (\S+)`)

func newDeviceUser(delay time.Duration, decide func(string) error) *deviceUser {
	return &deviceUser{decide: decide, delay: delay, done: make(chan error, 1)}
}

func (u *deviceUser) Write(b []byte) (int, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.out.Write(b)
	if m := userCodeRE.FindStringSubmatch(u.out.String()); m != nil && u.decide != nil {
		decide := u.decide
		u.decide = nil
		go func() {
			time.Sleep(u.delay)
			u.done <- decide(m[1])
		}()
	}
	return len(b), nil
}

func (u *deviceUser) String() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.out.String()
}

// deviceSetup registers a device client on p and sets coop-proxy's
// environment for it (with kv pairs of names without the prefix, and
// values, added); it returns the settings login and serve read.
func deviceSetup(t *testing.T, p *oidctest.Provider, c oidctest.Client, kv ...string) *config.Settings {
	t.Helper()
	dir := t.TempDir()
	kv = append([]string{"ISSUER", p.Issuer, "UPSTREAM", p.APIURL, "CLIENT_ID", c.ID, "SCOPES", "openid offline_access things:read",
		"STORE", filepath.Join(dir, "state", "tokens.json"), "LOGIN_TIMEOUT", "30s"}, kv...)
	if c.Secret != "" {
		secret := filepath.Join(dir, "secret")
		if err := os.WriteFile(secret, []byte(c.Secret), 0o600); err != nil {
			t.Fatal(err)
		}
		kv = append(kv, "CLIENT_SECRET_FILE", secret)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		t.Setenv(config.EnvPrefix+kv[i], kv[i+1])
	}
	s, err := config.Load("test", []string{"--grant", "authorization_code"}, nil, config.Needs{Client: true, Store: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storedGrant is the farmer's grant in the store, if any.
func storedGrant(t *testing.T, s *config.Settings) (tokenstore.Record, bool) {
	t.Helper()
	st, err := server.OpenStore(s.Store, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := st.Load(context.Background(), server.StoreKey(&s.Route))
	if err != nil {
		t.Fatal(err)
	}
	return rec, ok
}

func deviceClient(c oidctest.Client) oidctest.Client {
	c.GrantTypes = []string{oidctest.GrantDeviceCode, oidctest.GrantRefreshToken}
	c.Scopes = []string{"things:read"}
	return c
}

// The user approves: the grant is stored under the farmer's key, status
// shows it, `token` refreshes it once expired, and `serve --grant
// authorization_code` acts for the user, refreshing it when the API
// refuses the access token. Nothing printed holds a token.
func TestDeviceLoginThenTokenAndServeActForTheUser(t *testing.T) {
	p := oidctest.New(t)
	c := p.AddClient(deviceClient(oidctest.Client{AuthMethod: oidctest.ClientSecretBasic}))
	s := deviceSetup(t, p, c, "AUTH_STYLE", "basic")

	user := newDeviceUser(1500*time.Millisecond, p.ApproveDevice) // after a poll or two
	var stderr bytes.Buffer
	if code := run([]string{"login", "--device"}, user, &stderr); code != 0 {
		t.Fatalf("login --device: exit %d, %s\n%s", code, stderr.String(), user)
	}
	if err := <-user.done; err != nil {
		t.Fatal(err)
	}
	out := user.String()
	for _, want := range []string{"To log in, open " + p.Issuer + "/device in a browser on any device and enter the code ",
		"  or open " + p.Issuer + "/device?user_code=", "Waiting for the approval, up to 30s (Ctrl-C to stop)...", "Logged in as the farmer"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rec, ok := storedGrant(t, s)
	if !ok || rec.RefreshToken == "" || !strings.Contains(strings.Join(rec.Scopes, " "), "things:read") {
		t.Fatalf("stored %v (found %v), want the grant with its refresh token", rec.Scopes, ok)
	}
	for _, secret := range []string{rec.AccessToken, rec.RefreshToken, c.Secret} {
		if strings.Contains(out+stderr.String(), secret) {
			t.Fatal("login printed a token or the secret")
		}
	}

	var status bytes.Buffer
	if code := run([]string{"status", "--grant", "authorization_code"}, &status, &stderr); code != 0 ||
		!strings.Contains(status.String(), "things:read") || !strings.Contains(status.String(), "refresh token:  held") {
		t.Fatalf("status: exit %d\n%s%s", code, status.String(), stderr.String())
	}

	// The access token expires: `token` (the token stack of serve)
	// refreshes the grant at the issuer's token endpoint.
	st, err := server.OpenStore(s.Store, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(context.Background(), server.StoreKey(&s.Route), func(r tokenstore.Record, _ bool) (*tokenstore.Record, error) {
		r.Expiry = time.Now().Add(-time.Minute)
		return &r, nil
	}); err != nil {
		t.Fatal(err)
	}
	var tok bytes.Buffer
	if code := run([]string{"token", "--grant", "authorization_code"}, &tok, &stderr); code != 0 {
		t.Fatalf("token: exit %d, %s", code, stderr.String())
	}
	if fresh := strings.TrimSpace(tok.String()); fresh == rec.AccessToken || !strings.Contains(apiGet(t, p.APIURL+"/things/1", fresh), `"sub":"alice"`) {
		t.Fatal("token printed the expired access token, or one the API refuses")
	}

	// serve acts for the user; when the API refuses a revoked token, it
	// refreshes the grant and sends the request again.
	proxyURL := serveInProcess(t)
	if body := apiGet(t, proxyURL+"/things/2", ""); !strings.Contains(body, `"sub":"alice"`) {
		t.Fatalf("through serve: %s", body)
	}
	p.RevokeAccessTokens()
	if body := apiGet(t, proxyURL+"/things/3", ""); !strings.Contains(body, `"sub":"alice"`) {
		t.Fatalf("through serve, once the access token was revoked: %s", body)
	}
}

// apiGet GETs u, with the bearer token when one is given, and returns the
// body of a 200 (else fails).
func apiGet(t *testing.T, u, token string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
	}
	return string(body)
}

// serveInProcess runs `serve --grant authorization_code` with the
// environment's settings until the test ends, and returns its URL.
func serveInProcess(t *testing.T) string {
	t.Helper()
	t.Setenv(config.EnvPrefix+"LISTEN", "127.0.0.1:0")
	t.Setenv(config.EnvPrefix+"ADMIN_LISTEN", "off")
	s, err := config.Load("test", []string{"--grant", "authorization_code"}, nil, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan server.Addrs, 1)
	srv, err := server.New(s, server.Options{Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	select {
	case a := <-ready:
		return "http://" + a.Proxy
	case err := <-done:
		t.Fatalf("serve: %v", err)
		return ""
	}
}

// The user refuses: one line saying so, exit 1, nothing stored.
func TestDeviceLoginDenied(t *testing.T) {
	p := oidctest.New(t)
	c := p.AddClient(deviceClient(oidctest.Client{AuthMethod: oidctest.ClientSecretPost}))
	s := deviceSetup(t, p, c)
	user := newDeviceUser(0, p.DenyDevice)
	var stderr bytes.Buffer
	code := run([]string{"login", "--device"}, user, &stderr)
	if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "refused on the provider's page (access_denied): nothing was saved") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if _, ok := storedGrant(t, s); ok {
		t.Fatal("a refused login stored a grant")
	}
}

// Nobody enters the code: the provider's expired_token (or the code's
// expires_in, whichever comes first) ends the login; LOGIN_TIMEOUT ends it
// sooner when shorter.
func TestDeviceLoginExpiresAndTimesOut(t *testing.T) {
	p := oidctest.New(t, oidctest.WithDeviceCodeLifetime(2*time.Second))
	c := p.AddClient(deviceClient(oidctest.Client{AuthMethod: oidctest.ClientSecretPost}))
	s := deviceSetup(t, p, c)
	var out, stderr bytes.Buffer
	if code := run([]string{"login", "--device"}, &out, &stderr); code != 1 || !strings.Contains(stderr.String(), "the code expired before the login was approved") {
		t.Fatalf("expired: exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(out.String(), "Waiting for the approval, up to 2s") {
		t.Errorf("the wait shown is not the code's lifetime:\n%s", out.String())
	}
	if _, ok := storedGrant(t, s); ok {
		t.Fatal("a login whose code expired stored a grant")
	}

	p = oidctest.New(t)
	c = p.AddClient(deviceClient(oidctest.Client{AuthMethod: oidctest.ClientSecretPost}))
	s = deviceSetup(t, p, c, "LOGIN_TIMEOUT", "1500ms")
	stderr.Reset()
	if code := run([]string{"login", "--device"}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "no approval came within 1.5s") {
		t.Fatalf("timeout: exit %d, stderr %q", code, stderr.String())
	}
	if _, ok := storedGrant(t, s); ok {
		t.Fatal("a login that was never approved stored a grant")
	}
}

// With private_key_jwt, the device authorization request and every poll
// carry a fresh assertion, which zitadel verifies; no secret is sent.
func TestDeviceLoginWithPrivateKeyJWT(t *testing.T) {
	p := oidctest.New(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c := p.AddClient(deviceClient(oidctest.Client{AuthMethod: oidctest.PrivateKeyJWT,
		PublicKey: &jose.JSONWebKey{Key: key.Public(), Algorithm: string(jose.ES256), Use: "sig"}}))
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	s := deviceSetup(t, p, c, "AUTH_STYLE", "private_key_jwt", "CLIENT_KEY_FILE", keyFile)
	user := newDeviceUser(0, p.ApproveDevice)
	var stderr bytes.Buffer
	if code := run([]string{"login", "--device"}, user, &stderr); code != 0 {
		t.Fatalf("exit %d, %s\n%s", code, stderr.String(), user)
	}
	if rec, ok := storedGrant(t, s); !ok || rec.RefreshToken == "" {
		t.Fatalf("stored: %v", ok)
	}
}

// Without a device authorization endpoint (COOP has none), login --device
// is one line naming the settings that give one.
func TestDeviceLoginWithoutAnEndpointIsOneLine(t *testing.T) {
	t.Setenv(config.EnvPrefix+"CLIENT_ID", "Brent's Lazy CRON Job")
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET", "not-used")
	t.Setenv(config.EnvPrefix+"STORE", filepath.Join(t.TempDir(), "tokens.json"))
	var out, stderr bytes.Buffer
	code := run([]string{"login", "--device"}, &out, &stderr)
	want := "coop-proxy login: no device authorization endpoint: set COOP_PROXY_DEVICE_AUTHORIZATION_URL (--device-authorization-url), or COOP_PROXY_ISSUER (--issuer) of a provider whose metadata names one, or COOP_PROXY_PROVIDER (--provider) of one that has one (github, gitlab, google)\n"
	if code != 1 || stderr.String() != want || out.Len() != 0 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), stderr.String())
	}
}
