package coop

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/fakeclock"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

func newFakeClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2024, time.March, 5, 10, 0, 0, 0, time.UTC))
}

// fixture is a COOP with two farmers and four applications, served over
// HTTP.
type fixture struct {
	s     *Server
	ts    *httptest.Server
	clock *fakeclock.Clock

	brent, alice User
	// cron: Brent's client-credentials job, a client id with special
	// characters, no redirect URI.
	cron App
	// topCluck: Alice's web app, all scopes, a registered redirect URI.
	topCluck App
	// plain: Brent's app with a plain client id.
	plain App
	// lonely: Alice's app with neither a redirect URI nor scopes.
	lonely App
}

const topCluckRedirect = "http://localhost:9000/coop/oauth/handle"

func newFixture(t *testing.T, intended bool) *fixture {
	t.Helper()
	f := &fixture{clock: newFakeClock()}
	f.s = New(Options{Now: f.clock.Now, IntendedStatuses: intended, Logf: t.Logf})
	f.brent = f.s.AddUser("brent@example.com", "brent-pass", "Brent", "Farmer")
	f.alice = f.s.AddUser("alice@example.com", "alice-pass", "Alice", "Hen")
	f.cron = f.s.AddApp(f.brent.ID, "Brent's Lazy CRON Job", []string{"eggs-collect", "eggs-count"}, "")
	f.topCluck = f.s.AddApp(f.alice.ID, "Top Cluck", AllScopes(), topCluckRedirect)
	f.plain = f.s.AddApp(f.brent.ID, "plain_app", []string{"barn-unlock", "chickens-feed", "profile"}, "")
	f.lonely = f.s.AddApp(f.alice.ID, "Lonely App", nil, "")
	f.ts = httptest.NewServer(f.s)
	t.Cleanup(f.ts.Close)
	return f
}

// result is an HTTP answer, read whole.
type result struct {
	status int
	header http.Header
	body   string
}

// json decodes the body as a JSON object.
func (r result) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", r.body, err)
	}
	return m
}

// do sends req to the fixture's server without following redirects.
func (f *fixture) do(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := noRedirects(nil).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s %s: %v", req.Method, req.URL, err)
	}
	return result{resp.StatusCode, resp.Header, string(body)}
}

// noRedirects returns a client that shows redirects instead of following
// them.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// token posts a form to /token, with HTTP Basic credentials when basic is a
// user and a password (sent as they are, not URL-encoded).
func (f *fixture) token(t *testing.T, form url.Values, basic ...string) result {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.ts.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return f.do(t, req)
}

// clientCredentials gets a client-credentials token for app, with scope
// when not "".
func (f *fixture) clientCredentials(t *testing.T, app App, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {app.ClientID}, "client_secret": {app.ClientSecret}}
	if scope != "" {
		form.Set("scope", scope)
	}
	r := f.token(t, form)
	if r.status != http.StatusOK {
		t.Fatalf("client credentials for %q: %d %s", app.ClientID, r.status, r.body)
	}
	return r.json(t)["access_token"].(string)
}

// api sends an API request with the token as a Bearer header, when not "".
func (f *fixture) api(t *testing.T, method, path, token string) result {
	t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return f.do(t, req)
}

// stored counts the codes, access tokens and refresh tokens COOP holds.
func (f *fixture) stored() (codes, access, refresh int) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	return len(f.s.codes), len(f.s.access), len(f.s.refresh)
}

var hex40 = regexp.MustCompile(`^[0-9a-f]{40}$`)

func TestAllScopesListsTheSixScopesInOrder(t *testing.T) {
	want := []string{"barn-unlock", "toiletseat-down", "chickens-feed", "eggs-collect", "eggs-count", "profile"}
	got := AllScopes()
	if !slices.Equal(got, want) {
		t.Fatalf("AllScopes() = %v, want %v", got, want)
	}
	got[0] = "changed"
	if AllScopes()[0] != "barn-unlock" {
		t.Fatal("AllScopes returned its own storage")
	}
}

