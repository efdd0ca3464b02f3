package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// assertion is a private_key_jwt client assertion (RFC 7523 §3), made
// with go-jose as a client would.
func assertion(t *testing.T, key crypto.Signer, alg jose.SignatureAlgorithm, kid, clientID, aud, jti string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{aud}, ID: jti,
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withAssertion is a client credentials request authenticated by the
// assertion alone (RFC 7523 §2.2); x/oauth2 adds client_id, as RFC 6749
// §4.4.2 clients do.
func withAssertion(p *Provider, clientID, a string) *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: clientID, TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInParams,
		EndpointParams: url.Values{
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
			"client_assertion":      {a},
		}}
}

func TestPrivateKeyJWT(t *testing.T) {
	p := New(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaClient := p.AddClient(Client{AuthMethod: PrivateKeyJWT,
		PublicKey: &jose.JSONWebKey{Key: rsaKey.Public(), KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig"}})
	ecClient := p.AddClient(Client{AuthMethod: PrivateKeyJWT,
		PublicKey: &jose.JSONWebKey{Key: ecKey.Public(), KeyID: "k2", Algorithm: string(jose.ES256), Use: "sig"}})

	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  jose.SignatureAlgorithm
		kid  string
		c    Client
		aud  string
	}{
		// OpenID Connect Core §9: aud SHOULD be the token endpoint.
		{"RS256, aud token endpoint", rsaKey, jose.RS256, "k1", rsaClient, p.TokenURL},
		// RFC 7523 §3: the issuer identifies the server too.
		{"RS256, aud issuer", rsaKey, jose.RS256, "k1", rsaClient, p.Issuer},
		{"ES256", ecKey, jose.ES256, "k2", ecClient, p.TokenURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := withAssertion(p, tc.c.ID, assertion(t, tc.key, tc.alg, tc.kid, tc.c.ID, tc.aud, randomString(9))).Token(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			if got := apiAccepts(t, p, tok); got.ClientID != tc.c.ID {
				t.Errorf("API saw client %q, want %q", got.ClientID, tc.c.ID)
			}
		})
	}

	refused := map[string]string{
		"another client's key": assertion(t, ecKey, jose.ES256, "k2", rsaClient.ID, p.TokenURL, randomString(9)),
		"another audience":     assertion(t, rsaKey, jose.RS256, "k1", rsaClient.ID, p.APIURL, randomString(9)),
		"no jti":               assertion(t, rsaKey, jose.RS256, "k1", rsaClient.ID, p.TokenURL, ""),
	}
	replayed := assertion(t, rsaKey, jose.RS256, "k1", rsaClient.ID, p.TokenURL, randomString(9))
	if _, err := withAssertion(p, rsaClient.ID, replayed).Token(ctx(t)); err != nil {
		t.Fatal(err)
	}
	refused["replayed jti"] = replayed
	for name, a := range refused {
		if _, err := withAssertion(p, rsaClient.ID, a).Token(ctx(t)); oauthError(err) != "invalid_client" {
			t.Errorf("%s: %v, want invalid_client", name, err)
		}
	}

	// A secret client may not use an assertion, nor an assertion client a
	// secret.
	secretClient := p.AddClient(Client{})
	if _, err := withAssertion(p, secretClient.ID, assertion(t, rsaKey, jose.RS256, "k1", secretClient.ID, p.TokenURL, randomString(9))).Token(ctx(t)); oauthError(err) != "invalid_client" {
		t.Errorf("assertion from a client_secret_basic client: %v, want invalid_client", err)
	}
	if _, err := (&clientcredentials.Config{ClientID: rsaClient.ID, ClientSecret: "guess", TokenURL: p.TokenURL, AuthStyle: oauth2.AuthStyleInHeader}).Token(ctx(t)); oauthError(err) != "invalid_client" {
		t.Errorf("secret from a private_key_jwt client: %v, want invalid_client", err)
	}
}

// loginClient is a confidential client for the user's grants.
func loginClient(p *Provider) (Client, *oauth2.Config) {
	c := p.AddClient(Client{GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken},
		RedirectURIs: []string{"http://127.0.0.1:8085/callback"}})
	return c, &oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret, RedirectURL: c.RedirectURIs[0],
		Scopes: []string{"openid", "offline_access"}, Endpoint: withStyle(p.Endpoint(), oauth2.AuthStyleInHeader)}
}

func withStyle(e oauth2.Endpoint, s oauth2.AuthStyle) oauth2.Endpoint {
	e.AuthStyle = s
	return e
}

func TestAuthorizationCodeWithPKCEAndRefresh(t *testing.T) {
	p := New(t)
	p.SetUser("brent")
	_, conf := loginClient(p)
	verifier := oauth2.GenerateVerifier()
	state := randomString(8)
	back, err := p.Authorize(ctx(t), conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(back.String(), conf.RedirectURL+"?") || back.Query().Get("state") != state || back.Query().Get("code") == "" {
		t.Fatalf("redirected to %s, want the redirect URI with a code and the state (RFC 6749 §4.1.2)", back.Host+back.Path) // not the query: it may hold a code
	}
	code := back.Query().Get("code")

	// RFC 7636 §4.6: a wrong verifier is refused.
	if _, err := conf.Exchange(ctx(t), code, oauth2.VerifierOption(oauth2.GenerateVerifier())); oauthError(err) != "invalid_grant" {
		t.Errorf("wrong code_verifier: %v, want invalid_grant", err)
	}
	tok, err := conf.Exchange(ctx(t), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.Extra("id_token") == nil {
		t.Errorf("no refresh token or id_token for openid offline_access")
	}
	if got := apiAccepts(t, p, tok); got.Subject != "brent" {
		t.Errorf("API saw subject %q, want brent", got.Subject)
	}
	// RFC 6749 §4.1.2: a code is used once.
	if _, err := conf.Exchange(ctx(t), code, oauth2.VerifierOption(verifier)); oauthError(err) != "invalid_grant" {
		t.Errorf("code used twice: %v, want invalid_grant", err)
	}

	// RFC 6749 §6: refresh, with the refresh token rotated.
	fresh, err := conf.TokenSource(ctx(t), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == tok.AccessToken || fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken {
		t.Errorf("refresh gave no new access token or no new refresh token")
	}
	if got := apiAccepts(t, p, fresh); got.Subject != "brent" {
		t.Errorf("API saw subject %q after refresh", got.Subject)
	}
	if _, err := conf.TokenSource(ctx(t), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); oauthError(err) != "invalid_grant" {
		t.Errorf("rotated-away refresh token: %v, want invalid_grant", err)
	}

	// RFC 7009: the client revokes its refresh token.
	form := url.Values{"token": {fresh.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, p.RevocationURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(conf.ClientID), url.QueryEscape(conf.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation answered %s", resp.Status)
	}
	if _, err := conf.TokenSource(ctx(t), &oauth2.Token{RefreshToken: fresh.RefreshToken}).Token(); oauthError(err) != "invalid_grant" {
		t.Errorf("revoked refresh token: %v, want invalid_grant", err)
	}
}

func TestAuthorizationRefusals(t *testing.T) {
	p := New(t)
	_, conf := loginClient(p)
	// RFC 9700 §2.1.1: no PKCE, no code.
	back, err := p.Authorize(ctx(t), conf.AuthCodeURL("s1"))
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("error") != "invalid_request" || back.Query().Get("code") != "" {
		t.Errorf("without PKCE: error=%q, code given %v; want error=invalid_request and no code", back.Query().Get("error"), back.Query().Get("code") != "")
	}
	// The user says no: RFC 6749 §4.1.2.1.
	p.DenyConsent(true)
	back, err = p.Authorize(ctx(t), conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	if back.Query().Get("error") != "access_denied" || back.Query().Get("state") != "s2" {
		t.Errorf("denied: error=%q state=%q, want error=access_denied and the state", back.Query().Get("error"), back.Query().Get("state"))
	}
	// A redirect URI not registered is never redirected to (RFC 6749 §3.1.2.4).
	other := *conf
	other.RedirectURL = "http://127.0.0.1:9/elsewhere"
	if back, err := p.Authorize(ctx(t), other.AuthCodeURL("s3", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))); err == nil {
		t.Errorf("unregistered redirect_uri: redirected to %s", back.Host+back.Path) // not the query: it may hold a code
	}
}

// devicePoll is one device access token request (RFC 8628 §3.4) by a
// public client, and the error code it got.
func devicePoll(t *testing.T, p *Provider, clientID, deviceCode string) string {
	t.Helper()
	form := url.Values{"grant_type": {GrantDeviceCode}, "device_code": {deviceCode}, "client_id": {clientID}}
	resp, err := http.PostForm(p.TokenURL, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct{ Error string }
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return e.Error
}

func TestDeviceCodeExpires(t *testing.T) {
	p := New(t, WithDeviceCodeLifetime(time.Second))
	c := p.AddClient(Client{AuthMethod: None, GrantTypes: []string{GrantDeviceCode}})
	conf := &oauth2.Config{ClientID: c.ID, Endpoint: withStyle(p.Endpoint(), oauth2.AuthStyleInParams)}
	da, err := conf.DeviceAuth(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if got := devicePoll(t, p, c.ID, da.DeviceCode); got != "expired_token" {
		t.Errorf("after expires_in: %q, want expired_token (RFC 8628 §3.5)", got)
	}
}

func TestDeviceGrant(t *testing.T) {
	p := New(t)
	c := p.AddClient(Client{AuthMethod: None, GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}})
	conf := &oauth2.Config{ClientID: c.ID, Scopes: []string{"openid", "offline_access"}, Endpoint: withStyle(p.Endpoint(), oauth2.AuthStyleInParams)}

	t.Run("approved", func(t *testing.T) {
		da, err := conf.DeviceAuth(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if da.UserCode == "" || da.VerificationURI == "" || !strings.Contains(da.VerificationURIComplete, da.UserCode) || da.Interval != 1 {
			t.Fatalf("device authorization response %+v lacks RFC 8628 §3.2 fields", da)
		}
		// The user opens verification_uri_complete after the first polls.
		go func() {
			time.Sleep(1500 * time.Millisecond)
			if resp, err := http.Get(da.VerificationURIComplete); err == nil {
				resp.Body.Close()
			}
		}()
		tok, err := conf.DeviceAccessToken(ctx(t), da)
		if err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken == "" {
			t.Error("no refresh token for offline_access")
		}
		if got := apiAccepts(t, p, tok); got.Subject != "alice" || got.ClientID != c.ID {
			t.Errorf("API saw %+v", got)
		}
	})
	t.Run("polled too fast", func(t *testing.T) {
		da, err := conf.DeviceAuth(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		poll := func() string { return devicePoll(t, p, c.ID, da.DeviceCode) }
		// RFC 8628 §3.5: pending, then slow_down for polling at once.
		if first, second := poll(), poll(); first != "authorization_pending" || second != "slow_down" {
			t.Errorf("two polls at once: %q then %q, want authorization_pending then slow_down", first, second)
		}
	})
	t.Run("denied", func(t *testing.T) {
		da, err := conf.DeviceAuth(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.DenyDevice(da.UserCode); err != nil {
			t.Fatal(err)
		}
		if _, err := conf.DeviceAccessToken(ctx(t), da); oauthError(err) != "access_denied" {
			t.Errorf("denied: %v, want access_denied", err)
		}
	})
}

// loginToken logs the current user in with conf and returns the tokens.
func loginToken(t *testing.T, p *Provider, conf *oauth2.Config) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	back, err := p.Authorize(ctx(t), conf.AuthCodeURL("s", oauth2.S256ChallengeOption(verifier)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := conf.Exchange(ctx(t), back.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRefreshTokenControls(t *testing.T) {
	p := New(t, WithRefreshTokenLifetime(time.Second))
	_, conf := loginClient(p)
	refresh := func(tok *oauth2.Token) error {
		_, err := conf.TokenSource(ctx(t), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		return err
	}
	expiring := loginToken(t, p, conf)
	time.Sleep(1100 * time.Millisecond)
	if err := refresh(expiring); oauthError(err) != "invalid_grant" {
		t.Errorf("expired refresh token: %v, want invalid_grant", err)
	}
	revoked := loginToken(t, p, conf)
	p.RevokeRefreshTokens()
	if err := refresh(revoked); oauthError(err) != "invalid_grant" {
		t.Errorf("revoked refresh token: %v, want invalid_grant", err)
	}
	if err := refresh(loginToken(t, p, conf)); err != nil {
		t.Errorf("a refresh token issued after the revocation: %v", err)
	}
}
