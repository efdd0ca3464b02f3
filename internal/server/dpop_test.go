package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/dpop/dpoptest"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// dpopSettings loads the settings of a client of srv with DPoP on, its API
// under /base; kv pairs override.
func dpopSettings(t *testing.T, srv *dpoptest.Server, store string, kv ...string) *config.Settings {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, "s3cret")
	env := map[string]string{}
	kv = append([]string{"UPSTREAM", srv.URL + "/base", "TOKEN_URL", srv.TokenURL(), "CLIENT_ID", "farm-app", "CLIENT_SECRET_FILE", secret,
		"DPOP", "true", "STORE", store, "LISTEN", "127.0.0.1:0", "ADMIN_LISTEN", "off"}, kv...)
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvPrefix+kv[i]] = kv[i+1]
	}
	s, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func checkProofsAccepted(t *testing.T, srv *dpoptest.Server) {
	t.Helper()
	for _, f := range srv.Failures() {
		t.Errorf("a proof was refused: %s", f)
	}
}

// Through the proxy, with DPoP on, against a server that binds its tokens
// to the proof's key and asks for nonces at the token endpoint and at the
// API: the token request carries a proof (and the nonce, asked once); every
// forwarded request carries Authorization: DPoP and a proof of the same
// key for its method and upstream URL without the query, with the token's
// hash and the API's nonce; the caller's DPoP header is never forwarded.
// A DPoP invalid_token answer costs a new token and one retry; after a
// restart, the stored token and its key are used as they are.
func TestDPoPThroughTheProxy(t *testing.T) {
	srv := dpoptest.NewServer(t)
	srv.TokenNonce, srv.APINonce = true, true
	store := filepath.Join(t.TempDir(), "tokens.json")
	s := dpopSettings(t, srv, store)
	r := start(t, s, Options{})

	if code, body := get(t, r.proxy+"/api/eggs?q=1", "DPoP", "the-callers-proof"); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	if code, body := get(t, r.proxy+"/api/eggs%2Fcount", "Dpop", "the-callers-proof"); code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	checkProofsAccepted(t, srv)
	tokenProofs := srv.TokenProofs()
	if len(tokenProofs) != 1 || tokenProofs[0].Nonce == "" || tokenProofs[0].ATH != "" {
		t.Fatalf("token endpoint's proofs %+v", tokenProofs)
	}
	jkt := tokenProofs[0].JKT
	calls := srv.APICalls()
	// the first request: asked for a nonce, sent again with it; the second
	// carries the fresh nonce of the first's answer at once
	if len(calls) != 3 || calls[0].Status != http.StatusUnauthorized || calls[1].Status != http.StatusOK || calls[2].Status != http.StatusOK {
		t.Fatalf("API calls %+v", calls)
	}
	for i, want := range []string{"/base/api/eggs", "/base/api/eggs", "/base/api/eggs%2Fcount"} {
		c := calls[i]
		if c.Proof.HTU != srv.URL+want || c.Proof.HTM != http.MethodGet || c.Proof.JKT != jkt || srv.BoundTo(c.Token) != jkt {
			t.Errorf("call %d: proof %+v of token bound to %s, want htu %s and key %s", i, c.Proof, srv.BoundTo(c.Token), srv.URL+want, jkt)
		}
		if got := c.Header.Values("Dpop"); len(got) != 1 || got[0] == "the-callers-proof" {
			t.Errorf("call %d: DPoP headers %q", i, got)
		}
		if got := c.Header.Get("Authorization"); got != "DPoP "+c.Token {
			t.Errorf("call %d: Authorization %q", i, got)
		}
	}
	if calls[0].Proof.Nonce != "" || calls[1].Proof.Nonce == "" || calls[2].Proof.Nonce == calls[1].Proof.Nonce {
		t.Errorf("nonces %q %q %q", calls[0].Proof.Nonce, calls[1].Proof.Nonce, calls[2].Proof.Nonce)
	}

	srv.RejectNext(1)
	if code, body := get(t, r.proxy+"/api/eggs"); code != http.StatusOK {
		t.Fatalf("after invalid_token: %d %s", code, body)
	}
	calls = srv.APICalls()[3:]
	if len(calls) != 2 || calls[0].Status != http.StatusUnauthorized || calls[1].Status != http.StatusOK || calls[0].Token == calls[1].Token {
		t.Fatalf("API calls after a rejection %+v", calls)
	}
	if n := len(srv.TokenProofs()); n != 2 {
		t.Fatalf("%d token requests, want 2", n)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}

	// The store holds the token with its key, never shown in the file as PEM.
	data, err := os.ReadFile(store)
	if err != nil || !strings.Contains(string(data), `"dpop_key"`) || !strings.Contains(string(data), `"dpop_jkt": "`+jkt+`"`) {
		t.Fatalf("store %s: %v", data, err)
	}
	r = start(t, dpopSettings(t, srv, store), Options{})
	if code, body := get(t, r.proxy+"/api/eggs"); code != http.StatusOK {
		t.Fatalf("after a restart: %d %s", code, body)
	}
	last := srv.APICalls()[len(srv.APICalls())-1]
	if n := len(srv.TokenProofs()); n != 2 || last.Token != calls[1].Token || last.Proof.JKT != jkt {
		t.Fatalf("after a restart: %d token requests, call %+v", n, last)
	}
	checkProofsAccepted(t, srv)
}

