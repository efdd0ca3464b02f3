package tokenstore

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// Key identifies one grant in the store.
type Key struct {
	TokenURL  string
	ClientID  string
	GrantType string   // "client_credentials" or "authorization_code"
	Scopes    []string // requested scopes; order-insensitive, duplicates ignored
	// Params are the further token request parameters that select the
	// token (RFC 8707 resource, audience, ...), in a canonical form
	// (tokensource.ParamsKey); "" for none. Tokens for another audience
	// are other tokens.
	Params string
}

// keyEscaper keeps '|' inside a field from reading as a separator, so two
// different keys never share a String.
var keyEscaper = strings.NewReplacer("%", "%25", "|", "%7C")

// String returns the canonical form of k used as the grant's name in the
// file: "<grant type>|<client id>|<token url>|<scopes>", where the scopes are
// sorted, de-duplicated and space-separated (an element holding several
// space-separated scopes counts as those scopes, as in an OAuth2 "scope"
// parameter). '%' and '|' in the first three fields are percent-encoded.
// Params, when there are any, follow the token URL after a "#" (a token
// endpoint has no fragment, RFC 6749 §3.2); a key without them reads as it
// always has.
func (k Key) String() string {
	var scopes []string
	for _, s := range k.Scopes {
		scopes = append(scopes, strings.Fields(s)...)
	}
	slices.Sort(scopes)
	scopes = slices.Compact(scopes)
	tokenURL := k.TokenURL
	if k.Params != "" {
		tokenURL += "#" + k.Params
	}
	return strings.Join([]string{
		keyEscaper.Replace(k.GrantType),
		keyEscaper.Replace(k.ClientID),
		keyEscaper.Replace(tokenURL),
		strings.Join(scopes, " "),
	}, "|")
}

// Record is one stored grant. Its String, GoString, Format and MarshalJSON
// show fingerprints (redact.Fingerprint) instead of the tokens, so printing
// or logging a Record never reveals them. (fmt cannot call methods through
// an unexported struct field: print such a field itself, not its struct.)
type Record struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	Expiry       time.Time // access token expiry; zero = unknown
	Scopes       []string  // granted scopes
	UserID       int64     // the farmer, authorization-code grants only
	Email        string
	GrantedAt    time.Time // when the grant was first obtained (login / first fetch)
	UpdatedAt    time.Time // last write; set by Update
	// DPoPJKT is the RFC 7638 thumbprint of the key the tokens are bound
	// to (RFC 9449 §6: the token's cnf.jkt); "" for bearer tokens.
	DPoPJKT string
	// DPoPKey is that key's private key (PKCS#8 DER) when it was generated
	// for the grant and lives only here; nil when it is read from a key
	// file, or for bearer tokens.
	DPoPKey []byte
	// RefusedRefresh is the hex SHA-256 of a refresh token the token
	// endpoint refused (invalid_grant): no process or replica sharing the
	// store sends it again (RefusedHash). "" when none was refused.
	RefusedRefresh string
}

// RefusedHash is the form RefusedRefresh takes of a refresh token.
func RefusedHash(refreshToken string) string { return checksum([]byte(refreshToken)) }

// String implements fmt.Stringer with the tokens replaced by fingerprints
// (and a DPoP private key by whether there is one).
func (r Record) String() string {
	return fmt.Sprintf("{AccessToken:%s TokenType:%s RefreshToken:%s Expiry:%v Scopes:%v UserID:%d Email:%s GrantedAt:%v UpdatedAt:%v DPoPJKT:%s DPoPKey:%s RefusedRefresh:%s}",
		redact.Fingerprint(r.AccessToken), r.TokenType, redact.Fingerprint(r.RefreshToken),
		r.Expiry, r.Scopes, r.UserID, r.Email, r.GrantedAt, r.UpdatedAt, r.DPoPJKT, held(r.DPoPKey), r.RefusedRefresh)
}

// GoString implements fmt.GoStringer (%#v) with the tokens replaced by fingerprints.
func (r Record) GoString() string {
	return fmt.Sprintf("tokenstore.Record{AccessToken:%q, TokenType:%q, RefreshToken:%q, Expiry:%#v, Scopes:%#v, UserID:%d, Email:%q, GrantedAt:%#v, UpdatedAt:%#v, DPoPJKT:%q, DPoPKey:%q, RefusedRefresh:%q}",
		redact.Fingerprint(r.AccessToken), r.TokenType, redact.Fingerprint(r.RefreshToken),
		r.Expiry, r.Scopes, r.UserID, r.Email, r.GrantedAt, r.UpdatedAt, r.DPoPJKT, held(r.DPoPKey), r.RefusedRefresh)
}

// held shows a private key as whether there is one: a key has no
// fingerprint worth showing beside its public thumbprint (DPoPJKT).
func held(key []byte) string {
	if len(key) == 0 {
		return ""
	}
	return "held"
}

// Format implements fmt.Formatter so that every verb (%d and %x included,
// which would otherwise print the fields) goes through String or GoString.
func (r Record) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = io.WriteString(f, r.GoString())
		return
	}
	_, _ = io.WriteString(f, r.String())
}

// MarshalJSON encodes the record with fingerprints in place of the tokens, so
// a Record given to a JSON logger (zap.Any) stays redacted. The token file is
// written by Encode, which does not use this method.
func (r Record) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		AccessToken  string    `json:"access_token"`
		TokenType    string    `json:"token_type"`
		RefreshToken string    `json:"refresh_token"`
		Expiry       time.Time `json:"expiry"`
		Scopes       []string  `json:"scopes"`
		UserID       int64     `json:"user_id"`
		Email        string    `json:"email"`
		GrantedAt    time.Time `json:"granted_at"`
		UpdatedAt    time.Time `json:"updated_at"`
		DPoPJKT      string    `json:"dpop_jkt,omitempty"`
		DPoPKey      string    `json:"dpop_key,omitempty"`
		Refused      string    `json:"refused_refresh_token_sha256,omitempty"`
	}{redact.Fingerprint(r.AccessToken), r.TokenType, redact.Fingerprint(r.RefreshToken),
		r.Expiry, r.Scopes, r.UserID, r.Email, r.GrantedAt, r.UpdatedAt, r.DPoPJKT, held(r.DPoPKey), r.RefusedRefresh})
}
