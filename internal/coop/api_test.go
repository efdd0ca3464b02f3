package coop

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// apiRequest describes a farm API request.
type apiRequest struct {
	method, path  string
	authorization string // the Authorization header, "" for none
	body          string // a body, sent with contentType
	contentType   string
}

func (f *fixture) send(t *testing.T, ar apiRequest) result {
	t.Helper()
	req, err := http.NewRequest(ar.method, f.ts.URL+ar.path, strings.NewReader(ar.body))
	if err != nil {
		t.Fatal(err)
	}
	if ar.authorization != "" {
		req.Header.Set("Authorization", ar.authorization)
	}
	if ar.contentType != "" {
		req.Header.Set("Content-Type", ar.contentType)
	}
	return f.do(t, req)
}

const form = "application/x-www-form-urlencoded"

func bearerBody(code, description string) string {
	return `{"error":"` + code + `","error_description":"` + description + `"}`
}

func challenge(scope, code, description string) string {
	if scope != "" {
		scope = `scope="` + scope + `", `
	}
	return `Bearer realm="Service", ` + scope + `error="` + code + `", error_description="` + description + `"`
}

const (
	descTwoWays      = "Only one method may be used to authenticate at a time (Auth header, GET or POST)"
	descMalformed    = "Malformed auth header"
	descInvalid      = "The access token provided is invalid"
	descExpired      = "The access token provided has expired"
	descInsufficient = "The request requires higher privileges than provided by the access token"
	bodyNoTokenJS    = `{"error":"access_denied","error_description":"an access token is required"}`
	bodyNotYourJS    = `{"error":"access_denied","error_message":"You do not have access to take this action on behalf of this user"}`
)

