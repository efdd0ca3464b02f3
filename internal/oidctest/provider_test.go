package oidctest

// These tests prove the harness with plain golang.org/x/oauth2 and
// go-jose, never with coop-proxy's code, so that the harness can judge it.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// callAPI sends a request to the API with the header value given (none
// when empty) and returns the status, the challenge and the body.
func callAPI(t *testing.T, p *Provider, authorization string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodGet, p.APIURL+"/things/1", nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// apiAccepts fails the test unless the API takes the token, and returns
// what it saw.
func apiAccepts(t *testing.T, p *Provider, tok *oauth2.Token) Claims {
	t.Helper()
	status, _, body := callAPI(t, p, "Bearer "+tok.AccessToken)
	if status != http.StatusOK {
		t.Fatalf("API answered %d to a fresh token", status)
	}
	var c Claims
	if err := json.Unmarshal([]byte(body), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// oauthError is the error code of a token endpoint's error response.
func oauthError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

func TestDiscoveryDocument(t *testing.T) {
	p := New(t)
	resp, err := http.Get(p.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer               string   `json:"issuer"`
		Token                string   `json:"token_endpoint"`
		Authorization        string   `json:"authorization_endpoint"`
		Device               string   `json:"device_authorization_endpoint"`
		Revocation           string   `json:"revocation_endpoint"`
		JWKS                 string   `json:"jwks_uri"`
		Grants               []string `json:"grant_types_supported"`
		AuthMethods          []string `json:"token_endpoint_auth_methods_supported"`
		CodeChallengeMethods []string `json:"code_challenge_methods_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	// RFC 8414 §3.3 / OpenID Connect Discovery §4.3: exactly the issuer.
	if d.Issuer != p.Issuer {
		t.Errorf("issuer %q, want %q", d.Issuer, p.Issuer)
	}
	for name, got := range map[string][2]string{
		"token": {d.Token, p.TokenURL}, "authorization": {d.Authorization, p.AuthURL},
		"device": {d.Device, p.DeviceAuthURL}, "revocation": {d.Revocation, p.RevocationURL}, "jwks": {d.JWKS, p.JWKSURL},
	} {
		if got[0] == "" || got[0] != got[1] {
			t.Errorf("%s endpoint %q, Provider says %q", name, got[0], got[1])
		}
	}
	for _, g := range []string{GrantClientCredentials, GrantAuthorizationCode, GrantRefreshToken, GrantDeviceCode} {
		if !slices.Contains(d.Grants, g) {
			t.Errorf("grant_types_supported %v lacks %s", d.Grants, g)
		}
	}
	for _, m := range []string{ClientSecretBasic, ClientSecretPost, PrivateKeyJWT} {
		if !slices.Contains(d.AuthMethods, m) {
			t.Errorf("token_endpoint_auth_methods_supported %v lacks %s", d.AuthMethods, m)
		}
	}
	if !slices.Contains(d.CodeChallengeMethods, "S256") {
		t.Errorf("code_challenge_methods_supported %v lacks S256", d.CodeChallengeMethods)
	}
}

func TestClientCredentialsWithEachSecretMethod(t *testing.T) {
	p := New(t)
	for _, m := range []struct {
		method            string
		style, otherStyle oauth2.AuthStyle
	}{
		{ClientSecretBasic, oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams},
		{ClientSecretPost, oauth2.AuthStyleInParams, oauth2.AuthStyleInHeader},
	} {
		t.Run(m.method, func(t *testing.T) {
			// A client id with a space and a quote, as COOP's are: Basic
			// needs them form-encoded (RFC 6749 §2.3.1).
			c := p.AddClient(Client{ID: "Brent's " + m.method, AuthMethod: m.method, Scopes: []string{"eggs-count"}})
			conf := clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: p.TokenURL,
				Scopes: []string{"eggs-count"}, AuthStyle: m.style}
			tok, err := conf.Token(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if tok.Expiry.IsZero() || tok.RefreshToken != "" {
				t.Errorf("token expiry %v, refresh token present %v: want an expiry and no refresh token (RFC 6749 §4.4.3)", tok.Expiry, tok.RefreshToken != "")
			}
			got := apiAccepts(t, p, tok)
			if got.Subject != c.ID || got.ClientID != c.ID || !slices.Equal(got.Scopes, []string{"eggs-count"}) {
				t.Errorf("API saw %+v", got)
			}

			// The other method is refused: a client has one (RFC 7591 §2).
			other := conf
			other.AuthStyle = m.otherStyle
			if _, err := other.Token(ctx(t)); oauthError(err) != "invalid_client" {
				t.Errorf("with the other method: %v, want invalid_client", err)
			}
			wrong := conf
			wrong.ClientSecret = c.Secret + "x"
			if _, err := wrong.Token(ctx(t)); oauthError(err) != "invalid_client" {
				t.Errorf("with a wrong secret: %v, want invalid_client", err)
			}
			scope := conf
			scope.Scopes = []string{"eggs-collect"}
			if _, err := scope.Token(ctx(t)); oauthError(err) != "invalid_scope" {
				t.Errorf("with a scope not registered: %v, want invalid_scope", err)
			}
		})
	}
}

func TestSecretsAreFreshPerProvider(t *testing.T) {
	a, b := New(t).AddClient(Client{ID: "same"}), New(t).AddClient(Client{ID: "same"})
	if a.Secret == "" || a.Secret == b.Secret {
		t.Fatal("two providers gave the same client the same (or no) secret")
	}
}

func TestAPIRefusesBadTokens(t *testing.T) {
	p := New(t, WithAccessTokenLifetime(time.Second))
	c := p.AddClient(Client{})
	conf := clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := conf.Token(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	apiAccepts(t, p, tok)

	// A token from another provider: the same claims' shape, the wrong key
	// and issuer.
	q := New(t)
	qc := q.AddClient(Client{})
	qtok, err := (&clientcredentials.Config{ClientID: qc.ID, ClientSecret: qc.Secret, TokenURL: q.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}).Token(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	// Every part of the good token, with the signature of another.
	parts := strings.Split(tok.AccessToken, ".")
	forged := parts[0] + "." + parts[1] + "." + strings.Split(qtok.AccessToken, ".")[2]

	for name, auth := range map[string]string{
		"another provider's": "Bearer " + qtok.AccessToken,
		"forged signature":   "Bearer " + forged,
		"not a JWT":          "Bearer not-a-token",
	} {
		if status, challenge, _ := callAPI(t, p, auth); status != http.StatusUnauthorized || !strings.Contains(challenge, `error="invalid_token"`) {
			t.Errorf("%s token: %d %q, want 401 with invalid_token (RFC 6750 §3.1)", name, status, challenge)
		}
	}
	if status, challenge, _ := callAPI(t, p, ""); status != http.StatusUnauthorized || challenge == "" || strings.Contains(challenge, "error=") {
		t.Errorf("no token: %d %q, want 401 with a bare challenge (RFC 6750 §3.1)", status, challenge)
	}

	time.Sleep(2 * time.Second) // the 1 s lifetime, and a second of exp's rounding
	if status, _, _ := callAPI(t, p, "Bearer "+tok.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", status)
	}

	// Revoked by an administrator, before it expires.
	p.SetAccessTokenLifetime(time.Minute)
	tok, err = conf.Token(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	apiAccepts(t, p, tok)
	p.RevokeAccessTokens()
	if status, _, _ := callAPI(t, p, "Bearer "+tok.AccessToken); status != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", status)
	}
	if n := len(p.APIRequests()); n < 8 {
		t.Errorf("API logged %d requests, want every one", n)
	}
}

func TestAPIScope(t *testing.T) {
	p := New(t, WithAPIScope("things:write"))
	c := p.AddClient(Client{Scopes: []string{"things:read", "things:write"}})
	token := func(scope string) string {
		tok, err := (&clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: p.TokenURL,
			Scopes: []string{scope}, AuthStyle: oauth2.AuthStyleInHeader}).Token(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok.AccessToken
	}
	if status, challenge, _ := callAPI(t, p, token("things:read")); status != http.StatusForbidden || !strings.Contains(challenge, `error="insufficient_scope"`) {
		t.Errorf("without the scope: %d %q, want 403 with insufficient_scope (RFC 6750 §3.1)", status, challenge)
	}
	if status, _, _ := callAPI(t, p, token("things:write")); status != http.StatusOK {
		t.Errorf("with the scope: %d, want 200", status)
	}
}
