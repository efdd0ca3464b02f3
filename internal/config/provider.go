package config

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/provider"
)

// Provider names a preset of internal/provider: a provider that publishes
// no metadata.
type Provider string

// UnmarshalText accepts only the presets' names.
func (p *Provider) UnmarshalText(b []byte) error {
	if _, ok := provider.Lookup(string(b)); !ok && len(b) > 0 {
		return &valueError{fmt.Sprintf("%q is not a known provider (%s); for a provider that publishes metadata, set %sISSUER instead", b, provider.Names(), EnvPrefix)}
	}
	*p = Provider(b)
	return nil
}

// Preset returns the named preset; ok is false when none is named.
func (p Provider) Preset() (provider.Preset, bool) { return provider.Lookup(string(p)) }

// Resources are RFC 8707 resource indicators, given space or comma
// separated.
type Resources []string

// UnmarshalText accepts absolute URIs without a fragment (RFC 8707 §2).
func (rs *Resources) UnmarshalText(b []byte) error {
	var out Resources
	for _, s := range strings.FieldsFunc(string(b), func(r rune) bool { return r == ' ' || r == ',' }) {
		u, err := url.Parse(s)
		if err != nil || !u.IsAbs() || strings.Contains(s, "#") {
			return &valueError{fmt.Sprintf("%q is not an absolute URI without a fragment (RFC 8707 §2)", s)}
		}
		out = append(out, s)
	}
	*rs = out
	return nil
}

// String joins the resources with spaces.
func (rs Resources) String() string { return strings.Join(rs, " ") }

// TokenParams are further token request parameters, given as a query
// string.
type TokenParams url.Values

// reservedParams are the token request parameters coop-proxy sets itself
// (RFC 6749 §4.1.3, §4.4.2, §6, §2.3.1; RFC 7636 §4.5; RFC 7521 §4.2),
// which TOKEN_PARAMS may not override; resource and audience have their
// own settings.
var reservedParams = []string{"grant_type", "client_id", "client_secret", "code", "refresh_token", "scope",
	"redirect_uri", "code_verifier", "resource", "audience"}

// UnmarshalText parses k=v&k2=v2, refusing what coop-proxy sets itself.
func (tp *TokenParams) UnmarshalText(b []byte) error {
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return &valueError{fmt.Sprintf("%q is not k=v&k2=v2 (percent-encoded)", b)}
	}
	for k := range v {
		if k == "" || slices.Contains(reservedParams, k) || strings.HasPrefix(k, "client_assertion") {
			return &valueError{fmt.Sprintf("%q is a parameter coop-proxy sets itself (or has its own setting for); it cannot be given here", k)}
		}
	}
	*tp = TokenParams(v)
	return nil
}

// String is the query string, as the setting is written.
func (tp TokenParams) String() string { return url.Values(tp).Encode() }

// TokenRequestParams are what every token request carries beside the
// grant's own parameters: resource (RFC 8707 §2.2, also on a refresh),
// audience and TOKEN_PARAMS; nil when there are none.
func (r *Route) TokenRequestParams() url.Values {
	v := r.AuthorizationParams()
	for k, vs := range r.TokenParams {
		if v == nil {
			v = url.Values{}
		}
		v[k] = append(v[k], vs...)
	}
	return v
}

// AuthorizationParams are what login's authorization request carries
// beside its own: resource (RFC 8707 §2.1: the grant is for it) and
// audience (Auth0 reads it there, not from the code exchange); nil when
// there are none.
func (r *Route) AuthorizationParams() url.Values {
	if len(r.Resource) == 0 && r.Audience == "" {
		return nil
	}
	v := url.Values{}
	if len(r.Resource) > 0 {
		v["resource"] = slices.Clone([]string(r.Resource))
	}
	if r.Audience != "" {
		v.Set("audience", r.Audience)
	}
	return v
}

