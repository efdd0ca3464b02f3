package coop

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// The five farm actions, in the order of coop-api.md.
const (
	actBarnUnlock = iota
	actToiletseatDown
	actChickensFeed
	actEggsCollect
	actEggsCount
	numActions
)

// actions holds each action's name (also the scope it needs) and messages.
// The eggs actions build their "done" message around a number.
var actions = [numActions]struct{ name, done, again string }{
	actBarnUnlock:     {"barn-unlock", "You just unlocked your barn! Watch out for strangers!", "The barn is already wide open! Let's throw a party!"},
	actToiletseatDown: {"toiletseat-down", "You just put the toilet seat down. You're a wonderful roommate!", "Yea, the toilet seat is already down... you slob!"},
	actChickensFeed:   {"chickens-feed", "Your chickens are now full and happy", "You just fed them! Do you want them to explode??"},
	actEggsCollect:    {"eggs-collect", "", "Hey, give the ladies a break. Makin' eggs ain't easy!"},
	actEggsCount:      {"eggs-count", "", ""}, // no 20-second rule
}

// actionCooldown is the 20-second rule: an action repeated on the same farm
// within it does nothing new.
const actionCooldown = 20 * time.Second

// farm is the state of one user's farm.
type farm struct {
	lastDone [numActions]time.Time // when each action last did something
	eggDay   int                   // the day eggs counts, as yyyymmdd
	eggs     int
}

// bodyNotYours is COOP's own answer when the token may not act on the farm:
// always 401, no WWW-Authenticate, and "error_message", not
// "error_description".
var bodyNotYours = []byte(`{"error":"access_denied","error_message":"You do not have access to take this action on behalf of this user"}`)

// bearerError is an RFC 6750 §3.1 error with the status the PHP library
// intended for it.
type bearerError struct {
	status            int
	code, description string
}

// Errors of the resource server, as bshaffer's Bearer and ResourceController
// set them.
var (
	errTwoWays      = &bearerError{http.StatusBadRequest, "invalid_request", "Only one method may be used to authenticate at a time (Auth header, GET or POST)"}
	errMalformed    = &bearerError{http.StatusBadRequest, "invalid_request", "Malformed auth header"}
	errBadToken     = &bearerError{http.StatusUnauthorized, "invalid_token", "The access token provided is invalid"}
	errExpiredToken = &bearerError{http.StatusUnauthorized, "invalid_token", "The access token provided has expired"}
	errScope        = &bearerError{http.StatusForbidden, "insufficient_scope", "The request requires higher privileges than provided by the access token"}
	// errNoToken is COOP's own answer when no token came at all. Quirk:
	// it is served with status 200 and no WWW-Authenticate.
	errNoToken = &bearerError{http.StatusOK, "access_denied", "an access token is required"}
)

// apiRoute is a routed farm API request.
type apiRoute struct {
	me     bool   // GET /api/me, else POST /api/{farmID}/{scope}
	farmID string // {id} as given
	scope  string // the scope asked for: "profile" or the action's name
	action int    // index in actions, -1 for an unknown action
}

// apiAnswer is the farm API's answer, decided under s.mu and written after.
type apiAnswer struct {
	status    int
	challenge string // WWW-Authenticate, "" for none
	noStore   bool   // Cache-Control: no-store, as the library's errors have
	notFound  bool   // answer the 404 page instead
	body      []byte
}

// bodyPool recycles answer bodies: the API is the hot path.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// serveAPI is the resource server (RFC 6749 §7, RFC 6750).
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	rt, status, allow := routeAPI(r)
	if status != 0 {
		s.recordAPI(APIRequest{At: s.now(), Method: r.Method, Path: r.URL.Path, Status: status})
		if status == http.StatusNotFound {
			notFound(w)
		} else {
			methodNotAllowed(w, allow)
		}
		return
	}
	token, berr := bearerToken(r)
	now := s.now()

	bp := bodyPool.Get().(*[]byte)
	a := apiAnswer{body: (*bp)[:0]}
	s.mu.Lock()
	fp := s.answerAPILocked(&a, rt, token, berr, now)
	s.apiLog.add(APIRequest{At: now, Method: r.Method, Path: r.URL.Path, Status: a.status, TokenFingerprint: fp})
	s.mu.Unlock()

	a.write(w)
	*bp = a.body[:0]
	bodyPool.Put(bp)
}

