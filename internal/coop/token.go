package coop

import (
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Errors of the token endpoint: RFC 6749 §5.2 codes with bshaffer's
// descriptions, exactly as COOP served them.
var (
	errNoGrantType      = &oauthError{"invalid_request", "The grant type was not specified in the request"}
	errNoClient         = &oauthError{"invalid_client", "Client credentials were not found in the headers or body"}
	errBadClient        = &oauthError{"invalid_client", "The client credentials are invalid"}
	errTokenScope       = &oauthError{"invalid_scope", "The scope requested is invalid for this request"}
	errUnsupportedScope = &oauthError{"invalid_scope", "An unsupported scope was requested"}
	errNoCode           = &oauthError{"invalid_request", `Missing parameter: "code" is required`}
	errBadCode          = &oauthError{"invalid_grant", "Authorization code doesn't exist or is invalid for the client"}
	errCodeExpired      = &oauthError{"invalid_grant", "The authorization code has expired"}
	errRedirectMismatch = &oauthError{"redirect_uri_mismatch", "The redirect URI is missing or do not match"}
	errNoRefreshToken   = &oauthError{"invalid_request", `Missing parameter: "refresh_token" is required`}
	errBadRefreshToken  = &oauthError{"invalid_grant", "Invalid refresh token"}
	errRefreshExpired   = &oauthError{"invalid_grant", "Refresh token has expired"}
	errForeignRefresh   = &oauthError{"invalid_grant", "refresh_token doesn't exist or is invalid for the client"}
)

// oauthError is an RFC 6749 §4.1.2.1, §4.2.2.1 or §5.2 error.
type oauthError struct{ code, description string }

// tokenParams are the parameters of a token request (RFC 6749 §4.1.3,
// §4.4.2, §6) and the client's credentials (§2.3.1).
type tokenParams struct {
	grantType                string
	clientID, clientSecret   string
	hasClient, inBasic       bool
	scope, code, redirectURI string
	refreshToken             string
}

// grant is what a validated grant allows the new token.
type grant struct {
	userID      int64
	scope       string // "" for none
	withRefresh bool
}

// tokenResponse is RFC 6749 §5.1's successful response, fields in COOP's order.
type tokenResponse struct {
	AccessToken  string  `json:"access_token"`
	ExpiresIn    int64   `json:"expires_in"`
	TokenType    string  `json:"token_type"`
	Scope        *string `json:"scope"`
	RefreshToken string  `json:"refresh_token,omitempty"`
}

// serveToken is the token endpoint (RFC 6749 §3.2).
func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodHead:
		// COOP's GET /token was a web page, not the OAuth endpoint; its
		// "Generate a Token!" variant put the secret in the URL and is not
		// emulated. Anything else was a 404 page.
		notFound(w)
		return
	default:
		methodNotAllowed(w, "GET, POST")
		return
	}
	now := s.now()
	p := readTokenParams(r)
	rec := TokenRequest{At: now, GrantType: p.grantType, ClientID: p.clientID, AuthInBasic: p.inBasic}

	s.mu.Lock()
	fault := s.fault
	if fault != FaultNone {
		if fault == Fault500 {
			rec.Status = http.StatusInternalServerError
		}
		s.tokenLog = append(s.tokenLog, rec)
		s.mu.Unlock()
		s.logf("coop: POST /token grant=%q client=%q: fault %d injected", p.grantType, p.clientID, fault)
		serveTokenFault(w, r, fault)
		return
	}
	resp, oerr := s.grantLocked(p, now)
	rec.Status = http.StatusOK
	if oerr != nil {
		// COOP answers every token error with 400, invalid_client included,
		// where RFC 6749 §5.2 allows 401.
		rec.Status, rec.ErrorCode = http.StatusBadRequest, oerr.code
	}
	s.tokenLog = append(s.tokenLog, rec)
	s.mu.Unlock()

	s.logf("coop: POST /token grant=%q client=%q basic=%t: %d %s", p.grantType, p.clientID, p.inBasic, rec.Status, rec.ErrorCode)
	if oerr != nil {
		writeOAuthError(w, oerr)
		return
	}
	// RFC 6749 §5.1: no caching of a response carrying tokens.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// readTokenParams reads a token request's form body, and its client