func TestAddUserNumbersUsersFromOne(t *testing.T) {
	s := New(Options{})
	for i, email := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		u := s.AddUser(email, "pw", "First", "Last")
		if u.ID != int64(i+1) || u.Email != email {
			t.Errorf("user %d = %+v", i, u)
		}
	}
}

func TestAddAppGeneratesA32HexSecret(t *testing.T) {
	s := New(Options{})
	scopes := []string{"profile"}
	a := s.AddApp(1, "app", scopes, "http://x/cb")
	b := s.AddApp(1, "other", nil, "")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a.ClientSecret) {
		t.Errorf("secret %q is not 32 hex characters", a.ClientSecret)
	}
	if a.ClientSecret == b.ClientSecret {
		t.Error("two applications got the same secret")
	}
	if a.ClientID != "app" || a.OwnerID != 1 || a.RedirectURI != "http://x/cb" || !slices.Equal(a.Scopes, scopes) {
		t.Errorf("AddApp returned %+v", a)
	}
}

func TestNewAppliesCOOPDefaults(t *testing.T) {
	s := New(Options{})
	if s.accessLifetime != 86400*time.Second || s.refreshLifetime != 14*24*time.Hour || s.codeLifetime != 30*time.Second {
		t.Errorf("lifetimes %v %v %v", s.accessLifetime, s.refreshLifetime, s.codeLifetime)
	}
	s = New(Options{AccessTokenLifetime: time.Minute})
	if s.accessLifetime != time.Minute {
		t.Errorf("access lifetime %v, want 1m", s.accessLifetime)
	}
}

func TestIssueTokenGivesWorkingTokens(t *testing.T) {
	f := newFixture(t, false)
	access, refresh := f.s.IssueToken(f.plain.ClientID, f.brent.ID, []string{"profile"}, true)
	if !hex40.MatchString(access) || !hex40.MatchString(refresh) {
		t.Fatalf("tokens %q %q are not 40 hex characters", access, refresh)
	}
	if r := f.api(t, http.MethodGet, "/api/me", access); r.status != http.StatusOK {
		t.Errorf("/api/me with an issued token: %d %s", r.status, r.body)
	}
	r := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
		"client_id": {f.plain.ClientID}, "client_secret": {f.plain.ClientSecret}})
	if r.status != http.StatusOK {
		t.Errorf("refreshing an issued refresh token: %d %s", r.status, r.body)
	}
	if _, refresh := f.s.IssueToken(f.plain.ClientID, f.brent.ID, nil, false); refresh != "" {
		t.Errorf("refresh token %q issued without withRefresh", refresh)
	}
}

func TestTokenRequestsAreRecordedInOrder(t *testing.T) {
	f := newFixture(t, false)
	f.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {f.cron.ClientID}, "client_secret": {f.cron.ClientSecret}})
	f.clock.Advance(time.Second)
	f.token(t, url.Values{"grant_type": {"client_credentials"}}, f.plain.ClientID, "wrong")
	f.token(t, url.Values{"grant_type": {"refresh_token"}, "client_id": {f.plain.ClientID}, "client_secret": {f.plain.ClientSecret}})
	f.api(t, http.MethodGet, "/token", "") // not a token request

	start := newFakeClock().Now()
	want := []TokenRequest{
		{At: start, GrantType: "client_credentials", ClientID: f.cron.ClientID, Status: 200},
		{At: start.Add(time.Second), GrantType: "client_credentials", ClientID: f.plain.ClientID, AuthInBasic: true, Status: 400, ErrorCode: "invalid_client"},
		{At: start.Add(time.Second), GrantType: "refresh_token", ClientID: f.plain.ClientID, Status: 400, ErrorCode: "invalid_request"},
	}
	if got := f.s.TokenRequests(); !slices.Equal(got, want) {
		t.Errorf("TokenRequests() =\n%+v\nwant\n%+v", got, want)
	}
	for grantType, n := range map[string]int{"": 3, "client_credentials": 2, "refresh_token": 1, "authorization_code": 0} {
		if got := f.s.CountTokenRequests(grantType); got != n {
			t.Errorf("CountTokenRequests(%q) = %d, want %d", grantType, got, n)
		}
	}
}

