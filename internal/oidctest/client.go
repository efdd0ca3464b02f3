package oidctest

import (
	"crypto/rand"
	"encoding/base64"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Client authentication methods (RFC 7591 §2 token_endpoint_auth_method).
const (
	ClientSecretBasic = "client_secret_basic" // RFC 6749 §2.3.1, the Authorization header
	ClientSecretPost  = "client_secret_post"  // RFC 6749 §2.3.1, the form body
	PrivateKeyJWT     = "private_key_jwt"     // RFC 7523 §2.2, OpenID Connect Core §9
	None              = "none"                // a public client (RFC 6749 §2.1), PKCE only
)

// Grant types a client may be registered for.
const (
	GrantClientCredentials = string(oidc.GrantTypeClientCredentials)
	GrantAuthorizationCode = string(oidc.GrantTypeCode)
	GrantRefreshToken      = string(oidc.GrantTypeRefreshToken)
	GrantDeviceCode        = string(oidc.GrantTypeDeviceCode)
)

// Client is a client registration. Empty fields get defaults from
// AddClient: a random ID, a fresh random Secret (for the client_secret_*
// methods), client_secret_basic, and the client_credentials grant.
type Client struct {
	ID     string
	Secret string
	// AuthMethod is the one method this client may authenticate with at
	// the token endpoint; a request using another one is refused.
	AuthMethod string
	// PublicKey verifies the client's private_key_jwt assertions; its
	// KeyID, when set, must match the assertion's kid.
	PublicKey    *jose.JSONWebKey
	GrantTypes   []string
	RedirectURIs []string
	// Scopes are the scopes beyond OpenID Connect's standard ones (openid,
	// profile, email, phone, address, offline_access) that the client may
	// be granted; any other requested scope is refused with invalid_scope.
	Scopes []string
}

// randomString is n random bytes, base64url: fresh secrets for every test.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// withDefaults fills the empty fields of c.
func (c Client) withDefaults() Client {
	if c.ID == "" {
		c.ID = "client-" + randomString(6)
	}
	if c.AuthMethod == "" {
		c.AuthMethod = ClientSecretBasic
	}
	if c.Secret == "" && (c.AuthMethod == ClientSecretBasic || c.AuthMethod == ClientSecretPost) {
		c.Secret = randomString(24)
	}
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{GrantClientCredentials}
	}
	c.GrantTypes = slices.Clone(c.GrantTypes)
	c.RedirectURIs = slices.Clone(c.RedirectURIs)
	c.Scopes = slices.Clone(c.Scopes)
	return c
}

// opClient is a registered Client as zitadel's op.Client.
type opClient struct {
	Client
	loginURL func(id string) string
}

var _ op.Client = (*opClient)(nil)

func (c *opClient) GetID() string                    { return c.ID }
func (c *opClient) RedirectURIs() []string           { return c.Client.RedirectURIs }
func (c *opClient) PostLogoutRedirectURIs() []string { return nil }
func (c *opClient) AuthMethod() oidc.AuthMethod      { return oidc.AuthMethod(c.Client.AuthMethod) }
func (c *opClient) LoginURL(id string) string        { return c.loginURL(id) }
func (c *opClient) IDTokenLifetime() time.Duration   { return time.Hour }
func (c *opClient) ClockSkew() time.Duration         { return 0 }

// AccessTokenType is JWT for every client, so that the API can verify
// tokens itself against the provider's keys (RFC 9068 style).
func (c *opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

// ApplicationType: a public client is a native app (RFC 8252, loopback
// redirects on any port); a confidential one a web app.
func (c *opClient) ApplicationType() op.ApplicationType {
	if c.Client.AuthMethod == None {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

// DevMode lets a web client use http://127.0.0.1 redirect URIs, which is
// all a test has.
func (c *opClient) DevMode() bool { return true }

func (c *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *opClient) GrantTypes() []oidc.GrantType {
	g := make([]oidc.GrantType, len(c.Client.GrantTypes))
	for i, t := range c.Client.GrantTypes {
		g[i] = oidc.GrantType(t)
	}
	return g
}

func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed is asked by zitadel for non-standard scopes in an
// authorization request.
func (c *opClient) IsScopeAllowed(scope string) bool { return slices.Contains(c.Scopes, scope) }

func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return false }

// standardScopes are OpenID Connect Core §5.4 and §11 scopes: any client
// may ask for them.
var standardScopes = []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopePhone, oidc.ScopeAddress, oidc.ScopeOfflineAccess}

// scopesAllowed reports whether the client may be granted every scope.
func (c *opClient) scopesAllowed(scopes []string) bool {
	for _, s := range scopes {
		if !slices.Contains(standardScopes, s) && !c.IsScopeAllowed(s) {
			return false
		}
	}
	return true
}
