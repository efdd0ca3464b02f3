package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/dpop/dpoptest"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// `coop-proxy login` with DPoP on: the code exchange carries a proof of a
// new key, the grant is stored bound to it with the key, status shows the
// key's thumbprint, and serve's refresh of the grant proves the same key
// (the server takes the refresh token only with it).
func TestDPoPLoginBindsTheGrantToAKeyKeptWithIt(t *testing.T) {
	srv := dpoptest.NewServer(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range map[string]string{"UPSTREAM": srv.URL, "TOKEN_URL": srv.TokenURL(), "AUTHORIZE_URL": srv.URL + "/authorize",
		"CLIENT_ID": "farm-app", "CLIENT_SECRET_FILE": secret, "GRANT": "authorization_code", "SCOPES": "eggs",
		"DPOP": "true", "STORE": filepath.Join(dir, "tokens.json"), "REDIRECT_URI": freeRedirectURI(t),
		"NO_BROWSER": "true", "LOGIN_TIMEOUT": "10s"} {
		env[config.EnvPrefix+k] = v
	}
	cfg, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}

	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runLogin(context.Background(), &invocation{settings: cfg, out: pw})
		pw.Close()
		done <- err
	}()
	var out bytes.Buffer
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if m := authURLLine.FindStringSubmatch(sc.Text()); m != nil {
			go func() { // the browser: /authorize redirects to the callback at once
				if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(m[1]); err == nil {
					resp.Body.Close()
				}
			}()
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("login: %v\n%s", err, out.String())
	}
	for _, f := range srv.Failures() {
		t.Errorf("a proof was refused: %s", f)
	}
	proofs := srv.TokenProofs()
	rec := storedRecord(t, cfg)
	if len(proofs) != 1 || rec.DPoPJKT != proofs[0].JKT || len(rec.DPoPKey) == 0 || srv.BoundTo(rec.AccessToken) != rec.DPoPJKT {
		t.Fatalf("proofs %+v, stored %v", proofs, rec)
	}

	var status bytes.Buffer
	if err := runStatus(context.Background(), &invocation{settings: cfg, out: &status}); err != nil || !strings.Contains(status.String(), rec.DPoPJKT) {
		t.Fatalf("status: %v\n%s", err, status.String())
	}

	// The access token expires: serve's refresh proves the grant's key.
	st, err := server.OpenStore(cfg.Store, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(context.Background(), server.StoreKey(&cfg.Route), func(cur tokenstore.Record, _ bool) (*tokenstore.Record, error) {
		cur.Expiry = time.Now().Add(-time.Minute)
		return &cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	tk, err := server.NewTokens(context.Background(), cfg, &cfg.Route, zap.NewNop(), server.TokenOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tk.Cache.Close()
	tok, err := tk.Cache.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tok.Access() == rec.AccessToken || tok.DPoP().JKT() != rec.DPoPJKT || srv.BoundTo(tok.Access()) != rec.DPoPJKT {
		t.Fatalf("refreshed token %v bound to %q, want a new token bound to %s", tok.DPoP(), srv.BoundTo(tok.Access()), rec.DPoPJKT)
	}
}
