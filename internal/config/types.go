package config

import (
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap/zapcore"
)

// valueError is a value a setting's type refused; its text is the reason.
type valueError struct{ msg string }

func (e *valueError) Error() string { return e.msg }

// Grant is the OAuth 2.0 grant that gets the route's tokens.
type Grant string

const (
	// ClientCredentials is the application's own token (RFC 6749 §4.4).
	ClientCredentials Grant = "client_credentials"
	// AuthorizationCode is a farmer's grant from `coop-proxy login`
	// (RFC 6749 §4.1), renewed with its refresh token (§6).
	AuthorizationCode Grant = "authorization_code"
)

// UnmarshalText accepts only the known grants.
func (g *Grant) UnmarshalText(b []byte) error {
	switch v := Grant(b); v {
	case ClientCredentials, AuthorizationCode:
		*g = v
		return nil
	}
	return &valueError{fmt.Sprintf("%q is not client_credentials or authorization_code", b)}
}

// AuthStyle is how the client authenticates to the token endpoint
// (RFC 6749 §2.3): the names of OpenID Connect Core §9 and of RFC 8414's
// token_endpoint_auth_methods_supported, and coop-proxy's first three.
type AuthStyle string

const (
	// AuthBody sends client_id and client_secret in the form: COOP does not
	// URL-decode Basic credentials, so this works for every COOP client id.
	AuthBody AuthStyle = "body"
	// AuthBasic sends them with HTTP Basic, form-encoded first (§2.3.1).
	AuthBasic AuthStyle = "basic"
	// AuthAuto tries Basic, then the body.
	AuthAuto AuthStyle = "auto"
	// AuthClientSecretBasic is AuthBasic by its standard name.
	AuthClientSecretBasic AuthStyle = "client_secret_basic"
	// AuthClientSecretPost is AuthBody by its standard name.
	AuthClientSecretPost AuthStyle = "client_secret_post"
	// AuthPrivateKeyJWT sends no secret: a JWT signed with the client's
	// private key instead (RFC 7523 §2.2, OpenID Connect Core §9).
	AuthPrivateKeyJWT AuthStyle = "private_key_jwt"
	// AuthTLSClientAuth sends no secret: the TLS connection to the token
	// endpoint presents the client's certificate, issued by a CA the
	// provider trusts (RFC 8705 §2.1).
	AuthTLSClientAuth AuthStyle = "tls_client_auth"
	// AuthSelfSignedTLSClientAuth is AuthTLSClientAuth with a self-signed
	// certificate registered with the provider (RFC 8705 §2.2); the
	// client does the same, the provider checks differently.
	AuthSelfSignedTLSClientAuth AuthStyle = "self_signed_tls_client_auth"
)

// authStyles are the values AUTH_STYLE takes, in the order its refusal lists them.
var authStyles = []AuthStyle{AuthBody, AuthBasic, AuthAuto, AuthClientSecretBasic, AuthClientSecretPost, AuthPrivateKeyJWT,
	AuthTLSClientAuth, AuthSelfSignedTLSClientAuth}

// UnmarshalText accepts only the known styles.
func (a *AuthStyle) UnmarshalText(b []byte) error {
	if v := AuthStyle(b); slices.Contains(authStyles, v) {
		*a = v
		return nil
	}
	return &valueError{fmt.Sprintf("%q is not %s", b, orList(authStyles))}
}

// UsesSecret reports whether the style sends a client secret; the others
// authenticate with the client's key.
func (a AuthStyle) UsesSecret() bool { return a != AuthPrivateKeyJWT && !a.UsesCertificate() }

// UsesCertificate reports whether the style is mutual TLS (RFC 8705 §2).
func (a AuthStyle) UsesCertificate() bool {
	return a == AuthTLSClientAuth || a == AuthSelfSignedTLSClientAuth
}

// LogFormat is how log lines are written.
type LogFormat string

// UnmarshalText accepts json and console.
func (f *LogFormat) UnmarshalText(b []byte) error {
	switch v := LogFormat(b); v {
	case "json", "console":
		*f = v
		return nil
	}
	return &valueError{fmt.Sprintf("%q is not json or console", b)}
}

// LogLevel is the least severe level logged.
type LogLevel struct{ zapcore.Level }

// UnmarshalText accepts debug, info, warn and error.
func (l *LogLevel) UnmarshalText(b []byte) error {
	switch string(b) {
	case "debug", "info", "warn", "error":
		return l.Level.UnmarshalText(b)
	}
	return &valueError{fmt.Sprintf("%q is not debug, info, warn or error", b)}
}

// Scopes are OAuth scopes, given space or comma separated.
type Scopes []string

// UnmarshalText splits on spaces and commas.
func (s *Scopes) UnmarshalText(b []byte) error {
	*s = strings.FieldsFunc(string(b), func(r rune) bool { return r == ' ' || r == ',' })
	return nil
}

// String joins the scopes with spaces, as an OAuth scope parameter.
func (s Scopes) String() string { return strings.Join(s, " ") }
