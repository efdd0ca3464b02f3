package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
	"github.com/coop-proxy/coop-proxy/internal/config"
)

// `coop-proxy token` with AUTH_STYLE=private_key_jwt gets its token with
// an assertion go-jose verifies, from the key file named in the settings.
func TestTokenCommandWithPrivateKeyJWT(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if _, err := clientauthtest.Check(r, clientauthtest.Want{Public: pub, Alg: "EdDSA", KeyID: clientauthtest.Thumbprint(t, pub),
			ClientID: "my-client", Audience: srv.URL + "/token", Now: time.Now()}); err != nil {
			t.Error(err)
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid_client"}`)
			return
		}
		fmt.Fprint(w, `{"access_token":"signed-in-with-a-key","token_type":"Bearer","expires_in":3600}`)
	}))
	defer srv.Close()
	for k, v := range map[string]string{"UPSTREAM": srv.URL, "CLIENT_ID": "my-client", "AUTH_STYLE": "private_key_jwt",
		"STORE": filepath.Join(dir, "tokens.json")} {
		t.Setenv(config.EnvPrefix+k, v)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{"token", "--client-key-file", keyFile}, &stdout, &stderr); code != 0 || stdout.String() != "signed-in-with-a-key\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// A key file that is not a key private_key_jwt can use is one line naming
// it, and no part of the key.
func TestABadKeyFileIsOneLine(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, []byte("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvPrefix+"CLIENT_ID", "my-client")
	t.Setenv(config.EnvPrefix+"STORE", filepath.Join(dir, "tokens.json"))
	var stdout, stderr bytes.Buffer
	code := run([]string{"token", "--auth-style", "private_key_jwt", "--client-key-file", keyFile}, &stdout, &stderr)
	if code == 0 || !bytes.Contains(stderr.Bytes(), []byte(keyFile+" has a PRIVATE KEY block that does not parse")) ||
		bytes.Count(stderr.Bytes(), []byte("\n")) != 1 || bytes.Contains(stderr.Bytes(), []byte("c2VjcmV0")) {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
}
