package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
)

func load(t *testing.T, args []string, env map[string]string, need Needs) (*Settings, error) {
	t.Helper()
	full := map[string]string{}
	for k, v := range env {
		full[EnvPrefix+k] = v
	}
	return Load("test", args, full, need)
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	s, err := load(t, []string{"--listen", "127.0.0.1:9999", "--refresh-margin=1m", "--no-browser", "--scopes", "eggs-count,profile"},
		map[string]string{"LISTEN": "127.0.0.1:7777", "REFRESH_MARGIN": "10m", "CLIENT_ID": "Brent's Lazy CRON Job"}, Needs{})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Route
	if r.Listen != "127.0.0.1:9999" || r.RefreshMargin != time.Minute || !s.NoBrowser || r.ClientID != "Brent's Lazy CRON Job" {
		t.Fatalf("%+v", s)
	}
	if r.Scopes.String() != "eggs-count profile" {
		t.Fatalf("scopes %q", r.Scopes)
	}
	if r.Upstream != "http://coop.apps.knpuniversity.com" || r.TokenEndpoint() != "http://coop.apps.knpuniversity.com/token" ||
		r.AuthorizeEndpoint() != "http://coop.apps.knpuniversity.com/authorize" || r.Grant != ClientCredentials || r.AuthStyle != AuthBody ||
		s.LogLevel.Level != zapcore.InfoLevel || s.LogFormat != "json" {
		t.Fatalf("defaults: %+v", s)
	}
}

func TestTypedSettingsRejectUnknownValuesWhileParsing(t *testing.T) {
	for _, tt := range []struct{ env, value, want string }{
		{"GRANT", "password", `COOP_PROXY_GRANT (--grant): "password" is not client_credentials or authorization_code`},
		{"AUTH_STYLE", "header", `COOP_PROXY_AUTH_STYLE (--auth-style): "header" is not body, basic, auto, client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth or self_signed_tls_client_auth`},
		{"LOG_FORMAT", "xml", `COOP_PROXY_LOG_FORMAT (--log-format): "xml" is not json or console`},
		{"LOG_LEVEL", "panic", `COOP_PROXY_LOG_LEVEL (--log-level): "panic" is not debug, info, warn or error`},
		{"UPSTREAM_TIMEOUT", "forever", `COOP_PROXY_UPSTREAM_TIMEOUT (--upstream-timeout): "forever" is not a duration`},
		{"MAX_CONNS", "many", `COOP_PROXY_MAX_CONNS (--max-conns): "many" is not a whole number`},
		{"NO_BROWSER", "perhaps", `COOP_PROXY_NO_BROWSER (--no-browser): "perhaps" is not true or false`},
	} {
		_, err := load(t, nil, map[string]string{tt.env: tt.value}, Needs{})
		var p Problems
		if !errors.As(err, &p) || len(p) != 1 || !strings.Contains(p[0].Error(), tt.want) {
			t.Errorf("%s=%s: %v; want %q", tt.env, tt.value, err, tt.want)
		}
	}
}

func TestSecretFilesAreReadOnceAndAFailedReadIsAnError(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET_FILE": file, "INBOUND_SECRET_FILE": file}
	s, err := load(t, nil, env, Everything)
	if err != nil {
		t.Fatal(err)
	}
	if s.Route.ClientSecret.Reveal() != "s3cret" || s.Route.InboundSecret.Reveal() != "s3cret" {
		t.Fatal("the secrets were not read from their file")
	}
	// The value read is the value used: rewriting the file later changes nothing.
	_ = os.WriteFile(file, []byte("other"), 0o600)
	if s.Route.ClientSecret.Reveal() != "s3cret" {
		t.Fatal("the settings changed after the load")
	}

	for name, content := range map[string]*string{"empty": new(""), "blank": new(" \n"), "missing": nil} {
		path := filepath.Join(dir, name)
		if content != nil {
			_ = os.WriteFile(path, []byte(*content), 0o600)
		}
		for _, which := range []string{"CLIENT_SECRET_FILE", "INBOUND_SECRET_FILE"} {
			env := map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET_FILE": file, which: path}
			s, err := load(t, nil, env, Everything)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Errorf("%s %s: %v, want an error naming the file", which, name, err)
			}
			if s != nil && which == "INBOUND_SECRET_FILE" && s.Route.InboundSecret != "" {
				t.Errorf("%s %s gave a secret", which, name)
			}
		}
	}
}

