package tokensource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokenform"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Grant obtains a new token from the authorization server. cur is what the
// store holds for the grant's key (ok is false when it holds nothing).
type Grant interface {
	Key() tokenstore.Key
	Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error)
}

// ClientCredentials is the client-credentials grant (RFC 6749 §4.4): the
// application asks for a token with its own id and secret. COOP's token acts
// for the application's owner. No refresh token is issued (§4.4.3).
type ClientCredentials struct {
	Config *clientcredentials.Config
	Client *http.Client     // nil: http.DefaultTransport, no timeout; redirects are refused either way
	Now    func() time.Time // the clock expiry is counted from; nil: time.Now
	// Params are sent on every token request besides the grant's own
	// (RFC 8707 resource, audience, ...), and are part of the store key.
	Params url.Values
}

// Key implements Grant.
func (g *ClientCredentials) Key() tokenstore.Key {
	k := ClientCredentialsKey(g.Config.TokenURL, g.Config.ClientID, g.Config.Scopes)
	k.Params = ParamsKey(g.Params)
	return k
}

// ClientCredentialsKey is the store key of an application's own token: one
// per application, token endpoint and requested scopes.
func ClientCredentialsKey(tokenURL, clientID string, scopes []string) tokenstore.Key {
	return tokenstore.Key{TokenURL: tokenURL, ClientID: clientID, GrantType: "client_credentials", Scopes: scopes}
}

// Fetch implements Grant.
func (g *ClientCredentials) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	tok, err := g.Config.Token(withClient(ctx, g.Client, g.Params))
	if err != nil {
		return tokenstore.Record{}, classify(err, g.Config.ClientID, g.Config.ClientSecret)
	}
	if err := checkToken(tok, dpop.KeyFrom(ctx) != nil, g.Config.ClientSecret); err != nil {
		return tokenstore.Record{}, err
	}
	return RecordFromToken(tok, g.Config.Scopes, now(g.Now)), nil
}

// Refresh renews a farmer's authorization-code grant with its refresh token
// (RFC 6749 §6). COOP rotates refresh tokens: the answer carries a new one
// and the old one is dead, so the caller must store the result before use.
type Refresh struct {
	Config *oauth2.Config
	Client *http.Client     // nil: http.DefaultTransport, no timeout; redirects are refused either way
	Now    func() time.Time // the clock expiry is counted from; nil: time.Now
	// Params are sent on every refresh besides the grant's own (RFC 8707
	// §2.2 allows resource there), and are part of the store key: login
	// stores the grant under the same ones.
	Params url.Values
}

// Key implements Grant.
func (g *Refresh) Key() tokenstore.Key {
	k := AuthorizationCodeKey(g.Config.Endpoint.TokenURL, g.Config.ClientID)
	k.Params = ParamsKey(g.Params)
	return k
}

// AuthorizationCodeKey is the store key of a farmer's grant: one grant
// per application and token endpoint, whatever scopes it has; `login`
// writes under it and `serve` reads it.
func AuthorizationCodeKey(tokenURL, clientID string) tokenstore.Key {
	return tokenstore.Key{TokenURL: tokenURL, ClientID: clientID, GrantType: "authorization_code"}
}

// Fetch implements Grant.
func (g *Refresh) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	if !ok || cur.RefreshToken == "" {
		return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "no farmer has logged in for this application: run `coop-proxy login`"}
	}
	// x/oauth2 refreshes a token that has a refresh token and no access token.
	tok, err := g.Config.TokenSource(withClient(ctx, g.Client, g.Params), &oauth2.Token{RefreshToken: cur.RefreshToken}).Token()
	if err != nil {
		return tokenstore.Record{}, classify(err, g.Config.ClientID, g.Config.ClientSecret, cur.RefreshToken)
	}
	if err := checkToken(tok, dpop.KeyFrom(ctx) != nil, g.Config.ClientSecret, cur.RefreshToken); err != nil {
		return tokenstore.Record{}, refused(err, tok, cur)
	}
	// §6: the server MAY issue a new refresh token; x/oauth2 keeps the old
	// one when it does not.
	return RecordFromToken(tok, cur.Scopes, now(g.Now)), nil
}

// refusedRotation is an answer to a refresh that checkToken refused but
// that carries a new refresh token: the server rotated it, so the one sent
// is dead and this one is the grant's only live one. Stored writes keep
// (that refresh token, no access token) and fails with err all the same:
// when the setting the error names is changed (DPoP off), the grant still
// works.
type refusedRotation struct {
	keep tokenstore.Record
	err  *Error
}

func (e *refusedRotation) Error() string { return e.err.Error() }
func (e *refusedRotation) Unwrap() error { return e.err }

// refused is the error of a refresh answer tok that checkToken refused
// with err: a *refusedRotation when the answer rotated cur's refresh token
// (x/oauth2 keeps the old one when the answer has none) and the store can
// hold the new one.
func refused(err *Error, tok *oauth2.Token, cur tokenstore.Record) error {
	if tok.RefreshToken == "" || tok.RefreshToken == cur.RefreshToken || !printable(tok.RefreshToken, 0x20) {
		return err
	}
	return &refusedRotation{keep: tokenstore.Record{RefreshToken: tok.RefreshToken, Scopes: cur.Scopes}, err: err}
}