func TestFarmAPIFailureRows(t *testing.T) {
	for _, mode := range []struct {
		name     string
		intended bool
	}{{"as served", false}, {"intended statuses", true}} {
		t.Run(mode.name, func(t *testing.T) {
			f := newFixture(t, mode.intended)
			expired, _ := f.s.IssueToken(f.cron.ClientID, f.brent.ID, []string{"eggs-count"}, false)
			f.clock.Advance(86400*time.Second + time.Second)
			token := f.clientCredentials(t, f.cron, "") // eggs-collect eggs-count, Brent's farm
			served := func(intended int) int {
				if mode.intended {
					return intended
				}
				return http.StatusUnauthorized
			}
			for _, tc := range []struct {
				name      string
				req       apiRequest
				status    int
				challenge string // "" for no WWW-Authenticate
				body      string
			}{
				{"no token at all is a 200",
					apiRequest{method: "POST", path: "/api/1/eggs-count"},
					http.StatusOK, "", bodyNoTokenJS},
				{"header and query",
					apiRequest{method: "POST", path: "/api/1/eggs-count?access_token=" + token, authorization: "Bearer " + token},
					served(400), challenge("", "invalid_request", descTwoWays), bearerBody("invalid_request", descTwoWays)},
				{"header and form",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Bearer " + token, body: "access_token=" + token, contentType: form},
					served(400), challenge("", "invalid_request", descTwoWays), bearerBody("invalid_request", descTwoWays)},
				{"query and form",
					apiRequest{method: "POST", path: "/api/1/eggs-count?access_token=" + token, body: "access_token=" + token, contentType: form},
					served(400), challenge("", "invalid_request", descTwoWays), bearerBody("invalid_request", descTwoWays)},
				{"a Basic header counts as a way",
					apiRequest{method: "POST", path: "/api/1/eggs-count?access_token=" + token, authorization: "Basic YTpi"},
					served(400), challenge("", "invalid_request", descTwoWays), bearerBody("invalid_request", descTwoWays)},
				{"Basic header",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Basic YTpi"},
					served(400), challenge("", "invalid_request", descMalformed), bearerBody("invalid_request", descMalformed)},
				{"Bearer without a token",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Bearer"},
					served(400), challenge("", "invalid_request", descMalformed), bearerBody("invalid_request", descMalformed)},
				{"Bearer and two spaces",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Bearer  " + token},
					served(400), challenge("", "invalid_request", descMalformed), bearerBody("invalid_request", descMalformed)},
				{"unknown token",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Bearer " + strings.Repeat("0", 40)},
					401, challenge("", "invalid_token", descInvalid), bearerBody("invalid_token", descInvalid)},
				{"unknown token on another farm: the token first",
					apiRequest{method: "POST", path: "/api/2/eggs-count", authorization: "Bearer nope"},
					401, challenge("", "invalid_token", descInvalid), bearerBody("invalid_token", descInvalid)},
				{"expired token",
					apiRequest{method: "POST", path: "/api/1/eggs-count", authorization: "Bearer " + expired},
					401, challenge("", "invalid_token", descExpired), bearerBody("invalid_token", descExpired)},
				{"scope lacking",
					apiRequest{method: "POST", path: "/api/1/barn-unlock", authorization: "Bearer " + token},
					served(403), challenge("barn-unlock", "insufficient_scope", descInsufficient), bearerBody("insufficient_scope", descInsufficient)},
				{"scope lacking on another farm: the scope first",
					apiRequest{method: "POST", path: "/api/2/barn-unlock", authorization: "Bearer " + token},
					served(403), challenge("barn-unlock", "insufficient_scope", descInsufficient), bearerBody("insufficient_scope", descInsufficient)},
				{"unknown action asks its name as scope",
					apiRequest{method: "POST", path: "/api/1/dance", authorization: "Bearer " + token},
					served(403), challenge("dance", "insufficient_scope", descInsufficient), bearerBody("insufficient_scope", descInsufficient)},
				{"profile lacking for /api/me",
					apiRequest{method: "GET", path: "/api/me", authorization: "Bearer " + token},
					served(403), challenge("profile", "insufficient_scope", descInsufficient), bearerBody("insufficient_scope", descInsufficient)},
				{"another user's farm",
					apiRequest{method: "POST", path: "/api/2/eggs-count", authorization: "Bearer " + token},
					401, "", bodyNotYourJS},
				{"unknown farm",
					apiRequest{method: "POST", path: "/api/99/eggs-collect", authorization: "Bearer " + token},
					401, "", bodyNotYourJS},
				{"farm id not a number",
					apiRequest{method: "POST", path: "/api/brent/eggs-count", authorization: "Bearer " + token},
					401, "", bodyNotYourJS},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := f.send(t, tc.req)
					if r.status != tc.status || r.body != tc.body {
						t.Errorf("got %d %s\nwant %d %s", r.status, r.body, tc.status, tc.body)
					}
					if got := r.header.Get("WWW-Authenticate"); got != tc.challenge {
						t.Errorf("WWW-Authenticate %q\nwant %q", got, tc.challenge)
					}
					if got := r.header.Get("Content-Type"); got != "application/json" {
						t.Errorf("Content-Type %q", got)
					}
				})
			}
		})
	}
}