func TestSecretsAreNotReadWhenTheCommandDoesNotNeedThem(t *testing.T) {
	if _, err := load(t, nil, map[string]string{"CLIENT_SECRET_FILE": "/nonexistent"}, Needs{}); err != nil {
		t.Fatal(err)
	}
}

func TestHelpAndStrayArguments(t *testing.T) {
	if _, err := load(t, []string{"--help"}, nil, Needs{}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if _, err := load(t, []string{"extra"}, nil, Needs{}); err == nil || !strings.Contains(err.Error(), `unexpected argument "extra"`) {
		t.Fatalf("stray argument: %v", err)
	}
}

func TestEveryFieldHasAnEnvNameAMatchingFlagAndHelp(t *testing.T) {
	fields := Fields()
	if len(fields) < 25 {
		t.Fatalf("only %d settings found", len(fields))
	}
	for _, f := range fields {
		if f.Env == EnvPrefix || f.Help == "" {
			t.Errorf("%s lacks an env or help tag", f.Name)
		}
		if f.Flag != "" && EnvPrefix+EnvOfFlag(f.Flag) != f.Env {
			t.Errorf("%s: flag --%s does not match %s", f.Name, f.Flag, f.Env)
		}
		secret := strings.Contains(f.Name, "Secret") && !strings.HasSuffix(f.Name, "File")
		if secret != (f.Flag == "") {
			t.Errorf("%s: a secret has no flag, every other setting has one", f.Name)
		}
	}
}

func TestChangedNamesEachDifferingSetting(t *testing.T) {
	a, err := load(t, nil, map[string]string{"CLIENT_ID": "one"}, Needs{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := load(t, nil, map[string]string{"CLIENT_ID": "two", "LOG_LEVEL": "debug"}, Needs{})
	var names []string
	for _, f := range Changed(a, b) {
		names = append(names, f.Name)
	}
	if strings.Join(names, ",") != "ClientID,LogLevel" {
		t.Fatalf("changed: %v", names)
	}
}

func TestFrontDoorAndListenChecks(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string // "" for no problem
	}{
		{map[string]string{"LISTEN": "0.0.0.0:8080"}, "INBOUND_SECRET_FILE"},
		{map[string]string{"LISTEN": "0.0.0.0:8080", "ALLOW_UNAUTHENTICATED_CALLERS": "true"}, ""},
		{map[string]string{"LISTEN": "0.0.0.0:8080", "INBOUND_SECRET": "x"}, ""},
		{map[string]string{"LISTEN": "unix:relative.sock"}, "absolute path"},
		{map[string]string{"LISTEN": "8080"}, "is not host:port"},
		{map[string]string{"ADMIN_LISTEN": "example.com:9090"}, "must be an IP address"},
		{map[string]string{"ADMIN_LISTEN": "off", "LISTEN": "[::1]:8080"}, ""},
		{map[string]string{"UPSTREAM": "http://user:pw@coop/"}, "must not carry credentials"},
		{map[string]string{"MAX_CONNS": "0"}, "MAX_CONNS (--max-conns): must be more than 0"},
		{map[string]string{"RETRY_BODY_LIMIT": "0"}, ""},
	} {
		_, err := load(t, nil, tt.env, Needs{Listen: true})
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%v: %v; want %q", tt.env, err, tt.want)
		}
	}
}

// A secret file setting naming something endless (/dev/zero, /dev/urandom,
// a huge file by mistake) is one line naming it, not a read that never
// ends and takes all the memory.
func TestEndlessSecretFileIsAnError(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	done := make(chan error, 1)
	go func() {
		_, err := load(t, nil, map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET_FILE": "/dev/zero"}, Everything)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "/dev/zero") || strings.Count(err.Error(), "\n") > 0 {
			t.Fatalf("%v; want one line naming /dev/zero", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reading /dev/zero as the secret file did not end")
	}
}

func TestAStoreThatIsADirectoryIsAProblem(t *testing.T) {
	dir := t.TempDir()
	_, err := load(t, nil, map[string]string{"STORE": dir}, Needs{Store: true})
	if err == nil || !strings.Contains(err.Error(), "COOP_PROXY_STORE (--store): "+dir+" is a directory") {
		t.Fatalf("%v", err)
	}
}

func TestAuthStyleTakesTheStandardNames(t *testing.T) {
	for _, v := range []AuthStyle{AuthBody, AuthBasic, AuthAuto, AuthClientSecretBasic, AuthClientSecretPost} {
		s, err := load(t, nil, map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET": "s", "AUTH_STYLE": string(v)}, Needs{Client: true})
		if err != nil || s.Route.AuthStyle != v || s.Route.ClientSecret.Reveal() != "s" {
			t.Errorf("%s: %v", v, err)
		}
	}
}

// writeKey writes a PKCS#8 PEM key to a file in dir.
func writeKey(t *testing.T, dir string, k any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrivateKeyJWTReadsTheKeyFileAndWantsNoSecret(t *testing.T) {
	dir := t.TempDir()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := writeKey(t, dir, ec)
	jwt := map[string]string{"CLIENT_ID": "app", "AUTH_STYLE": "private_key_jwt", "CLIENT_KEY_FILE": keyFile}
	s, err := load(t, nil, jwt, Everything)
	if err != nil {
		t.Fatal(err)
	}
	if k := s.Route.ClientKey; k == nil || k.Alg() != "ES256" || s.Route.ClientSecret != "" {
		t.Fatalf("key %v, secret %q", k, s.Route.ClientSecret.Reveal())
	}
	// The key read is the key used: the file is not read again.
	thumb := s.Route.ClientKey.Thumbprint()
	_ = os.WriteFile(keyFile, []byte("gone"), 0o600)
	if s.Route.ClientKey.Thumbprint() != thumb {
		t.Fatal("the key changed after the load")
	}

	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile = writeKey(t, dir, ec2)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallFile := writeKey(t, t.TempDir(), small)
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range jwt {
			m[k] = v
		}
		m["CLIENT_KEY_FILE"] = keyFile
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{with("CLIENT_KEY_ID", "k1", "CLIENT_ASSERTION_AUDIENCE", "https://idp.example.com"), ""},
		{with("CLIENT_KEY_FILE", ""), "COOP_PROXY_CLIENT_KEY_FILE (--client-key-file): no client key"},
		{with("CLIENT_KEY_FILE", filepath.Join(dir, "missing")), "COOP_PROXY_CLIENT_KEY_FILE (--client-key-file): cannot read the key file: " + filepath.Join(dir, "missing") + ": no such file"},
		{with("CLIENT_KEY_FILE", smallFile), "COOP_PROXY_CLIENT_KEY_FILE (--client-key-file): " + smallFile + " is an RSA key of 1024 bits"},
		{with("CLIENT_SECRET", "s"), "COOP_PROXY_CLIENT_SECRET: not used with AUTH_STYLE=private_key_jwt"},
		{with("CLIENT_SECRET_FILE", keyFile), "COOP_PROXY_CLIENT_SECRET_FILE (--client-secret-file): not used with AUTH_STYLE=private_key_jwt"},
		{with("AUTH_STYLE", "client_secret_post", "CLIENT_SECRET", "s"), "COOP_PROXY_CLIENT_KEY_FILE (--client-key-file): only used with AUTH_STYLE=private_key_jwt, tls_client_auth or self_signed_tls_client_auth, not AUTH_STYLE=client_secret_post"},
		{with("AUTH_STYLE", "body", "CLIENT_SECRET", "s", "CLIENT_KEY_FILE", "", "CLIENT_KEY_ID", "k"), "COOP_PROXY_CLIENT_KEY_ID (--client-key-id): only used with AUTH_STYLE=private_key_jwt"},
		{with("AUTH_STYLE", "basic", "CLIENT_SECRET", "s", "CLIENT_KEY_FILE", "", "CLIENT_ASSERTION_AUDIENCE", "x"), "COOP_PROXY_CLIENT_ASSERTION_AUDIENCE (--client-assertion-audience): only used with"},
		{with("CLIENT_CERT_FILE", keyFile), "COOP_PROXY_CLIENT_CERT_FILE (--client-cert-file): only used with AUTH_STYLE=tls_client_auth or self_signed_tls_client_auth, not AUTH_STYLE=private_key_jwt"},
	} {
		s, err := load(t, nil, tt.env, Everything)
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%v: %v; want %q", tt.env, err, tt.want)
		}
		if tt.want == "" && (s.Route.ClientKeyID != "k1" || s.Route.ClientAssertionAudience != "https://idp.example.com") {
			t.Errorf("%+v", s.Route)
		}
	}
	// Commands that use no client read no key.
	if _, err := load(t, nil, with("CLIENT_KEY_FILE", "/nonexistent"), Needs{}); err != nil {
		t.Fatal(err)
	}
}

func TestTLSClientAuthReadsTheCertificateAndItsKey(t *testing.T) {
	dir := t.TempDir()
	file := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	certPEM, keyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(-time.Hour), now.Add(time.Hour))
	cert, key := file("cert.pem", certPEM), file("key.pem", keyPEM)
	_, otherKeyPEM := clientauthtest.SelfSigned(t, "other", now.Add(-time.Hour), now.Add(time.Hour))
	otherKey := file("other.pem", otherKeyPEM)
	oldPEM, oldKeyPEM := clientauthtest.SelfSigned(t, "farm-app", now.Add(-2*time.Hour), now.Add(-time.Hour))
	old, oldKey := file("old.pem", oldPEM), file("oldkey.pem", oldKeyPEM)

	for _, style := range []string{"tls_client_auth", "self_signed_tls_client_auth"} {
		s, err := load(t, nil, map[string]string{"CLIENT_ID": "app", "AUTH_STYLE": style, "CLIENT_CERT_FILE": cert, "CLIENT_KEY_FILE": key}, Everything)
		if err != nil {
			t.Fatal(err)
		}
		if c := s.Route.ClientCert; c == nil || c.Leaf.Subject.CommonName != "farm-app" || s.Route.ClientKey != nil || s.Route.ClientSecret != "" {
			t.Fatalf("%s: %+v", style, s.Route)
		}
	}
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{[]string{"CLIENT_KEY_FILE", key}, "COOP_PROXY_CLIENT_CERT_FILE (--client-cert-file): no client certificate"},
		{[]string{"CLIENT_CERT_FILE", cert}, "COOP_PROXY_CLIENT_KEY_FILE (--client-key-file): no client key"},
		{[]string{"CLIENT_CERT_FILE", cert, "CLIENT_KEY_FILE", otherKey}, "COOP_PROXY_CLIENT_CERT_FILE (--client-cert-file): " + cert + " with the key " + otherKey + ": tls: private key does not match public key"},
		{[]string{"CLIENT_CERT_FILE", old, "CLIENT_KEY_FILE", oldKey}, "the certificate expired on"},
		{[]string{"CLIENT_CERT_FILE", key, "CLIENT_KEY_FILE", key}, "COOP_PROXY_CLIENT_CERT_FILE (--client-cert-file): " + key + " with the key"},
		{[]string{"CLIENT_CERT_FILE", filepath.Join(dir, "none"), "CLIENT_KEY_FILE", key}, "cannot read the certificate file: " + filepath.Join(dir, "none")},
		{[]string{"CLIENT_CERT_FILE", cert, "CLIENT_KEY_FILE", key, "CLIENT_KEY_ID", "k"}, "COOP_PROXY_CLIENT_KEY_ID (--client-key-id): only used with AUTH_STYLE=private_key_jwt, not AUTH_STYLE=tls_client_auth"},
		{[]string{"CLIENT_CERT_FILE", cert, "CLIENT_KEY_FILE", key, "CLIENT_SECRET", "s"}, "COOP_PROXY_CLIENT_SECRET: not used with AUTH_STYLE=tls_client_auth"},
	} {
		env := map[string]string{"CLIENT_ID": "app", "AUTH_STYLE": "tls_client_auth"}
		for i := 0; i < len(tt.env); i += 2 {
			env[tt.env[i]] = tt.env[i+1]
		}
		_, err := load(t, nil, env, Everything)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), string(keyPEM[40:60])) {
			t.Errorf("%v: %v; want %q", tt.env, err, tt.want)
		}
	}
}