// RecordFromToken turns a token response into a store record; fallback is
// used when the response carries no "scope" (RFC 6749 §5.1: the scope is
// then the one requested). The expiry is counted from now (expires_in is
// relative to the answer), so that an injected clock governs it too;
// tok.Expiry, which x/oauth2 computes itself, is not used. See lifetime for
// the range of expires_in accepted.
func RecordFromToken(tok *oauth2.Token, fallback []string, now time.Time) tokenstore.Record {
	scopes := GrantedScopes(tok, fallback)
	var expiry time.Time // unknown
	if life, ok := lifetime(tok); ok {
		expiry = now.Add(life)
	}
	return tokenstore.Record{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		Expiry:       expiry,
		Scopes:       scopes,
	}
}

// GrantedScopes are the scopes of a token response: its "scope", or the
// scopes requested when it has none (RFC 6749 §5.1). A "scope" holding a
// control character or bytes that are not UTF-8 (a form answer is not
// decoded as JSON is) is no list of scope-tokens (§3.3) and counts as
// none: the token store could not hold it, and the answer's rotated
// refresh token would then never reach the disk.
func GrantedScopes(tok *oauth2.Token, requested []string) []string {
	s, _ := tok.Extra("scope").(string)
	scopes := strings.Fields(s)
	if len(scopes) == 0 || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return slices.Clone(requested)
	}
	return scopes
}

// The range of token lifetimes accepted from expires_in. Much under
// minLifetime a token would be expired on arrival (expirySkew) or renewed on
// every request; at minLifetime it is sent for 25s and, with the default
// refresh margin, renewed after 15s (half its life, see renewAt), so that a
// server issuing tokens of 15s or more gets them renewed before they expire.
// Over maxLifetime an expiry means nothing, and at ~292 years
// time.Duration overflows.
const (
	minLifetime = 30 * time.Second
	maxLifetime = 365 * 24 * time.Hour
)

// lifetime reads expires_in (RFC 6749 §5.1) from the raw answer, as a JSON
// number or, as some servers send it, a string; ok is false when there is
// none (the expiry is then unknown: the token is used until rejected).
// Nonsense (zero, negative, unparsable, NaN) counts as "unknown, but short":
// minLifetime. Values are clamped to [minLifetime, maxLifetime]. (What
// x/oauth2 itself cannot parse, answerTransport has already rewritten.)
func lifetime(tok *oauth2.Token) (life time.Duration, ok bool) {
	var secs float64
	switch v := tok.Extra("expires_in").(type) {
	case nil:
		if tok.ExpiresIn == 0 {
			return 0, false
		}
		secs = float64(tok.ExpiresIn)
	case float64:
		secs = v
	case int64: // a form-encoded answer
		secs = float64(v)
	case string:
		if strings.TrimSpace(v) == "" {
			return 0, false // how a form-encoded answer without it reads
		}
		secs = parseSeconds(v)
	default:
		secs = math.NaN()
	}
	return clampLifetime(secs), true
}

// parseSeconds reads a number of seconds; NaN when it is none, ±Inf when
// out of range.
func parseSeconds(s string) float64 {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range: ±Inf
		return math.NaN()
	}
	return f
}

// clampLifetime turns an expires_in into the lifetime used (see lifetime).
func clampLifetime(secs float64) time.Duration {
	switch {
	case !(secs > minLifetime.Seconds()): // NaN too
		return minLifetime
	case secs >= maxLifetime.Seconds():
		return maxLifetime
	}
	return time.Duration(secs * float64(time.Second))
}

// maxAnswer is what x/oauth2 reads of a token endpoint's answer.
const maxAnswer = 1 << 20

// answerTransport rewrites, in a 2xx JSON answer of the token endpoint, an
// expires_in that x/oauth2 cannot read (it wants a whole number that fits
// an int64: 3600.0, 3.6e3, 1e30, "soon" or true make it refuse the whole
// answer) into the whole seconds lifetime would give it, or removes it when
// lifetime reads it as absent (""). Refusing the answer would throw away
// tokens the server has issued, and with rotating refresh tokens that is the
// farmer's grant lost: the refresh token sent is dead, the new one was in
// the answer. Every other answer passes as it came.
//
// It also asks for JSON (Accept: application/json): GitHub answers a token
// request with a form unless asked, which x/oauth2 reads too, but with
// expires_in and every other member as a string.
type answerTransport struct{ base http.RoundTripper }

func (t answerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if tokenform.Is(req) && req.Header.Get("Accept") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("Accept", "application/json")
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" || ct == "text/plain" {
		return resp, nil // x/oauth2 reads expires_in leniently there
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(fixExpiresIn(body)))
	resp.ContentLength = -1
	resp.Header.Del("Content-Length")
	return resp, nil
}