// A provider that answers a DPoP token request with a Bearer token does
// not support DPoP for this client: one clear error, and no token used.
func TestDPoPRefusesABearerAnswer(t *testing.T) {
	srv := dpoptest.NewServer(t)
	srv.AnswerBearer = true
	s := dpopSettings(t, srv, filepath.Join(t.TempDir(), "tokens.json"))
	tk, err := NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	_, err = tk.Cache.Token(context.Background())
	te, ok := err.(*tokensource.Error)
	if !ok || te.Code != tokensource.Unavailable || !strings.Contains(te.Description, "the provider does not support DPoP for this client") {
		t.Fatalf("%v", err)
	}
}

// With DPOP_KEY_FILE, the tokens are bound to the file's key, which the
// store does not copy; the refresh of a farmer's grant proves the key its
// refresh token is bound to.
func TestDPoPKeyFileAndTheRefreshOfABoundGrant(t *testing.T) {
	srv := dpoptest.NewServer(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := filepath.Join(t.TempDir(), "dpop.pem")
	writeKeyFile(t, keyFile, key)
	wantJKT, err := dpoptest.Thumbprint(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "tokens.json")
	s := dpopSettings(t, srv, store, "DPOP_KEY_FILE", keyFile, "GRANT", "authorization_code")
	tk, err := NewTokens(context.Background(), s, &s.Route, zap.NewNop(), TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	// a login's grant, bound to the key file's key
	rec := tokenstore.Record{RefreshToken: srv.Grant(wantJKT), TokenType: "DPoP"}
	DPoPKeys(&s.Route).Bind(&rec, dpop.NewKey(s.Route.DPoPKey))
	if _, err := tk.Store.Update(context.Background(), StoreKey(&s.Route), func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &rec, nil }); err != nil {
		t.Fatal(err)
	}
	tok, err := tk.Cache.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkProofsAccepted(t, srv)
	if srv.BoundTo(tok.Access()) != wantJKT || tok.DPoP().JKT() != wantJKT || !strings.HasPrefix(tok.Header(), "DPoP ") {
		t.Fatalf("token bound to %q, key %v", srv.BoundTo(tok.Access()), tok.DPoP())
	}
	data, _ := os.ReadFile(store)
	if strings.Contains(string(data), "dpop_key") || !strings.Contains(string(data), wantJKT) {
		t.Fatalf("store %s", data)
	}
}

// A DPoP key file rewritten in place with another key: its setting is the
// same, but the key in use stays until a restart, and a reload says so.
func TestADPoPKeyFileRewrittenWaitsForARestartAndSaysSo(t *testing.T) {
	srv := dpoptest.NewServer(t)
	keyFile := filepath.Join(t.TempDir(), "dpop.pem")
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeKeyFile(t, keyFile, k1)
	store := filepath.Join(t.TempDir(), "tokens.json")
	s := dpopSettings(t, srv, store, "DPOP_KEY_FILE", keyFile)
	logs := &syncBuffer{}
	server, err := New(s, Options{Log: zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), zap.DebugLevel))})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	writeKeyFile(t, keyFile, k2)
	server.Reload(dpopSettings(t, srv, store, "DPOP_KEY_FILE", keyFile))
	if !strings.Contains(logs.String(), "take effect only on restart") || !strings.Contains(logs.String(), "COOP_PROXY_DPOP_KEY_FILE") {
		t.Fatalf("a rewritten DPoP key file is not reported as waiting for a restart:\n%s", logs.String())
	}
}