// presetAuthStyle gives the preset's auth style when AUTH_STYLE is not set
// (merged holds the environment with the flags over it).
func (r *Route) presetAuthStyle(merged map[string]string) {
	p, ok := r.Provider.Preset()
	if _, set := merged[EnvPrefix+"AUTH_STYLE"]; set || !ok {
		return
	}
	if p.AuthMethod == "client_secret_basic" {
		r.AuthStyle = AuthBasic
	} else {
		r.AuthStyle = AuthBody
	}
}

// Endpoints are where the route's grant is sent, resolved from the
// settings, the preset and the issuer's metadata.
type Endpoints struct {
	TokenURL     string
	AuthorizeURL string
	// DeviceAuthorizationURL is for login --device (RFC 8628 §3.1); ""
	// when neither the settings, the preset nor the metadata name one.
	DeviceAuthorizationURL string
}

// KeyURL is what the store key records as the token endpoint: the one
// known without the network, else the issuer (which names one
// authorization server), so that a stored grant is found without fetching
// the issuer's metadata (`status`).
func (r *Route) KeyURL() string {
	if u := r.TokenEndpoint(); u != "" {
		return u
	}
	return r.Issuer
}

// Endpoints resolves the endpoints with the issuer's metadata md (nil
// without an issuer), an explicit setting winning over the document, and
// checks that the provider offers what the settings ask for. Each problem
// is a *Problem naming the setting.
func (r *Route) Endpoints(md *provider.Metadata) (Endpoints, error) {
	ep := Endpoints{TokenURL: r.TokenEndpoint(), AuthorizeURL: r.AuthorizeEndpoint(), DeviceAuthorizationURL: r.deviceEndpoint()}
	if md == nil {
		return ep, nil
	}
	if r.AuthStyle.UsesCertificate() {
		// RFC 8705 §5: a client authenticating with its certificate uses
		// the endpoints the provider names for mutual TLS, when it does:
		// the device authorization request authenticates the client too
		// (RFC 8628 §3.1).
		ep.TokenURL = cmp.Or(ep.TokenURL, md.MTLSEndpointAliases["token_endpoint"])
		ep.DeviceAuthorizationURL = cmp.Or(ep.DeviceAuthorizationURL, md.MTLSEndpointAliases["device_authorization_endpoint"])
	}
	if ep.DeviceAuthorizationURL == "" {
		ep.DeviceAuthorizationURL = md.DeviceAuthorizationEndpoint // RFC 8628 §4
	}
	if ep.TokenURL == "" {
		if ep.TokenURL = md.TokenEndpoint; ep.TokenURL == "" {
			return ep, problem("Issuer", "the metadata of %s names no token endpoint: set %sTOKEN_URL", md.Issuer, EnvPrefix)
		}
	}
	if ep.AuthorizeURL == "" {
		ep.AuthorizeURL = md.AuthorizationEndpoint
		if ep.AuthorizeURL == "" && r.Grant == AuthorizationCode {
			return ep, problem("Grant", "authorization_code needs an authorization endpoint, and the metadata of %s names none: set %sAUTHORIZE_URL, or use client_credentials", md.Issuer, EnvPrefix)
		}
	}
	if gs := md.GrantTypesSupported; len(gs) > 0 && !slices.Contains(gs, string(r.Grant)) {
		return ep, problem("Grant", "%s supports the grants %s, not %s", md.Issuer, strings.Join(gs, ", "), r.Grant)
	}
	if ms := md.TokenEndpointAuthMethodsSupported; len(ms) > 0 && !slices.ContainsFunc(authMethods(r.AuthStyle), func(m string) bool { return slices.Contains(ms, m) }) {
		return ep, problem("AuthStyle", "%s's token endpoint takes client credentials as %s, not as %s: %s",
			md.Issuer, strings.Join(ms, ", "), r.AuthStyle, styleFor(ms))
	}
	// RFC 9449 §5.1: a provider that lists DPoP algorithms refuses proofs
	// in others. One that lists none may still do DPoP: a Bearer answer to
	// a proof says it does not (tokensource's checkToken).
	if algs := md.DPoPSigningAlgValuesSupported; r.DPoP && len(algs) > 0 && !slices.Contains(algs, r.dpopAlg()) {
		return ep, problem("DPoP", "%s takes DPoP proofs signed with %s, not %s: set %sDPOP_KEY_FILE to a key of one of those",
			md.Issuer, strings.Join(algs, ", "), r.dpopAlg(), EnvPrefix)
	}
	return ep, nil
}