// credentials from HTTP Basic or else from the body (RFC 6749 §2.3.1).
//
// Quirk: COOP does not URL-decode Basic credentials, which §2.3.1 requires,
// so a client id with special characters, form-encoded as the RFC says (and as
// golang.org/x/oauth2's AuthStyleInHeader does), is not recognized.
func readTokenParams(r *http.Request) tokenParams {
	_ = r.ParseForm() // a malformed body leaves the form empty, as PHP's $_POST would be
	form := r.PostForm
	p := tokenParams{
		grantType:    lastValue(form, "grant_type"),
		code:         lastValue(form, "code"),
		redirectURI:  lastValue(form, "redirect_uri"),
		refreshToken: lastValue(form, "refresh_token"),
	}
	// The scope may come in the body or, failing that, in the query.
	if _, ok := form["scope"]; ok {
		p.scope = lastValue(form, "scope")
	} else {
		p.scope = lastValue(r.URL.Query(), "scope")
	}
	if user, pass, ok := r.BasicAuth(); ok {
		p.clientID, p.clientSecret, p.hasClient, p.inBasic = user, pass, true, true
	} else if _, ok := form["client_id"]; ok {
		p.clientID, p.clientSecret, p.hasClient = lastValue(form, "client_id"), lastValue(form, "client_secret"), true
	}
	return p
}

// grantLocked validates a token request in the order bshaffer's
// TokenController does and, when it is valid, issues the tokens and uses up
// the code or refresh token. s.mu must be held.
func (s *Server) grantLocked(p tokenParams, now time.Time) (tokenResponse, *oauthError) {
	if !phpTruthy(p.grantType) {
		return tokenResponse{}, errNoGrantType
	}
	switch p.grantType {
	case "client_credentials", "authorization_code", "refresh_token":
	default:
		return tokenResponse{}, &oauthError{"unsupported_grant_type", `Grant type "` + p.grantType + `" not supported`}
	}

	// RFC 6749 §2.3.1, §3.2.1: the client authenticates.
	if !p.hasClient {
		return tokenResponse{}, errNoClient
	}
	app := s.apps[p.clientID]
	if app == nil || subtle.ConstantTimeCompare([]byte(app.ClientSecret), []byte(p.clientSecret)) != 1 {
		return tokenResponse{}, errBadClient
	}

	var g grant
	var oerr *oauthError
	switch p.grantType {
	case "client_credentials":
		// RFC 6749 §4.4: the token acts for the application, and on COOP
		// for the user who registered it. Never a refresh token (§4.4.3).
		g = grant{userID: app.OwnerID, scope: app.appScope()}
	case "authorization_code":
		g, oerr = s.codeGrantLocked(p, app, now)
	case "refresh_token":
		g, oerr = s.refreshGrantLocked(p, app, now)
	}
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	scope, oerr := grantedScope(p.scope, g.scope, app)
	if oerr != nil {
		return tokenResponse{}, oerr
	}

	access, refresh := s.issueLocked(app.ClientID, g.userID, scope, g.withRefresh, now)
	switch p.grantType {
	case "authorization_code":
		delete(s.codes, p.code) // RFC 6749 §4.1.2: a code is used once
	case "refresh_token":
		// RFC 6749 §6 allows rotation; COOP always rotates and deletes
		// the refresh token just used.
		delete(s.refresh, p.refreshToken)
	}
	resp := tokenResponse{
		AccessToken:  access,
		ExpiresIn:    int64(s.accessLifetime / time.Second),
		TokenType:    "Bearer",
		RefreshToken: refresh,
	}
	if scope != "" {
		resp.Scope = &scope
	}
	return resp, nil
}

