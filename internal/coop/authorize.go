package coop

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// sessionCookie names COOP's session cookie (it was a PHP site).
const sessionCookie = "PHPSESSID"

// Messages of the authorization endpoint's errors. The first three are shown
// on COOP's page and never redirected (RFC 6749 §4.1.2.1: the redirect URI
// cannot be trusted); the others are redirected to the client.
const (
	msgBadClient     = "The client id supplied is invalid"
	msgRedirectURI   = "The redirect URI provided is missing or does not match"
	msgNoRedirectURI = "No redirect URI was supplied or stored"
	msgLoginFailed   = "Invalid email or password."
	descResponseType = "Invalid or missing response type"
	descScope        = "An unsupported scope was requested"
	descAccessDenied = "The user denied access to your application"
)

// authorizeRequest is a validated authorization request (RFC 6749 §4.1.1,
// §4.2.1).
type authorizeRequest struct {
	clientID     string
	responseType string // "code" or "token"
	redirectURI  string // where the browser goes: the one given, else the registered one
	givenURI     string // the one given, "" for none; a code remembers it (RFC 6749 §4.1.3)
	scope        string // "" for none
	state        string
	hasState     bool
}

// loginPage is the data of the login page.
type loginPage struct{ Email, ReturnTo, Error string }

// consentPage is the data of the consent page.
type consentPage struct {
	ClientID      string
	Scopes        []scopeLine
	Approve, Deny string
}

// scopeLine is a scope on the consent page.
type scopeLine struct{ Name, Meaning string }

// serveAuthorize is the authorization endpoint (RFC 6749 §3.1): the login
// page when nobody is logged in on COOP, an error page or redirect when the
// request is invalid, else the consent page.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if !isGet(r) {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	if _, ok := s.sessionUser(r); !ok {
		render(w, http.StatusOK, "login", loginPage{ReturnTo: r.URL.RequestURI()})
		return
	}
	req, ok := s.validateAuthorize(w, r.URL.Query())
	if !ok {
		return
	}
	page := consentPage{
		ClientID: req.clientID,
		Approve:  "/authorize/submit?" + r.URL.RawQuery + "&authorize=1",
		Deny:     "/authorize/submit?" + r.URL.RawQuery + "&authorize=0",
	}
	for name := range strings.SplitSeq(req.scope, " ") {
		if name == "" {
			continue
		}
		line := scopeLine{Name: name}
		for _, sc := range scopes {
			if sc.name == name {
				line.Meaning = sc.meaning
			}
		}
		page.Scopes = append(page.Scopes, line)
	}
	render(w, http.StatusOK, "consent", page)
}