// routeAPI routes a request under /api/. It returns a non-zero status (404,
// or 405 with the allowed methods) when no endpoint takes it.
func routeAPI(r *http.Request) (rt apiRoute, status int, allow string) {
	rest := r.URL.Path[len("/api/"):]
	if rest == "me" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return rt, http.StatusMethodNotAllowed, "GET, HEAD"
		}
		return apiRoute{me: true, scope: "profile", action: -1}, 0, ""
	}
	id, name, ok := strings.Cut(rest, "/")
	if !ok || id == "" || name == "" || strings.Contains(name, "/") {
		return rt, http.StatusNotFound, ""
	}
	if r.Method != http.MethodPost {
		return rt, http.StatusMethodNotAllowed, "POST"
	}
	rt = apiRoute{farmID: id, scope: name, action: -1}
	for i, a := range actions {
		if a.name == name {
			rt.action = i
			break
		}
	}
	return rt, 0, ""
}

// answerAPILocked decides the answer to a routed API request, acting on the
// farm when all is well, and returns the fingerprint of the token presented.
// The token is checked first, with the scope the endpoint needs, as COOP
// verified the resource request before looking at the farm. s.mu must be
// held.
func (s *Server) answerAPILocked(a *apiAnswer, rt apiRoute, token string, berr *bearerError, now time.Time) string {
	switch berr {
	case nil:
	case errNoToken:
		a.status, a.body = errNoToken.status, appendError(a.body, errNoToken)
		return ""
	default:
		s.bearerFail(a, berr, "")
		return ""
	}
	t := s.access[token]
	if t == nil {
		s.bearerFail(a, errBadToken, "")
		return redact.Fingerprint(token)
	}
	if now.After(t.expires) {
		s.bearerFail(a, errExpiredToken, "")
		return t.fingerprint
	}
	// RFC 6750 §3.1 insufficient_scope. An unknown action lands here
	// too: its name is the scope asked for.
	if phpTruthy(rt.scope) && (!phpTruthy(t.scope) || !scopeCovers(rt.scope, t.scope)) {
		s.bearerFail(a, errScope, rt.scope)
		return t.fingerprint
	}
	user := s.users[t.userID]
	if rt.me {
		if user == nil {
			a.status, a.body = http.StatusUnauthorized, append(a.body, bodyNotYours...)
			return t.fingerprint
		}
		a.status = http.StatusOK
		a.body = appendJSON(a.body, struct {
			ID        int64  `json:"id"`
			Email     string `json:"email"`
			FirstName string `json:"firstName"`
			LastName  string `json:"lastName"`
		}{user.ID, user.Email, user.FirstName, user.LastName})
		return t.fingerprint
	}
	// The token may act on its user's farm only.
	if id, err := strconv.ParseInt(rt.farmID, 10, 64); err != nil || id != t.userID || user == nil {
		a.status, a.body = http.StatusUnauthorized, append(a.body, bodyNotYours...)
		return t.fingerprint
	}
	if rt.action < 0 { // a name the token's scope covers once trimmed
		a.status, a.notFound = http.StatusNotFound, true
		return t.fingerprint
	}
	a.status = http.StatusOK
	a.body = s.doActionLocked(a.body, rt.action, t.userID, now)
	return t.fingerprint
}

// bearerFail makes a an RFC 6750 §3 error answer: the library's status, an
// RFC 6750 §3 WWW-Authenticate challenge (with the scope needed, for
// insufficient_scope) and the JSON error.
//
// "As served": PHP turns a response carrying WWW-Authenticate into 401
// unless the status is set again afterwards, so COOP served the library's
// 400 and 403 as 401, with the same header. Options.IntendedStatuses
// restores them.
func (s *Server) bearerFail(a *apiAnswer, e *bearerError, scope string) {
	a.status = e.status
	if !s.intended {
		a.status = http.StatusUnauthorized
	}
	a.challenge = `Bearer realm="Service", `
	if scope != "" {
		a.challenge += `scope="` + scope + `", `
	}
	a.challenge += `error="` + e.code + `", error_description="` + e.description + `"`
	a.noStore = true
	a.body = appendError(a.body, e)
}

// appendError appends the JSON body of an error: {"error":..,"error_description":..}.
func appendError(b []byte, e *bearerError) []byte {
	b = append(b, `{"error":"`...)
	b = append(b, e.code...)
	b = append(b, `","error_description":"`...)
	b = append(b, e.description...)
	return append(b, `"}`...)
}