// fixExpiresIn is answerTransport's rewrite of a JSON body.
func fixExpiresIn(body []byte) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return body
	}
	raw, ok := m["expires_in"]
	if !ok || string(raw) == "null" {
		return body
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		if _, err := n.Int64(); err == nil {
			return body // x/oauth2 reads it
		}
	}
	text := string(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		text = s
	}
	if strings.TrimSpace(text) == "" {
		delete(m, "expires_in")
	} else {
		m["expires_in"] = json.RawMessage(strconv.FormatInt(int64(clampLifetime(parseSeconds(text))/time.Second), 10))
	}
	fixed, err := json.Marshal(m)
	if err != nil {
		return body
	}
	return fixed
}

// checkToken refuses a token the proxy could not send (RFC 6750 §2.1, RFC
// 9449 §7.1): one of another type than asked for (RFC 6749 §7.1: a client
// must not use a token of a type it does not understand; no type at all is
// taken as Bearer; with dpop, a token request that carried a DPoP proof,
// RFC 9449 §5 wants DPoP, in any case), an access token with characters
// other than printable ASCII (a space, a line break, which no header can
// carry as they are), or a refresh token with control characters (RFC 6749
// §A.17), which the store could not keep. sent are the credentials of the
// request, never repeated.
func checkToken(tok *oauth2.Token, dpop bool, sent ...string) *Error {
	typ := tok.TokenType
	switch {
	case dpop && strings.EqualFold(typ, "bearer"):
		return &Error{Code: Unavailable, Description: "the token endpoint answered a DPoP token request with a Bearer token: " +
			"the provider does not support DPoP for this client (turn COOP_PROXY_DPOP off, or enable DPoP for the client at the provider)"}
	case dpop && !strings.EqualFold(typ, "dpop"):
		return &Error{Code: Unavailable, Description: fmt.Sprintf(
			"the token endpoint issued a token of type %q to a DPoP token request; coop-proxy wants DPoP (RFC 9449 §5)", redact.Text(typ, sent...))}
	case !dpop && typ != "" && !strings.EqualFold(typ, "bearer"):
		return &Error{Code: Unavailable, Description: fmt.Sprintf(
			"the token endpoint issued a token of type %q; coop-proxy sends only Bearer tokens (RFC 6750), and DPoP tokens with COOP_PROXY_DPOP on", redact.Text(typ, sent...))}
	}
	if !printable(tok.AccessToken, 0x21) {
		return &Error{Code: Unavailable, Description: "the token endpoint answered HTTP 2xx with an access token that cannot be sent in a header (not printable ASCII)"}
	}
	if !printable(tok.RefreshToken, 0x20) {
		return &Error{Code: Unavailable, Description: "the token endpoint answered HTTP 2xx with a refresh token holding characters other than printable ASCII"}
	}
	return nil
}

// CheckIssued is checkToken for a token obtained elsewhere (login's code
// exchange); dpop: the request carried a DPoP proof.
func CheckIssued(tok *oauth2.Token, dpop bool, sent ...string) error {
	if err := checkToken(tok, dpop, sent...); err != nil {
		return err
	}
	return nil
}

// printable reports whether every byte of s is in [lowest, 0x7e].
func printable(s string, lowest byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < lowest || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// NewHTTPClient returns a client for the token endpoint that gives up after
// timeout, never follows a redirect (see refuseRedirect), and, like the
// transport to COOP's API, talks to it directly: no HTTP_PROXY from the
// environment sees the client secret or a refresh token. Every request to
// a token endpoint (the grants here, and the code exchange of login) should
// use it.
func NewHTTPClient(timeout time.Duration) *http.Client {
	return NewAuthHTTPClient(timeout, nil)
}

// NewAuthHTTPClient is NewHTTPClient with the client's authentication in
// its transport: auth adapts the transport to the token endpoint (adds a
// client assertion to each request, see clientauth) beneath the layer that
// reads the answers; nil adds nothing.
func NewAuthHTTPClient(timeout time.Duration, auth func(*http.Transport) http.RoundTripper) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	var rt http.RoundTripper = tr
	if auth != nil {
		rt = auth(tr)
	}
	return &http.Client{Transport: answerTransport{base: rt}, Timeout: timeout, CheckRedirect: refuseRedirect}
}

// refuseRedirect is the CheckRedirect of every request to the token
// endpoint. Following a 307 or 308 would post the form again, client_secret
// and refresh_token included, to whatever host Location names; the token
// endpoint's address is configured, never learnt from an answer.
func refuseRedirect(req *http.Request, _ []*http.Request) error {
	return &redirectError{status: req.Response.StatusCode, host: req.URL.Host}
}

// withClient hands x/oauth2 the client for the token endpoint: a copy of c
// (nil: a client with http.DefaultTransport) that refuses redirects,
// whatever c itself does, and adds params to token requests.
func withClient(ctx context.Context, c *http.Client, params url.Values) context.Context {
	var nc http.Client
	if c != nil {
		nc = *c
	}
	nc.CheckRedirect = refuseRedirect
	switch nc.Transport.(type) {
	case answerTransport, paramsTransport: // NewHTTPClient's, WithParams'
	case nil:
		nc.Transport = answerTransport{base: http.DefaultTransport}
	default:
		nc.Transport = answerTransport{base: nc.Transport}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, WithParams(&nc, params))
}

func now(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}