func TestTokenAcceptedInEachPlace(t *testing.T) {
	f := newFixture(t, false)
	token := f.clientCredentials(t, f.cron, "")
	for _, tc := range []struct {
		name string
		req  apiRequest
		ok   bool // else answered as no token at all
	}{
		{"Bearer header", apiRequest{authorization: "Bearer " + token}, true},
		{"scheme in any case", apiRequest{authorization: "bEaReR " + token}, true},
		{"tab after the scheme", apiRequest{authorization: "Bearer\t" + token}, true},
		{"Bearer anywhere in the header", apiRequest{authorization: "Token Bearer " + token + " extra"}, true},
		{"query parameter", apiRequest{path: "?access_token=" + token}, true},
		{"form field", apiRequest{body: "access_token=" + token, contentType: form}, true},
		{"form field, charset given", apiRequest{body: "a=1&access_token=" + token, contentType: form + "; charset=UTF-8"}, true},
		{"empty query parameter is no way", apiRequest{path: "?access_token=", authorization: "Bearer " + token}, true},
		{`"0" is no way either`, apiRequest{path: "?access_token=0", authorization: "Bearer " + token}, true},
		{"JSON body is not read", apiRequest{body: `{"access_token":"` + token + `"}`, contentType: "application/json"}, false},
		{"form field without the form content type", apiRequest{body: "access_token=" + token, contentType: "text/plain"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.method, tc.req.path = "POST", "/api/1/eggs-count"+tc.req.path
			r := f.send(t, tc.req)
			if got := strings.Contains(r.body, `"action":"eggs-count"`); r.status != http.StatusOK || got != tc.ok {
				t.Errorf("%d %s", r.status, r.body)
			}
		})
	}
}

func actionBody(action, message, data string) string {
	return `{"action":"` + action + `","success":true,"message":"` + message + `","data":` + data + `}`
}

func TestActionsAndTheTwentySecondRule(t *testing.T) {
	f := newFixture(t, false)
	brent, _ := f.s.IssueToken(f.plain.ClientID, f.brent.ID, AllScopes(), false)
	alice, _ := f.s.IssueToken(f.plain.ClientID, f.alice.ID, AllScopes(), false)
	for _, tc := range []struct{ action, done, again string }{
		{"barn-unlock", "You just unlocked your barn! Watch out for strangers!", "The barn is already wide open! Let's throw a party!"},
		{"toiletseat-down", "You just put the toilet seat down. You're a wonderful roommate!", "Yea, the toilet seat is already down... you slob!"},
		{"chickens-feed", "Your chickens are now full and happy", "You just fed them! Do you want them to explode??"},
	} {
		t.Run(tc.action, func(t *testing.T) {
			done, again := actionBody(tc.action, tc.done, "null"), actionBody(tc.action, tc.again, "null")
			steps := []struct {
				advance time.Duration
				token   string
				farm    int
				want    string
			}{
				{0, brent, 1, done},
				{0, brent, 1, again},
				{0, alice, 2, done}, // another farm has its own rule
				{19 * time.Second, brent, 1, again},
				{time.Second, brent, 1, done}, // 20 s after it was done
				{10 * time.Second, brent, 1, again},
				{10 * time.Second, brent, 1, done}, // a repeat does not restart the 20 s
			}
			for i, st := range steps {
				f.clock.Advance(st.advance)
				r := f.api(t, http.MethodPost, fmt.Sprintf("/api/%d/%s", st.farm, tc.action), st.token)
				if r.status != http.StatusOK || r.body != st.want || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("step %d: %d %s\nwant %s", i, r.status, r.body, st.want)
				}
			}
		})
	}
}

var collected = regexp.MustCompile(`^\{"action":"eggs-collect","success":true,"message":"Hey look at that, ([2-5]) eggs have been collected!","data":([2-5])\}$`)

// collect collects eggs on a farm and returns how many.
func (f *fixture) collect(t *testing.T, token string, farm int64) int {
	t.Helper()
	r := f.api(t, http.MethodPost, fmt.Sprintf("/api/%d/eggs-collect", farm), token)
	m := collected.FindStringSubmatch(r.body)
	if r.status != http.StatusOK || m == nil || m[1] != m[2] {
		t.Fatalf("eggs-collect: %d %s", r.status, r.body)
	}
	return int(m[1][0] - '0')
}

func countBody(n int) string {
	return actionBody("eggs-count", fmt.Sprintf("You have collected a total of %d eggs today", n), fmt.Sprint(n))
}