func TestDPoPReadsItsKeyFileOnlyWhenOn(t *testing.T) {
	dir := t.TempDir()
	ed := writeKey(t, dir, ed25519.NewKeyFromSeed(make([]byte, 32)))
	base := map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET": "s"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	s, err := load(t, []string{"--dpop"}, with("DPOP_KEY_FILE", ed), Everything)
	if err != nil || !s.Route.DPoP || s.Route.DPoPKey == nil || s.Route.DPoPKey.Alg() != "EdDSA" {
		t.Fatalf("%v: %+v", err, s.Route)
	}
	if s, err := load(t, nil, with("DPOP", "true"), Everything); err != nil || s.Route.DPoPKey != nil {
		t.Fatalf("without a key file: %v, %v", err, s.Route.DPoPKey)
	}
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{with("DPOP_KEY_FILE", ed), "COOP_PROXY_DPOP_KEY_FILE (--dpop-key-file): only used with COOP_PROXY_DPOP=true"},
		{with("DPOP", "true", "DPOP_KEY_FILE", filepath.Join(dir, "missing")), "COOP_PROXY_DPOP_KEY_FILE (--dpop-key-file): cannot read the key file"},
		{with("DPOP", "true", "DPOP_KEY_FILE", writeKey(t, t.TempDir(), mustP384(t))), "is an EC key on P-384"},
		{with("DPOP", "maybe"), "COOP_PROXY_DPOP (--dpop)"},
	} {
		if _, err := load(t, nil, tt.env, Everything); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v; want %q", tt.env, err, tt.want)
		}
	}
}