// serveAuthorizeSubmit takes the user's decision: the consent page's links
// come back here with the same query and authorize=1 or authorize=0. Being a
// GET, it validates the whole request again, and needs the logged-in user,
// for whom the code or token acts.
func (s *Server) serveAuthorizeSubmit(w http.ResponseWriter, r *http.Request) {
	if !isGet(r) {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	q := r.URL.Query()
	userID, ok := s.sessionUser(r)
	if !ok {
		// After logging in, back to the consent page, not to a decision.
		q.Del("authorize")
		render(w, http.StatusOK, "login", loginPage{ReturnTo: "/authorize?" + q.Encode()})
		return
	}
	req, ok := s.validateAuthorize(w, q)
	if !ok {
		return
	}
	if !phpTruthy(lastValue(q, "authorize")) {
		redirectError(w, req, &oauthError{"access_denied", descAccessDenied})
		return
	}

	var location string
	now := s.now()
	s.mu.Lock()
	switch req.responseType {
	case "code":
		// RFC 6749 §4.1.2: the code goes in the query.
		code := randomHex(20)
		s.codes[code] = &authCode{
			clientID:    req.clientID,
			userID:      userID,
			scope:       req.scope,
			redirectURI: req.givenURI,
			issued:      now,
		}
		location = buildURI(req.redirectURI, req.withState("code", code), false)
	case "token":
		// RFC 6749 §4.2.2: the token goes in the fragment, never with a
		// refresh token (§4.2.2, §10.3).
		access, _ := s.issueLocked(req.clientID, userID, req.scope, false, now)
		params := []string{"access_token", access, "expires_in", strconv.FormatInt(int64(s.accessLifetime/time.Second), 10), "token_type", "Bearer"}
		if req.scope != "" { // http_build_query leaves out a null scope
			params = append(params, "scope", req.scope)
		}
		location = buildURI(req.redirectURI, req.withState(params...), true)
	}
	s.mu.Unlock()
	s.logf("coop: user %d authorized client %q (response_type %s)", userID, req.clientID, req.responseType)
	w.Header().Set("Location", location)
	w.WriteHeader(http.StatusFound)
}

// validateAuthorize validates an authorization request in the order
// bshaffer's AuthorizeController does. When it is invalid, it answers the
// error itself and returns false: on COOP's page for a bad client or redirect
// URI, else by redirecting to the client (RFC 6749 §4.1.2.1, §4.2.2.1).
func (s *Server) validateAuthorize(w http.ResponseWriter, q url.Values) (authorizeRequest, bool) {
	req := authorizeRequest{clientID: lastValue(q, "client_id")}
	s.mu.Lock()
	app, known := s.apps[req.clientID]
	var registered, appScope string
	if known {
		registered, appScope = app.RedirectURI, app.appScope()
	}
	s.mu.Unlock()
	if !phpTruthy(req.clientID) || !known {
		render(w, http.StatusBadRequest, "error", msgBadClient)
		return req, false
	}

	// RFC 6749 §3.1.2: a redirect URI given must have no fragment and be
	// exactly the registered one, if there is one; without one given, the
	// registered one is used.
	if given := lastValue(q, "redirect_uri"); phpTruthy(given) {
		if _, frag, _ := strings.Cut(given, "#"); frag != "" || (registered != "" && given != registered) {
			render(w, http.StatusBadRequest, "error", msgRedirectURI)
			return req, false
		}
		req.redirectURI, req.givenURI = given, given
	} else {
		if registered == "" {
			render(w, http.StatusBadRequest, "error", msgNoRedirectURI)
			return req, false
		}
		req.redirectURI = registered
	}

	// COOP does not enforce state (RFC 6749 §10.12); it is only passed back.
	req.state, req.hasState = lastValue(q, "state"), q.Has("state")
	req.responseType = lastValue(q, "response_type")
	if req.responseType != "code" && req.responseType != "token" {
		redirectError(w, req, &oauthError{"invalid_request", descResponseType})
		return req, false
	}
	// RFC 6749 §3.3: the scope must be among the application's, or among
	// COOP's when the application has none. Without one, none is granted.
	if scope := lastValue(q, "scope"); phpTruthy(scope) {
		if (appScope == "" && !scopeExists(scope)) || (appScope != "" && !scopeCovers(scope, appScope)) {
			redirectError(w, req, &oauthError{"invalid_scope", descScope})
			return req, false
		}
		req.scope = scope
	}
	return req, true
}

// withState returns the key/value pairs followed by the state, when the
// request had one (RFC 6749 §4.1.2, §4.2.2).
func (req authorizeRequest) withState(pairs ...string) []string {
	if req.hasState {
		pairs = append(pairs, "state", req.state)
	}
	return pairs
}

// redirectError sends the browser back to the client with an error (RFC 6749
// §4.1.2.1). As bshaffer's Response::setRedirect does, the parameters go in
// the query even for response_type=token, and are appended after the whole
// redirect URI.
func redirectError(w http.ResponseWriter, req authorizeRequest, e *oauthError) {
	base, _, _ := strings.Cut(req.redirectURI, "#")
	sep := "?"
	if _, query, _ := strings.Cut(base, "?"); query != "" {
		sep = "&"
	}
	w.Header().Set("Location", req.redirectURI+sep+phpQuery(req.withState("error", e.code, "error_description", e.description)...))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// buildURI adds the pairs to the query, or to the fragment, of a redirect URI
// as bshaffer's AuthorizeController::buildUri does. Quirk: for the fragment,
// an existing query gets a trailing "&" (the library appends the empty query
// parameters too).
func buildURI(uri string, pairs []string, inFragment bool) string {
	params := phpQuery(pairs...)
	base, fragment, _ := strings.Cut(uri, "#")
	path, query, _ := strings.Cut(base, "?")
	if inFragment {
		if query != "" {
			query += "&"
		}
		if fragment != "" {
			fragment += "&" + params
		} else {
			fragment = params
		}
	} else {
		if query != "" {
			query += "&" + params
		} else {
			query = params
		}
	}
	if query != "" {
		path += "?" + query
	}
	if fragment != "" {
		path += "#" + fragment
	}
	return path
}

// phpQuery encodes key/value pairs, in order, as PHP's http_build_query does.
func phpQuery(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(phpURLEncode(pairs[i]))
		b.WriteByte('=')
		b.WriteString(phpURLEncode(pairs[i+1]))
	}
	return b.String()
}

// phpURLEncode encodes as PHP's urlencode: like url.QueryEscape, but "~" is
// escaped too.
func phpURLEncode(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "~", "%7E")
}

// serveLogin is COOP's login: GET shows the form, POST checks the email and
// password, opens a session (an HttpOnly cookie) and sends the browser back
// (303) to where it came from; a failure shows the form again with an error.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		render(w, http.StatusOK, "login", loginPage{ReturnTo: safeReturn(r.URL.Query().Get("return_to"))})
		return
	case http.MethodPost:
	default:
		methodNotAllowed(w, "GET, POST")
		return
	}
	_ = r.ParseForm()
	email, password := r.PostForm.Get("email"), r.PostForm.Get("password")
	returnTo := safeReturn(r.PostForm.Get("return_to"))

	var session string
	s.mu.Lock()
	userID, known := s.userByEmail[strings.ToLower(email)]
	if known && subtle.ConstantTimeCompare([]byte(s.users[userID].Password), []byte(password)) == 1 {
		session = randomHex(16)
		s.sessions[session] = userID
	}
	s.mu.Unlock()
	if session == "" {
		s.logf("coop: failed login")
		render(w, http.StatusOK, "login", loginPage{Email: email, ReturnTo: returnTo, Error: msgLoginFailed})
		return
	}
	s.logf("coop: user %d logged in", userID)
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    session,
		Path:     "/",
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
	http.Redirect(w, r, returnTo, http.StatusSeeOther)
}

// sessionUser returns the user logged in on COOP by r's session cookie.
func (s *Server) sessionUser(r *http.Request) (int64, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	userID, ok := s.sessions[c.Value]
	return userID, ok
}

// safeReturn keeps a return URL only when it is a path on COOP itself, so
// the login form cannot send a browser to another site.
func safeReturn(u string) string {
	if strings.HasPrefix(u, "/") && !strings.HasPrefix(u, "//") && !strings.HasPrefix(u, `/\`) {
		return u
	}
	return "/"
}
