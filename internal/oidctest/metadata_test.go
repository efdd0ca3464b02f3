package oidctest

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// metadataAt GETs a metadata URL and returns the status and the issuer.
func metadataAt(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer string `json:"issuer"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&d)
	return resp.StatusCode, d.Issuer
}

func TestMetadataAtEveryWellKnownURL(t *testing.T) {
	for _, path := range []string{"", "/realms/test"} {
		t.Run("issuer path "+path, func(t *testing.T) {
			p := New(t, WithIssuerPath(path))
			u, _ := url.Parse(p.Issuer)
			host := u.Scheme + "://" + u.Host
			found := []string{
				host + "/.well-known/oauth-authorization-server" + path, // RFC 8414 §3
				host + "/.well-known/openid-configuration" + path,       // RFC 8414 §5
				p.Issuer + "/.well-known/openid-configuration",          // OpenID Connect Discovery §4
			}
			for _, f := range found {
				if status, issuer := metadataAt(t, f); status != http.StatusOK || issuer != p.Issuer {
					t.Errorf("%s: %d, issuer %q; want 200 and %q", f, status, issuer, p.Issuer)
				}
			}
			// RFC 8414 §3.3: no document for another issuer's URL.
			other := host + "/.well-known/oauth-authorization-server/realms/other"
			if status, _ := metadataAt(t, other); status != http.StatusNotFound {
				t.Errorf("%s: %d, want 404", other, status)
			}

			// The endpoints work under the issuer's path, and the API takes
			// tokens whose iss has it.
			c := p.AddClient(Client{})
			tok, err := (&clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}).Token(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			apiAccepts(t, p, tok)
			_, conf := loginClient(p)
			back, err := p.Authorize(ctx(t), conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if err != nil || back.Query().Get("code") == "" {
				t.Errorf("login under the issuer's path: err %v, code given %v", err, err == nil && back.Query().Get("code") != "")
			}
			dc := p.AddClient(Client{AuthMethod: None, GrantTypes: []string{GrantDeviceCode}})
			da, err := (&oauth2.Config{ClientID: dc.ID, Endpoint: withStyle(p.Endpoint(), oauth2.AuthStyleInParams)}).DeviceAuth(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(da.VerificationURIComplete, p.Issuer+"/") {
				t.Errorf("verification_uri_complete %s is not under the issuer", da.VerificationURIComplete)
			}
			resp, err := http.Get(da.VerificationURIComplete)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("verification_uri_complete: %s", resp.Status)
			}
		})
	}
}
