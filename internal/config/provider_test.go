package config

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/provider"
)

func TestProviderResourceAndTokenParamsAreCheckedWhileParsing(t *testing.T) {
	for _, tt := range []struct{ env, value, want string }{
		{"PROVIDER", "okta", `COOP_PROXY_PROVIDER (--provider): "okta" is not a known provider (bitbucket, discord, dropbox, fitbit, github, gitlab, google, slack, spotify, twitch); for a provider that publishes metadata, set COOP_PROXY_ISSUER instead`},
		{"RESOURCE", "api.example.com", `COOP_PROXY_RESOURCE (--resource): "api.example.com" is not an absolute URI without a fragment (RFC 8707 §2)`},
		{"RESOURCE", "https://api.example.com/ https://api.example.com/#x", `"https://api.example.com/#x" is not an absolute URI without a fragment`},
		{"TOKEN_PARAMS", "a=1&b=%zz", `COOP_PROXY_TOKEN_PARAMS (--token-params): "a=1&b=%zz" is not k=v&k2=v2`},
		{"ISSUER", "http://idp.example", `COOP_PROXY_ISSUER (--issuer): "http://idp.example": not https (plain http only on a loopback host)`},
		{"ISSUER", "https://idp.example?tenant=a", `an issuer has no query (RFC 8414 §2)`},
		{"ISSUER", "https://me:pw@idp.example", `"https://me:xxxxx@idp.example": must not carry credentials`},
	} {
		_, err := load(t, nil, map[string]string{tt.env: tt.value}, Needs{})
		var p Problems
		if !errors.As(err, &p) || len(p) != 1 || !strings.Contains(p[0].Error(), tt.want) {
			t.Errorf("%s=%s: %v; want %q", tt.env, tt.value, err, tt.want)
		}
	}
	for _, name := range []string{"grant_type", "client_id", "client_secret", "code", "refresh_token", "scope", "redirect_uri",
		"code_verifier", "client_assertion", "client_assertion_type", "resource", "audience"} {
		_, err := load(t, nil, map[string]string{"TOKEN_PARAMS": "organization=acme&" + name + "=x"}, Needs{})
		if err == nil || !strings.Contains(err.Error(), `"`+name+`" is a parameter coop-proxy sets itself`) {
			t.Errorf("TOKEN_PARAMS with %s: %v", name, err)
		}
	}
}

func TestIssuerAndProviderTogetherIsAProblem(t *testing.T) {
	_, err := load(t, nil, map[string]string{"ISSUER": "https://idp.example", "PROVIDER": "github"}, Needs{})
	if err == nil || !strings.Contains(err.Error(), "COOP_PROXY_PROVIDER (--provider): set either COOP_PROXY_ISSUER or COOP_PROXY_PROVIDER, not both") {
		t.Fatal(err)
	}
}

func TestAPresetGivesEndpointsAndAuthStyleExplicitSettingsWin(t *testing.T) {
	s, err := load(t, []string{"--provider", "github"}, nil, Needs{})
	if err != nil {
		t.Fatal(err)
	}
	r := s.Route
	if r.TokenEndpoint() != "https://github.com/login/oauth/access_token" || r.AuthorizeEndpoint() != "https://github.com/login/oauth/authorize" ||
		r.AuthStyle != AuthBody || r.KeyURL() != r.TokenEndpoint() {
		t.Errorf("github: %s %s %s", r.TokenEndpoint(), r.AuthorizeEndpoint(), r.AuthStyle)
	}
	s, _ = load(t, nil, map[string]string{"PROVIDER": "spotify"}, Needs{})
	if s.Route.AuthStyle != AuthBasic {
		t.Errorf("spotify takes Basic; got %s", s.Route.AuthStyle)
	}
	s, _ = load(t, []string{"--auth-style", "body"}, map[string]string{"PROVIDER": "spotify", "TOKEN_URL": "https://proxy.example/token"}, Needs{})
	if s.Route.AuthStyle != AuthBody || s.Route.TokenEndpoint() != "https://proxy.example/token" ||
		s.Route.AuthorizeEndpoint() != "https://accounts.spotify.com/authorize" {
		t.Errorf("explicit settings: %s %s %s", s.Route.AuthStyle, s.Route.TokenEndpoint(), s.Route.AuthorizeEndpoint())
	}
}

// What every token request carries; what login's authorization request
// carries; and nothing at all without the settings.
func TestTokenRequestParams(t *testing.T) {
	s, err := load(t, nil, map[string]string{"RESOURCE": "https://a.example/, https://b.example/x?y=1", "AUDIENCE": "https://api.example",
		"TOKEN_PARAMS": "organization=acme&x=1&x=2"}, Needs{})
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"resource": {"https://a.example/", "https://b.example/x?y=1"}, "audience": {"https://api.example"},
		"organization": {"acme"}, "x": {"1", "2"}}
	if got := s.Route.TokenRequestParams(); got.Encode() != want.Encode() {
		t.Errorf("token request: %s, want %s", got.Encode(), want.Encode())
	}
	want.Del("organization")
	want.Del("x")
	if got := s.Route.AuthorizationParams(); got.Encode() != want.Encode() {
		t.Errorf("authorization request: %s, want %s", got.Encode(), want.Encode())
	}
	s, _ = load(t, nil, nil, Needs{})
	if s.Route.TokenRequestParams() != nil || s.Route.AuthorizationParams() != nil {
		t.Error("parameters without settings")
	}
}