// write sends the answer.
func (a *apiAnswer) write(w http.ResponseWriter) {
	if a.notFound {
		notFound(w)
		return
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	if a.challenge != "" {
		h.Set("WWW-Authenticate", a.challenge)
	}
	if a.noStore {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// doActionLocked performs an action on a farm and appends the action body:
// {"action":..,"success":true,"message":..,"data":..}. s.mu must be held.
func (s *Server) doActionLocked(b []byte, act int, farmID int64, now time.Time) []byte {
	f := s.farms[farmID]
	if f == nil {
		f = &farm{}
		s.farms[farmID] = f
	}
	if y, m, d := now.Date(); f.eggDay != y*10000+int(m)*100+d {
		f.eggDay, f.eggs = y*10000+int(m)*100+d, 0
	}

	b = append(b, `{"action":"`...)
	b = append(b, actions[act].name...)
	b = append(b, `","success":true,"message":"`...)
	last := f.lastDone[act]
	if actions[act].again != "" && !last.IsZero() && now.Sub(last) < actionCooldown {
		b = append(b, actions[act].again...)
		return append(b, `","data":null}`...)
	}
	f.lastDone[act] = now

	switch act {
	case actEggsCollect:
		n := 2 + rand.IntN(4) // 2 to 5 eggs
		f.eggs += n
		b = append(b, "Hey look at that, "...)
		b = strconv.AppendInt(b, int64(n), 10)
		b = append(b, ` eggs have been collected!","data":`...)
		b = strconv.AppendInt(b, int64(n), 10)
		return append(b, '}')
	case actEggsCount:
		b = append(b, "You have collected a total of "...)
		b = strconv.AppendInt(b, int64(f.eggs), 10)
		b = append(b, ` eggs today","data":`...)
		b = strconv.AppendInt(b, int64(f.eggs), 10)
		return append(b, '}')
	default:
		b = append(b, actions[act].done...)
		return append(b, `","data":null}`...)
	}
}

// bearerToken finds the access token of a resource request as bshaffer's
// Bearer::getAccessTokenParameter does: in the Authorization header (RFC 6750
// §2.1), the access_token field of a form-encoded POST body (§2.2) or the
// access_token query parameter (§2.3). Using more than one is an error
// (RFC 6750 §2); "" and "0" count as absent, as PHP takes them for false.
func bearerToken(r *http.Request) (string, *bearerError) {
	header := r.Header.Get("Authorization")
	var query, form string
	if r.URL.RawQuery != "" {
		query = lastValue(r.URL.Query(), "access_token")
	}
	if r.Method == http.MethodPost && isFormEncoded(r.Header.Get("Content-Type")) {
		_ = r.ParseForm()
		form = lastValue(r.PostForm, "access_token")
	}
	used := 0
	for _, v := range [...]string{header, query, form} {
		if phpTruthy(v) {
			used++
		}
	}
	switch {
	case used > 1:
		return "", errTwoWays
	case used == 0:
		return "", errNoToken
	case phpTruthy(header):
		// Any Authorization header counts as a way, even one that
		// is not Bearer.
		if token, ok := parseBearerHeader(header); ok {
			return token, nil
		}
		return "", errMalformed
	case phpTruthy(form):
		return form, nil
	default:
		return query, nil
	}
}

// parseBearerHeader extracts the token from an Authorization header as
// bshaffer's regular expression /Bearer\s(\S+)/i does: the first
// case-insensitive "Bearer" anywhere in the header followed by one PCRE space
// and a non-space, then the run of non-spaces.
func parseBearerHeader(h string) (string, bool) {
	const scheme = "bearer"
	for i := 0; i+len(scheme)+2 <= len(h); i++ {
		if !asciiEqualFold(h[i:i+len(scheme)], scheme) {
			continue
		}
		j := i + len(scheme)
		if !isPCRESpace(h[j]) || isPCRESpace(h[j+1]) {
			continue
		}
		k := j + 1
		for k < len(h) && !isPCRESpace(h[k]) {
			k++
		}
		return h[j+1 : k], true
	}
	return "", false
}

// asciiEqualFold compares s with the lower-case ASCII word lower, ignoring
// ASCII case.
func asciiEqualFold(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != lower[i] && c+'a'-'A' != lower[i] {
			return false
		}
	}
	return true
}

// isPCRESpace reports whether PCRE's \s (of COOP's era) matches c.
func isPCRESpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'
}

// isFormEncoded reports whether a Content-Type is
// application/x-www-form-urlencoded, the only body PHP reads a POST token from
// here (RFC 6750 §2.2).
func isFormEncoded(contentType string) bool {
	mediaType, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mediaType), "application/x-www-form-urlencoded")
}
