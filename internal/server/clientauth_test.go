package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/login"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// idp is an authorization server taking private_key_jwt: its token
// endpoint (/token) checks each request's assertion with go-jose against
// the registered public key and issues a token; its API (/api/...)
// accepts only tokens it issued since the key was last registered.
type idp struct {
	*httptest.Server
	mu       sync.Mutex
	pub      crypto.PublicKey
	alg      string
	audience string // "": the token endpoint's URL
	issued   int
	valid    map[string]bool
	grants   []string // grant_type of each token request
	jtis     map[string]bool
	failures []error
}

func newIDP(t *testing.T) *idp {
	p := &idp{valid: map[string]bool{}, jtis: map[string]bool{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if r.URL.Path != "/token" {
			if !p.valid[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, `{"ok":true}`)
			return
		}
		_ = r.ParseForm()
		p.grants = append(p.grants, r.PostForm.Get("grant_type"))
		aud := p.audience
		if aud == "" {
			aud = p.URL + "/token"
		}
		jti, err := clientauthtest.Check(r, clientauthtest.Want{Public: p.pub, Alg: p.alg, KeyID: clientauthtest.Thumbprint(t, p.pub),
			ClientID: "farm-app", Audience: aud, Now: time.Now()})
		if err == nil && p.jtis[jti] {
			err = fmt.Errorf("jti %s replayed", jti)
		}
		if err != nil {
			p.failures = append(p.failures, err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		p.jtis[jti] = true
		p.issued++
		tok := fmt.Sprintf("at-%d", p.issued)
		p.valid[tok] = true
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600,"refresh_token":"rt-%d"}`, tok, p.issued)
	}))
	t.Cleanup(p.Close)
	return p
}

// register makes pub the client's only key, and forgets every token issued.
func (p *idp) register(pub crypto.PublicKey, alg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pub, p.alg, p.valid = pub, alg, map[string]bool{}
}

func (p *idp) checkNoFailures(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, err := range p.failures {
		t.Error(err)
	}
}

// writeKeyFile writes k as PKCS#8 PEM to path, through a rename (as
// Kubernetes and cert-manager put files in place).
func writeKeyFile(t *testing.T, path string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	writeFile(t, tmp, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// jwtSettings loads the settings of a private_key_jwt client of p, and
// returns the environment they were loaded from.
func jwtSettings(t *testing.T, p *idp, keyFile string, kv ...string) (*config.Settings, map[string]string) {
	t.Helper()
	env := map[string]string{}
	kv = append([]string{"UPSTREAM", p.URL, "CLIENT_ID", "farm-app", "AUTH_STYLE", "private_key_jwt", "CLIENT_KEY_FILE", keyFile,
		"STORE", filepath.Join(t.TempDir(), "tokens.json"), "LISTEN", "127.0.0.1:0", "ADMIN_LISTEN", "127.0.0.1:0"}, kv...)
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvPrefix+kv[i]] = kv[i+1]
	}
	s, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s, env
}

// With private_key_jwt, the client-credentials grant, the refresh of a
// farmer's grant and login's code exchange each authenticate with a fresh
// assertion go-jose verifies, and never with a secret.
func TestPrivateKeyJWTAuthenticatesEveryTokenRequest(t *testing.T) {
	p := newIDP(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.register(key.Public(), "ES256")
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeKeyFile(t, keyFile, key)
	ctx := context.Background()

	s, _ := jwtSettings(t, p, keyFile)
	tk, err := NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	if _, err := tk.Cache.Token(ctx); err != nil {
		t.Fatal(err)
	}

	s, _ = jwtSettings(t, p, keyFile, "GRANT", "authorization_code")
	tk, err = NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	// The login, as `coop-proxy login --paste` runs it.
	in, paste := io.Pipe()
	defer paste.Close()
	out := writerFunc(func(b []byte) (int, error) {
		if _, after, ok := strings.Cut(string(b), "state="); ok {
			state, _, _ := strings.Cut(strings.TrimSpace(after), "&")
			go fmt.Fprintf(paste, "%s?code=the-code&state=%s\n", s.Route.RedirectURI, state)
		}
		return len(b), nil
	})
	ep, err := Endpoints(ctx, &s.Route)
	if err != nil {
		t.Fatal(err)
	}
	res, err := login.Run(ctx, login.Config{OAuth: *OAuthConfig(&s.Route, ep), HTTPClient: TokenHTTPClient(&s.Route), Paste: true, In: in, Out: out, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tok := res.Token
	rec := tokensource.RecordFromToken(tok, nil, time.Now().Add(-2*time.Hour)) // expired: the next use refreshes
	if _, err := tk.Store.Update(ctx, StoreKey(&s.Route), func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &rec, nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := tk.Cache.Token(ctx); err != nil || got.Access() == tok.AccessToken {
		t.Fatalf("refresh: %v, %v", got, err)
	}

	p.checkNoFailures(t)
	if want := "client_credentials authorization_code refresh_token"; strings.Join(p.grants, " ") != want {
		t.Fatalf("token requests %v, want %s", p.grants, want)
	}
}

// CLIENT_ASSERTION_AUDIENCE replaces the token endpoint as aud, and
// CLIENT_KEY_ID the thumbprint as kid.
func TestTheAssertionAudienceAndKeyIDSettings(t *testing.T) {
	p := newIDP(t)
	p.audience = "https://idp.example.com/realms/farm"
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	p.register(key.Public(), "EdDSA")
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeKeyFile(t, keyFile, key)
	s, _ := jwtSettings(t, p, keyFile, "CLIENT_ASSERTION_AUDIENCE", p.audience)
	tk, err := NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	if _, err := tk.Cache.Token(context.Background()); err != nil {
		t.Fatal(err)
	}
	p.checkNoFailures(t)

	// A kid the provider does not know is what the provider sees.
	s, _ = jwtSettings(t, p, keyFile, "CLIENT_ASSERTION_AUDIENCE", p.audience, "CLIENT_KEY_ID", "key-2026")
	tk, err = NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	if _, err := tk.Cache.Token(context.Background()); err == nil {
		t.Fatal("a kid other than the thumbprint passed the check")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failures) != 1 || !strings.Contains(p.failures[0].Error(), `kid "key-2026"`) {
		t.Fatalf("failures %v", p.failures)
	}
}

// A key file rotated in place is read again (as a secret file is), and the
// next token request is signed with the new key: the old key, no longer
// registered, is never tried again once the reload is in.
func TestARotatedKeyFileIsUsedWithoutARestart(t *testing.T) {
	p := newIDP(t)
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.register(old.Public(), "ES256")
	keyFile := filepath.Join(t.TempDir(), "key.pem")
	writeKeyFile(t, keyFile, old)
	s, env := jwtSettings(t, p, keyFile)
	r := start(t, s, Options{WatchEvery: 10 * time.Millisecond, Reread: func() (*config.Settings, error) {
		return config.Load("test", nil, env, config.Everything)
	}})
	if code, body := get(t, r.proxy+"/api/eggs"); code != 200 {
		t.Fatalf("%d %s", code, body)
	}

	_, next, _ := ed25519.GenerateKey(rand.Reader)
	p.register(next.Public(), "EdDSA") // the old key and its tokens are revoked
	writeKeyFile(t, keyFile, next)
	awaitRotated(t, r, "key file")
	p.checkNoFailures(t)
}

// client_secret_basic (and basic) form-encode the id and secret before
// Basic, as RFC 6749 §2.3.1 requires (a ':' in the id would otherwise end
// it); client_secret_post (and body) send them as they are in the form.
func TestSecretStylesSendTheCredentialsAsRFC6749Says(t *testing.T) {
	const id, secret = "Brent's: 100% + cron ü", "s:e%c+r e/ẞ=\"x"
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
	}))
	defer srv.Close()
	for _, style := range []string{"client_secret_basic", "basic", "client_secret_post", "body"} {
		env := map[string]string{config.EnvPrefix + "UPSTREAM": srv.URL, config.EnvPrefix + "CLIENT_ID": id,
			config.EnvPrefix + "CLIENT_SECRET": secret, config.EnvPrefix + "AUTH_STYLE": style,
			config.EnvPrefix + "STORE": filepath.Join(t.TempDir(), "tokens.json")}
		s, err := config.Load("test", nil, env, config.Needs{Client: true, Store: true})
		if err != nil {
			t.Fatal(err)
		}
		tk, err := NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tk.Cache.Token(context.Background()); err != nil {
			t.Fatalf("%s: %v", style, err)
		}
		tk.Cache.Close()
		user, pass, basic := got.BasicAuth()
		if strings.HasSuffix(style, "basic") {
			u, err1 := url.QueryUnescape(user)
			pw, err2 := url.QueryUnescape(pass)
			if !basic || err1 != nil || err2 != nil || u != id || pw != secret || strings.ContainsAny(user, ": ") {
				t.Errorf("%s: Basic user %q password %q", style, user, pass)
			}
			if got.PostForm.Has("client_secret") {
				t.Errorf("%s: the secret was in the form too", style)
			}
			continue
		}
		if basic || got.PostForm.Get("client_id") != id || got.PostForm.Get("client_secret") != secret {
			t.Errorf("%s: Basic %v, form %v", style, basic, got.PostForm)
		}
	}
}

// mtlsChildEnv marks the process TestTLSClientAuthFollowsARotatedCertificate
// runs itself in.
const mtlsChildEnv = "COOP_PROXY_TEST_MTLS_CHILD"

// With tls_client_auth, every token request goes out on a connection
// presenting the client's certificate, and a certificate and key rotated
// on disk (as cert-manager does) are presented from then on, without a
// restart. The token client trusts the system's roots only, and Go reads
// them once per process: the test runs itself again with SSL_CERT_FILE
// naming the test server's certificate (httptest's, the same in every
// process).
func TestTLSClientAuthFollowsARotatedCertificate(t *testing.T) {
	if os.Getenv(mtlsChildEnv) == "" {
		probe := httptest.NewTLSServer(http.NotFoundHandler())
		ca := filepath.Join(t.TempDir(), "ca.pem")
		writeFile(t, ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: probe.Certificate().Raw})))
		probe.Close()
		cmd := exec.Command(os.Args[0], "-test.run=^TestTLSClientAuthFollowsARotatedCertificate$", "-test.v")
		cmd.Env = append(os.Environ(), mtlsChildEnv+"=1", "SSL_CERT_FILE="+ca, "SSL_CERT_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestTLSClientAuthFollowsARotatedCertificate") {
			t.Fatalf("%v\n%s", err, out)
		}
		return
	}

	var mu sync.Mutex
	var registered []byte // the client certificate the provider knows (RFC 8705 §2.2)
	valid := map[string]bool{}
	issued := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/token" {
			if !valid[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			fmt.Fprint(w, `{"ok":true}`)
			return
		}
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		_, _, basic := r.BasicAuth()
		if len(r.TLS.PeerCertificates) == 0 || !bytes.Equal(r.TLS.PeerCertificates[0].Raw, registered) ||
			r.PostForm.Get("client_id") != "farm-app" || r.PostForm.Has("client_secret") || basic {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		issued++
		tok := fmt.Sprintf("at-%d", issued)
		valid[tok] = true
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	// Key, then certificate, each through a rename: a reload between the
	// two sees a pair that does not match, fails, and the next one takes it.
	put := func(certPEM, keyPEM []byte) {
		for _, f := range []struct {
			path string
			b    []byte
		}{{keyFile, keyPEM}, {certFile, certPEM}} {
			writeFile(t, f.path+".tmp", string(f.b))
			if err := os.Rename(f.path+".tmp", f.path); err != nil {
				t.Fatal(err)
			}
		}
	}
	register := func(certPEM []byte) {
		b, _ := pem.Decode(certPEM)
		mu.Lock()
		defer mu.Unlock()
		registered, valid = b.Bytes, map[string]bool{}
	}
	now := time.Now()
	certPEM, keyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(-time.Hour), now.Add(time.Hour))
	register(certPEM)
	put(certPEM, keyPEM)

	env := map[string]string{}
	for k, v := range map[string]string{"UPSTREAM": srv.URL, "CLIENT_ID": "farm-app", "AUTH_STYLE": "self_signed_tls_client_auth",
		"CLIENT_CERT_FILE": certFile, "CLIENT_KEY_FILE": keyFile, "STORE": filepath.Join(dir, "tokens.json"),
		"LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "127.0.0.1:0"} {
		env[config.EnvPrefix+k] = v
	}
	s, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, s, Options{WatchEvery: 10 * time.Millisecond, Reread: func() (*config.Settings, error) {
		return config.Load("test", nil, env, config.Everything)
	}})
	if code, body := get(t, r.proxy+"/api/eggs"); code != 200 {
		t.Fatalf("%d %s\n%s", code, body, r.logs.String())
	}

	certPEM, keyPEM = clientauthtest.SelfSigned(t, "farm-app", now.Add(-time.Hour), now.Add(time.Hour))
	register(certPEM) // the old certificate and its tokens are revoked
	put(certPEM, keyPEM)
	awaitRotated(t, r, "certificate")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// A reload that switches AUTH_STYLE to private_key_jwt changes nothing
// until a restart: the secret in effect goes on being sent, and the key
// is not half-applied under the old style.
func TestAReloadToAnotherKindOfCredentialWaitsForARestart(t *testing.T) {
	f := newFarm(t)
	s := f.settings(t)
	r := start(t, s, Options{})

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := filepath.Join(f.dir, "key.pem")
	writeKeyFile(t, keyFile, key)
	env := f.environ("AUTH_STYLE", "private_key_jwt", "CLIENT_KEY_FILE", keyFile)
	delete(env, config.EnvPrefix+"CLIENT_SECRET_FILE")
	next, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	r.srv.Reload(next)
	if in := r.srv.settings.Load().Route; in.AuthStyle != config.AuthBody || in.ClientKey != nil || in.ClientSecret == "" {
		t.Fatalf("in effect: style %s, key %v, secret set %v", in.AuthStyle, in.ClientKey, in.ClientSecret != "")
	}
	f.em.ExpireAllTokens()
	before := len(f.em.TokenRequests())
	// COOP rejects the token (invalid_token): a new one, with the secret in effect.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Post(r.proxy+"/api/1/eggs-count", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := f.em.TokenRequests()
	if len(reqs) == before || reqs[len(reqs)-1].Status != 200 {
		t.Fatalf("no token was fetched with the secret in effect: %+v", reqs[before:])
	}
	if !strings.Contains(r.logs.String(), "COOP_PROXY_AUTH_STYLE") {
		t.Fatalf("the style change is not reported as waiting for a restart:\n%s", r.logs.String())
	}
}

// awaitRotated waits for the server to report the rotated credential
// (what, for the message) reloaded, then checks a request goes through.
func awaitRotated(t *testing.T, r *running, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logs.String(), `"client_key_changed":true`) {
		if time.Now().After(deadline) {
			t.Fatalf("the rotated %s was not reloaded:\n%s", what, r.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, r.proxy+"/api/eggs"); code != 200 {
		t.Fatalf("after the rotation: %d %s\n%s", code, body, r.logs.String())
	}
}