func TestEndpointsFromMetadataExplicitSettingsWinAndWhatIsMissingIsAProblem(t *testing.T) {
	doc := func(edit func(*provider.Metadata)) *provider.Metadata {
		md := &provider.Metadata{Issuer: "https://idp.example", TokenEndpoint: "https://idp.example/token",
			AuthorizationEndpoint: "https://idp.example/authorize", TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post"}}
		if edit != nil {
			edit(md)
		}
		return md
	}
	for _, tt := range []struct {
		name        string
		env         map[string]string
		md          *provider.Metadata
		token, auth string
		problem     string
	}{
		{name: "from the document", md: doc(nil), token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "explicit settings win", env: map[string]string{"TOKEN_URL": "https://gw.example/t", "AUTHORIZE_URL": "https://gw.example/a"},
			md: doc(nil), token: "https://gw.example/t", auth: "https://gw.example/a"},
		{name: "no token endpoint", md: doc(func(m *provider.Metadata) { m.TokenEndpoint = "" }),
			problem: "COOP_PROXY_ISSUER (--issuer): the metadata of https://idp.example names no token endpoint: set COOP_PROXY_TOKEN_URL"},
		{name: "no token endpoint, but TOKEN_URL", env: map[string]string{"TOKEN_URL": "https://gw.example/t"},
			md: doc(func(m *provider.Metadata) { m.TokenEndpoint = "" }), token: "https://gw.example/t", auth: "https://idp.example/authorize"},
		{name: "client credentials need no authorization endpoint", md: doc(func(m *provider.Metadata) { m.AuthorizationEndpoint = "" }),
			token: "https://idp.example/token"},
		{name: "authorization code needs one", env: map[string]string{"GRANT": "authorization_code"},
			md:      doc(func(m *provider.Metadata) { m.AuthorizationEndpoint = "" }),
			problem: "COOP_PROXY_GRANT (--grant): authorization_code needs an authorization endpoint, and the metadata of https://idp.example names none"},
		{name: "an auth style the provider does not list", md: doc(func(m *provider.Metadata) {
			m.TokenEndpointAuthMethodsSupported = []string{"client_secret_basic", "private_key_jwt"}
		}),
			problem: "COOP_PROXY_AUTH_STYLE (--auth-style): https://idp.example's token endpoint takes client credentials as client_secret_basic, private_key_jwt, not as body: set COOP_PROXY_AUTH_STYLE to basic"},
		{name: "a provider taking a key alone is told so", md: doc(func(m *provider.Metadata) {
			m.TokenEndpointAuthMethodsSupported = []string{"private_key_jwt"}
		}),
			problem: "COOP_PROXY_AUTH_STYLE (--auth-style): https://idp.example's token endpoint takes client credentials as private_key_jwt, not as body: set COOP_PROXY_AUTH_STYLE to private_key_jwt, with COOP_PROXY_CLIENT_KEY_FILE"},
		{name: "a provider taking a certificate alone is told so", md: doc(func(m *provider.Metadata) {
			m.TokenEndpointAuthMethodsSupported = []string{"self_signed_tls_client_auth"}
		}),
			problem: "COOP_PROXY_AUTH_STYLE (--auth-style): https://idp.example's token endpoint takes client credentials as self_signed_tls_client_auth, not as body: set COOP_PROXY_AUTH_STYLE to self_signed_tls_client_auth, with COOP_PROXY_CLIENT_CERT_FILE and COOP_PROXY_CLIENT_KEY_FILE"},
		{name: "auto needs one of the two", env: map[string]string{"AUTH_STYLE": "auto"},
			md: doc(func(m *provider.Metadata) { m.TokenEndpointAuthMethodsSupported = []string{"client_secret_post"} }), token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "no list: not checked", md: doc(func(m *provider.Metadata) { m.TokenEndpointAuthMethodsSupported = nil }),
			token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "mutual TLS uses the provider's mTLS alias (RFC 8705 §5)", env: map[string]string{"AUTH_STYLE": "tls_client_auth"}, md: doc(withMTLS),
			token: "https://mtls.idp.example/token", auth: "https://idp.example/authorize"},
		{name: "mutual TLS without an alias", env: map[string]string{"AUTH_STYLE": "self_signed_tls_client_auth"},
			md: doc(func(m *provider.Metadata) {
				m.TokenEndpointAuthMethodsSupported = []string{"self_signed_tls_client_auth"}
			}),
			token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "a secret does not go to the mTLS alias", env: map[string]string{"AUTH_STYLE": "basic"}, md: doc(withMTLS),
			token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "TOKEN_URL wins over the mTLS alias", env: map[string]string{"AUTH_STYLE": "tls_client_auth", "TOKEN_URL": "https://gw.example/t"}, md: doc(withMTLS),
			token: "https://gw.example/t", auth: "https://idp.example/authorize"},
		{name: "DPoP in an algorithm the provider lists", env: map[string]string{"DPOP": "true"},
			md: doc(func(m *provider.Metadata) { m.DPoPSigningAlgValuesSupported = []string{"RS256", "ES256"} }), token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "DPoP, no list: not checked", env: map[string]string{"DPOP": "true"}, md: doc(nil), token: "https://idp.example/token", auth: "https://idp.example/authorize"},
		{name: "DPoP in an algorithm the provider does not list", env: map[string]string{"DPOP": "true"},
			md:      doc(func(m *provider.Metadata) { m.DPoPSigningAlgValuesSupported = []string{"PS256", "EdDSA"} }),
			problem: "COOP_PROXY_DPOP (--dpop): https://idp.example takes DPoP proofs signed with PS256, EdDSA, not ES256: set COOP_PROXY_DPOP_KEY_FILE to a key of one of those"},
		{name: "a grant the provider does not list", md: doc(func(m *provider.Metadata) { m.GrantTypesSupported = []string{"authorization_code", "refresh_token"} }),
			problem: "COOP_PROXY_GRANT (--grant): https://idp.example supports the grants authorization_code, refresh_token, not client_credentials"},
	} {
		env := map[string]string{"ISSUER": "https://idp.example"}
		for k, v := range tt.env {
			env[k] = v
		}
		s, err := load(t, nil, env, Needs{})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		ep, err := s.Route.Endpoints(tt.md)
		if tt.problem != "" {
			if _, ok := errors.AsType[*Problem](err); !ok || !strings.HasPrefix(err.Error(), tt.problem) {
				t.Errorf("%s: %v; want %q", tt.name, err, tt.problem)
			}
			continue
		}
		if err != nil || ep.TokenURL != tt.token || ep.AuthorizeURL != tt.auth {
			t.Errorf("%s: %+v, %v; want %s, %s", tt.name, ep, err, tt.token, tt.auth)
		}
	}
}

// withMTLS gives a document mutual-TLS client authentication and an alias
// of the token endpoint for it.
func withMTLS(m *provider.Metadata) {
	m.TokenEndpointAuthMethodsSupported = append(m.TokenEndpointAuthMethodsSupported, "tls_client_auth")
	m.MTLSEndpointAliases = map[string]string{"token_endpoint": "https://mtls.idp.example/token"}
}

// Without an issuer the endpoints and the store's URL are exactly what they
// were; with one, the store's URL is the issuer (found without the network).
func TestKeyURLIsTheTokenEndpointElseTheIssuer(t *testing.T) {
	s, _ := load(t, nil, map[string]string{"UPSTREAM": "https://coop.example/"}, Needs{})
	if ep, err := s.Route.Endpoints(nil); err != nil || ep.TokenURL != "https://coop.example/token" || s.Route.KeyURL() != "https://coop.example/token" {
		t.Errorf("COOP: %+v %v %s", ep, err, s.Route.KeyURL())
	}
	s, _ = load(t, nil, map[string]string{"ISSUER": "https://idp.example/t/"}, Needs{})
	if s.Route.TokenEndpoint() != "" || s.Route.KeyURL() != "https://idp.example/t/" {
		t.Errorf("issuer: %q %q", s.Route.TokenEndpoint(), s.Route.KeyURL())
	}
}

// RFC 8705 §5: a client doing mutual TLS uses the alias of every endpoint
// that has one, the device authorization endpoint among them (login
// --device authenticates there too, RFC 8628 §3.1): at the plain one no
// certificate is asked for, and the client is refused.
func TestMutualTLSUsesTheDeviceAuthorizationEndpointsAlias(t *testing.T) {
	md := &provider.Metadata{Issuer: "https://idp.example", TokenEndpoint: "https://idp.example/token",
		DeviceAuthorizationEndpoint: "https://idp.example/device",
		MTLSEndpointAliases:         map[string]string{"token_endpoint": "https://mtls.idp.example/token", "device_authorization_endpoint": "https://mtls.idp.example/device"}}
	for style, want := range map[string]string{"tls_client_auth": "https://mtls.idp.example/device", "basic": "https://idp.example/device"} {
		s, err := load(t, nil, map[string]string{"ISSUER": "https://idp.example", "AUTH_STYLE": style}, Needs{})
		if err != nil {
			t.Fatal(err)
		}
		if ep, err := s.Route.Endpoints(md); err != nil || ep.DeviceAuthorizationURL != want {
			t.Errorf("%s: %q, %v; want %s", style, ep.DeviceAuthorizationURL, err, want)
		}
	}
}