func mustP384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A URL setting that is not http(s), or does not parse, is refused without
// the password it may carry.
func TestABadURLSettingNeverShowsItsPassword(t *testing.T) {
	for _, v := range []string{"ftp://farmer:hunter2@idp.example/token", "http://farmer:hunter2@idp.example:port/token"} {
		_, err := load(t, nil, map[string]string{"TOKEN_URL": v}, Needs{})
		if err == nil || !strings.Contains(err.Error(), "TOKEN_URL") {
			t.Fatalf("%s: %v", v, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the problem shows the password: %v", v, err)
		}
	}
}

func TestStorePathForEachSystem(t *testing.T) {
	home := func() (string, error) { return "/home/brent", nil }
	noHome := func() (string, error) { return "", errors.New("$HOME is not defined") }
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	localAppData := `C:\Users\brent\AppData\Local`
	tests := []struct {
		name, goos string
		getenv     func(string) string
		home       func() (string, error)
		want, err  string
	}{
		{"linux", "linux", env(), home, "/home/brent/.local/state/coop-proxy/tokens.json", ""},
		{"linux with XDG_STATE_HOME", "linux", env("XDG_STATE_HOME", "/var/state"), home, "/var/state/coop-proxy/tokens.json", ""},
		{"linux with a relative XDG_STATE_HOME (ignored, as the spec says)", "linux", env("XDG_STATE_HOME", "state"), home, "/home/brent/.local/state/coop-proxy/tokens.json", ""},
		{"freebsd", "freebsd", env(), home, "/home/brent/.local/state/coop-proxy/tokens.json", ""},
		{"macOS", "darwin", env(), home, "/home/brent/Library/Application Support/coop-proxy/tokens.json", ""},
		{"macOS with XDG_STATE_HOME", "darwin", env("XDG_STATE_HOME", "/Users/brent/.state"), home, "/Users/brent/.state/coop-proxy/tokens.json", ""},
		{"windows", "windows", env("LOCALAPPDATA", localAppData, "XDG_STATE_HOME", "/ignored"), noHome, filepath.Join(localAppData, "coop-proxy", "tokens.json"), ""},
		{"windows without LOCALAPPDATA", "windows", env(), home, "", "%LOCALAPPDATA% is not set"},
		{"no home", "linux", env(), noHome, "", "no home directory to default to ($HOME is not defined)"},
		// A relative directory would put the tokens wherever the command runs.
		{"a relative home", "linux", env(), func() (string, error) { return "brent", nil }, "", `the home directory "brent" is not an absolute path`},
		{"macOS with a relative home", "darwin", env(), func() (string, error) { return ".", nil }, "", `the home directory "." is not an absolute path`},
		{"windows with a relative LOCALAPPDATA", "windows", env("LOCALAPPDATA", `AppData\Local`), home, "", `%LOCALAPPDATA% ("AppData\\Local") is not an absolute path`},
		{"windows with a drive-relative LOCALAPPDATA", "windows", env("LOCALAPPDATA", `C:AppData`), home, "", `%LOCALAPPDATA% ("C:AppData") is not an absolute path`},
		{"windows with a UNC LOCALAPPDATA", "windows", env("LOCALAPPDATA", `\\farm\brent`), noHome, filepath.Join(`\\farm\brent`, "coop-proxy", "tokens.json"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := storePathFor(tt.goos, tt.getenv, tt.home)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "STORE") {
					t.Fatalf("got %q, %v; want an error about STORE with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