func TestAPIRequestsAreRecordedWithoutTheToken(t *testing.T) {
	f := newFixture(t, false)
	token := f.clientCredentials(t, f.cron, "")
	f.api(t, http.MethodPost, "/api/1/eggs-count", token)
	f.api(t, http.MethodPost, "/api/2/eggs-count", "")
	f.api(t, http.MethodGet, "/api/1/eggs-count", token)

	got := f.s.APIRequests()
	want := []APIRequest{
		{At: f.clock.Now(), Method: "POST", Path: "/api/1/eggs-count", Status: 200, TokenFingerprint: redact.Fingerprint(token)},
		{At: f.clock.Now(), Method: "POST", Path: "/api/2/eggs-count", Status: 200},
		{At: f.clock.Now(), Method: "GET", Path: "/api/1/eggs-count", Status: 405},
	}
	if !slices.Equal(got, want) {
		t.Errorf("APIRequests() =\n%+v\nwant\n%+v", got, want)
	}
	if fp := got[0].TokenFingerprint; !strings.HasPrefix(fp, "sha256:") || strings.Contains(token, strings.TrimPrefix(fp, "sha256:")) {
		t.Errorf("fingerprint %q should be a sha256 prefix, not part of the token", fp)
	}
}

func TestAPIRequestsKeepsTheLast10000(t *testing.T) {
	s := New(Options{})
	for i := range apiLogSize + 4 {
		req := httptest.NewRequest(http.MethodPost, "/api/1/eggs-count", nil)
		s.ServeHTTP(httptest.NewRecorder(), req)
		if i == 4 {
			// the sixth of apiLogSize+5 requests: the oldest kept
			req = httptest.NewRequest(http.MethodGet, "/api/me", nil)
			s.ServeHTTP(httptest.NewRecorder(), req)
		}
	}
	got := s.APIRequests()
	if len(got) != apiLogSize {
		t.Fatalf("%d requests kept, want %d", len(got), apiLogSize)
	}
	if got[0].Path != "/api/me" {
		t.Errorf("oldest kept is %+v, want the sixth request (GET /api/me)", got[0])
	}
	if got[len(got)-1].Path != "/api/1/eggs-count" {
		t.Errorf("newest is %+v", got[len(got)-1])
	}
}

func TestUnknownPathsAre404AndHomeIsServed(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 200},
		{"POST", "/", 405},
		{"GET", "/nowhere", 404},
		{"GET", "/api/", 404},
		{"POST", "/api/1", 404},
		{"POST", "/api/1/eggs-count/more", 404},
		{"GET", "/authorize/other", 404},
	} {
		r := f.api(t, tc.method, tc.path, "")
		if r.status != tc.status || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("%s %s: %d %s, want %d and an HTML page", tc.method, tc.path, r.status, r.header.Get("Content-Type"), tc.status)
		}
	}
}

func BenchmarkEggsCount(b *testing.B) {
	s := New(Options{})
	u := s.AddUser("brent@example.com", "pw", "Brent", "Farmer")
	access, _ := s.IssueToken("bench", u.ID, []string{"eggs-count"}, false)
	req := httptest.NewRequest(http.MethodPost, "/api/1/eggs-count", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

func TestRegenerateSecretRetiresTheOldOne(t *testing.T) {
	s := New(Options{})
	owner := s.AddUser("brent@example.com", "pw", "Brent", "Farmer")
	app := s.AddApp(owner.ID, "TopCluck", AllScopes(), "")
	secret, ok := s.RegenerateSecret("TopCluck")
	if !ok || secret == app.ClientSecret || len(secret) != 32 {
		t.Fatalf("RegenerateSecret = %q, %v", secret, ok)
	}
	if _, ok := s.RegenerateSecret("nobody"); ok {
		t.Fatal("an unknown client got a secret")
	}
	for _, tt := range []struct {
		secret string
		status int
	}{{app.ClientSecret, 400}, {secret, 200}} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/token", strings.NewReader(url.Values{
			"grant_type": {"client_credentials"}, "client_id": {"TopCluck"}, "client_secret": {tt.secret}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		s.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Fatalf("secret %s: %d %s", tt.secret[:4], rec.Code, rec.Body)
		}
	}
}