func TestEggsAreCountedPerFarmPerDay(t *testing.T) {
	f := newFixture(t, false)
	brent, _ := f.s.IssueToken(f.plain.ClientID, f.brent.ID, AllScopes(), false)
	alice, _ := f.s.IssueToken(f.plain.ClientID, f.alice.ID, AllScopes(), false)

	total, seen := 0, map[int]bool{}
	for range 200 {
		n := f.collect(t, brent, f.brent.ID)
		total += n
		seen[n] = true
		again := f.api(t, http.MethodPost, "/api/1/eggs-collect", brent)
		if want := actionBody("eggs-collect", "Hey, give the ladies a break. Makin' eggs ain't easy!", "null"); again.body != want {
			t.Fatalf("within 20 s: %s\nwant %s", again.body, want)
		}
		f.clock.Advance(20 * time.Second) // 200 × 20 s stays within the day
	}
	if len(seen) != 4 {
		t.Errorf("eggs collected at a time: %v, want each of 2 to 5", seen)
	}
	for range 2 { // eggs-count has no 20-second rule
		if r := f.api(t, http.MethodPost, "/api/1/eggs-count", brent); r.body != countBody(total) {
			t.Errorf("Brent's count: %s, want %s", r.body, countBody(total))
		}
	}
	if r := f.api(t, http.MethodPost, "/api/2/eggs-count", alice); r.body != countBody(0) {
		t.Errorf("Alice's count: %s", r.body)
	}
	aliceEggs := f.collect(t, alice, f.alice.ID)
	if r := f.api(t, http.MethodPost, "/api/2/eggs-count", alice); r.body != countBody(aliceEggs) {
		t.Errorf("Alice's count: %s, want %d", r.body, aliceEggs)
	}

	f.clock.Advance(24 * time.Hour)
	brent, _ = f.s.IssueToken(f.plain.ClientID, f.brent.ID, AllScopes(), false)
	if r := f.api(t, http.MethodPost, "/api/1/eggs-count", brent); r.body != countBody(0) {
		t.Errorf("next day: %s", r.body)
	}
	n := f.collect(t, brent, f.brent.ID)
	if r := f.api(t, http.MethodPost, "/api/1/eggs-count", brent); r.body != countBody(n) {
		t.Errorf("next day after collecting %d: %s", n, r.body)
	}
}

func TestAPIMeReturnsTheTokensUser(t *testing.T) {
	f := newFixture(t, false)
	for _, u := range []User{f.brent, f.alice} {
		token, _ := f.s.IssueToken(f.topCluck.ClientID, u.ID, []string{"profile"}, false)
		r := f.api(t, http.MethodGet, "/api/me", token)
		want := fmt.Sprintf(`{"id":%d,"email":%q,"firstName":%q,"lastName":%q}`, u.ID, u.Email, u.FirstName, u.LastName)
		if r.status != http.StatusOK || r.body != want {
			t.Errorf("/api/me: %d %s, want %s", r.status, r.body, want)
		}
	}
}

func TestAPIMethods(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/api/1/eggs-count", "POST"},
		{"POST", "/api/me", "GET, HEAD"},
	} {
		r := f.api(t, tc.method, tc.path, "")
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"))
		}
	}
}

// bearerRE is the regular expression COOP's library matched the header with.
var bearerRE = regexp.MustCompile(`(?i)Bearer[ \t\n\f\r]([^ \t\n\f\r]+)`)

func FuzzParseBearerHeader(f *testing.F) {
	for _, seed := range []string{
		"Bearer abc", "bearer  abc", "Basic YTpi", "Bearer", "Bearer ", "xBeArEr\tabc def",
		"Bearer\x00", "BEARER é", "Bearer Bearer x", "Bearer \xff\xfe", "bearebearer a",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		token, ok := parseBearerHeader(h)
		m := bearerRE.FindStringSubmatch(h)
		if ok != (m != nil) || (ok && token != m[1]) {
			t.Errorf("parseBearerHeader(%q) = %q, %t; the library's expression finds %q", h, token, ok, m)
		}
	})
}
