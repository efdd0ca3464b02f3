package server

// End-to-end against an independent OpenID provider (zitadel/oidc's op,
// through internal/oidctest) rather than our COOP emulator: issue 8,
// part 4. The API behind the proxy checks the tokens itself, with go-jose
// against the provider's keys.

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/oidctest"
)

// oidcEnviron is coop-proxy's environment for the provider's API, with
// kv pairs of names (without the prefix) and values added.
func oidcEnviron(t *testing.T, p *oidctest.Provider, c oidctest.Client, kv ...string) map[string]string {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	writeFile(t, secret, c.Secret)
	kv = append([]string{"UPSTREAM", p.APIURL, "TOKEN_URL", p.TokenURL, "CLIENT_ID", c.ID, "CLIENT_SECRET_FILE", secret,
		"GRANT", "client_credentials", "STORE", filepath.Join(dir, "state", "tokens.json"),
		"LISTEN", "127.0.0.1:0", "ADMIN_LISTEN", "127.0.0.1:0"}, kv...)
	env := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvPrefix+kv[i]] = kv[i+1]
	}
	return env
}

func TestClientCredentialsBasicThroughTheProxyToAnOpenIDProvidersAPI(t *testing.T) {
	p := oidctest.New(t)
	// A client id with a space and a quote: client_secret_basic must
	// form-encode it (RFC 6749 §2.3.1), which zitadel decodes.
	c := p.AddClient(oidctest.Client{ID: "Brent's CRON job", AuthMethod: oidctest.ClientSecretBasic, Scopes: []string{"things:read"}})
	s, err := config.Load("test", nil, oidcEnviron(t, p, c, "AUTH_STYLE", "basic", "SCOPES", "things:read"), config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, s, Options{})

	status, body := get(t, r.proxy+"/things/1?color=brown")
	if status != http.StatusOK {
		t.Fatalf("through the proxy: %d %s", status, body)
	}
	var seen struct {
		Sub, Path string
		ClientID  string   `json:"client_id"`
		Scope     []string `json:"scope"`
	}
	if err := json.Unmarshal([]byte(body), &seen); err != nil {
		t.Fatal(err)
	}
	if seen.Sub != c.ID || seen.ClientID != c.ID || seen.Path != "/things/1" || !slices.Equal(seen.Scope, []string{"things:read"}) {
		t.Errorf("the API saw %+v", seen)
	}

	// An administrator revokes the token: the API says invalid_token
	// (RFC 6750 §3.1), and the proxy gets a new one and retries once.
	p.RevokeAccessTokens()
	if status, body := get(t, r.proxy+"/things/2"); status != http.StatusOK {
		t.Fatalf("after the token was revoked: %d %s", status, body)
	}
	var statuses []int
	for _, a := range p.APIRequests() {
		statuses = append(statuses, a.Status)
	}
	if !slices.Equal(statuses, []int{200, 401, 200}) {
		t.Errorf("the API answered %v, want [200 401 200]: one token, then one retry with a new one", statuses)
	}
	if logs := r.logs.String(); strings.Contains(logs, c.Secret) {
		t.Error("the client secret is in the logs")
	}
}