// codeGrantLocked validates an authorization code grant (RFC 6749 §4.1.3).
// A failed attempt leaves the code usable. s.mu must be held.
func (s *Server) codeGrantLocked(p tokenParams, app *App, now time.Time) (grant, *oauthError) {
	if !phpTruthy(p.code) {
		return grant{}, errNoCode
	}
	c := s.codes[p.code]
	if c == nil {
		return grant{}, errBadCode
	}
	// The redirect_uri must be the one sent to /authorize, if one was;
	// COOP compares them URL-decoded.
	if c.redirectURI != "" && (!phpTruthy(p.redirectURI) || phpURLDecode(p.redirectURI) != phpURLDecode(c.redirectURI)) {
		return grant{}, errRedirectMismatch
	}
	if now.After(c.issued.Add(s.codeLifetime)) {
		return grant{}, errCodeExpired
	}
	// The code must have been issued to this client.
	if c.clientID != app.ClientID {
		return grant{}, errBadCode
	}
	return grant{userID: c.userID, scope: c.scope, withRefresh: true}, nil
}

// refreshGrantLocked validates a refresh token grant (RFC 6749 §6). s.mu
// must be held.
func (s *Server) refreshGrantLocked(p tokenParams, app *App, now time.Time) (grant, *oauthError) {
	if !phpTruthy(p.refreshToken) {
		return grant{}, errNoRefreshToken
	}
	rt := s.refresh[p.refreshToken]
	if rt == nil {
		return grant{}, errBadRefreshToken
	}
	if now.After(rt.expires) {
		return grant{}, errRefreshExpired
	}
	// The refresh token must have been issued to this client.
	if rt.clientID != app.ClientID {
		return grant{}, errForeignRefresh
	}
	return grant{userID: rt.userID, scope: rt.scope, withRefresh: true}, nil
}

// grantedScope decides the new token's scope as bshaffer's TokenController
// does (RFC 6749 §3.3): a requested scope must be covered by the scope the
// grant carries (the application's, the code's or the refresh token's) or,
// when it carries none, by the application's; without a request the token
// gets all the grant carries. The requested string is kept as sent.
func grantedScope(requested, available string, app *App) (string, *oauthError) {
	if !phpTruthy(requested) {
		return available, nil
	}
	switch appScope := app.appScope(); {
	case phpTruthy(available):
		if !scopeCovers(requested, available) {
			return "", errTokenScope
		}
	case appScope != "":
		if !scopeCovers(requested, appScope) {
			return "", errTokenScope
		}
	case !scopeExists(requested):
		return "", errUnsupportedScope
	}
	return requested, nil
}

// writeOAuthError answers an RFC 6749 §5.2 error with status 400. Like
// bshaffer's Response::setError it also forbids caching.
func writeOAuthError(w http.ResponseWriter, e *oauthError) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusBadRequest, struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}{e.code, e.description})
}

// jsonContentType is the Content-Type of every JSON answer. Handlers assign
// this slice to the header map rather than calling Header.Set, which saves an
// allocation per API request; nothing modifies it.
var jsonContentType = []string{"application/json"}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	_, _ = w.Write(appendJSON(nil, v))
}

// appendJSON appends v as JSON without HTML escaping and without a trailing
// newline, as PHP's json_encode prints it.
func appendJSON(b []byte, v any) []byte {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // only the package's own types are encoded
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// lastValue returns the last value of key, as PHP keeps the last of
// repeated parameters, or "".
func lastValue(v url.Values, key string) string {
	vs := v[key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

// phpURLDecode decodes s as PHP's urldecode does: "+" is a space, "%XX" a
// byte, and an invalid escape stays as it is.
func phpURLDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s):
			if d, err := hex.DecodeString(s[i+1 : i+3]); err == nil {
				b.Write(d)
				i += 2
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