// deviceEndpoint is the device authorization endpoint known without the
// network: the setting, else the preset's (x/oauth2/endpoints knows
// GitHub's, GitLab's and Google's); COOP has none.
func (r *Route) deviceEndpoint() string {
	if p, ok := r.Provider.Preset(); ok && r.DeviceAuthorizationURL == "" {
		return p.Endpoint.DeviceAuthURL
	}
	return r.DeviceAuthorizationURL
}

// dpopAlg is the algorithm of the route's DPoP proofs: the key file's, or
// ES256 for the keys generated.
func (r *Route) dpopAlg() string {
	if r.DPoPKey != nil {
		return r.DPoPKey.Alg()
	}
	return clientauth.ES256
}

// authMethods are the token endpoint authentication methods (RFC 8414 §2
// names) an auth style uses. A style named after a method is that method.
func authMethods(s AuthStyle) []string {
	switch s {
	case AuthBody:
		return []string{"client_secret_post"}
	case AuthBasic:
		return []string{"client_secret_basic"}
	case AuthAuto:
		return []string{"client_secret_basic", "client_secret_post"}
	}
	return []string{string(s)}
}

// styleFor says which auth style to set for the methods a provider supports.
func styleFor(methods []string) string {
	switch {
	case slices.Contains(methods, "client_secret_basic"):
		return "set " + EnvPrefix + "AUTH_STYLE to basic"
	case slices.Contains(methods, "client_secret_post"):
		return "set " + EnvPrefix + "AUTH_STYLE to body"
	case slices.Contains(methods, string(AuthPrivateKeyJWT)):
		return "set " + EnvPrefix + "AUTH_STYLE to private_key_jwt, with " + EnvPrefix + "CLIENT_KEY_FILE"
	case slices.Contains(methods, string(AuthTLSClientAuth)), slices.Contains(methods, string(AuthSelfSignedTLSClientAuth)):
		tls := AuthTLSClientAuth
		if !slices.Contains(methods, string(tls)) {
			tls = AuthSelfSignedTLSClientAuth
		}
		return "set " + EnvPrefix + "AUTH_STYLE to " + string(tls) + ", with " + EnvPrefix + "CLIENT_CERT_FILE and " + EnvPrefix + "CLIENT_KEY_FILE"
	}
	return "it takes none of the client credentials coop-proxy can send"
}

// checkProvider checks the issuer (RFC 8414 §2: https, no query or
// fragment) and that one way to find the endpoints is chosen.
func (r *Route) checkProvider(p *Problems) {
	if r.Issuer != "" {
		if err := provider.CheckURL(r.Issuer); err != nil {
			shown := r.Issuer
			if u, perr := url.Parse(r.Issuer); perr == nil {
				shown = u.Redacted() // never a password in a message
			}
			p.Add(problem("Issuer", "%q: %v", shown, err))
		} else if strings.Contains(r.Issuer, "?") {
			p.Add(problem("Issuer", "%q: an issuer has no query (RFC 8414 §2)", r.Issuer))
		}
	}
	if r.Issuer != "" && r.Provider != "" {
		p.Add(problem("Provider", "set either %sISSUER or %sPROVIDER, not both: a provider with metadata needs no preset", EnvPrefix, EnvPrefix))
	}
}
