package coop

import (
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// browser is a user agent with a cookie jar that does not follow redirects,
// so each step of the flow can be checked.
type browser struct {
	f *fixture
	c *http.Client
}

func (f *fixture) browser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{f, noRedirects(jar)}
}

// get fetches a path (or a URL) of COOP.
func (b *browser) get(t *testing.T, path string) result {
	t.Helper()
	if strings.HasPrefix(path, "/") {
		path = b.f.ts.URL + path
	}
	req, err := http.NewRequest(http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

func (b *browser) do(t *testing.T, req *http.Request) result {
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, string(body)}
}

// login posts the login form.
func (b *browser) login(t *testing.T, email, password, returnTo string) result {
	t.Helper()
	form := url.Values{"email": {email}, "password": {password}, "return_to": {returnTo}}
	req, err := http.NewRequest(http.MethodPost, b.f.ts.URL+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(t, req)
}

// as logs the browser in as u.
func (b *browser) as(t *testing.T, u User) *browser {
	t.Helper()
	if r := b.login(t, u.Email, u.Password, "/"); r.status != http.StatusSeeOther {
		t.Fatalf("login as %s: %d %s", u.Email, r.status, r.body)
	}
	return b
}

// link returns the href of the page's <a> link with the given text.
func link(t *testing.T, page, text string) string {
	t.Helper()
	m := regexp.MustCompile(`<a href="([^"]*)">` + regexp.QuoteMeta(text) + `</a>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no link %q in page:\n%s", text, page)
	}
	return html.UnescapeString(m[1])
}

// returnTo returns the return URL a login page carries.
func returnTo(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`<input type="hidden" name="return_to" value="([^"]*)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no return_to in page:\n%s", page)
	}
	return html.UnescapeString(m[1])
}

// decide opens the consent page for q, follows the approve or deny link and
// returns where COOP redirects the browser.
func (b *browser) decide(t *testing.T, q url.Values, approve bool) *url.URL {
	t.Helper()
	page := b.get(t, "/authorize?"+q.Encode())
	if page.status != http.StatusOK || !strings.Contains(page.body, "Welcome, chicken owner!") {
		t.Fatalf("consent page: %d %s", page.status, page.body)
	}
	text := "get me out of here!"
	if approve {
		text = "Yes, I Authorize This Request"
	}
	r := b.get(t, link(t, page.body, text))
	if r.status != http.StatusFound {
		t.Fatalf("decision: %d %s", r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// code gets an authorization code of Top Cluck for u, with the query
// parameters given ("" leaves one out).
func (f *fixture) code(t *testing.T, u User, scope, redirectURI string) string {
	t.Helper()
	loc := f.browser(t).as(t, u).decide(t, authQuery("code", f.topCluck.ClientID, redirectURI, scope, "xyz"), true)
	code := loc.Query().Get("code")
	if !hex40.MatchString(code) {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// authQuery builds an authorization request's query; "" leaves a parameter
// out.
func authQuery(responseType, clientID, redirectURI, scope, state string) url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"response_type": responseType, "client_id": clientID, "redirect_uri": redirectURI, "scope": scope, "state": state} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return q
}

func TestLoginPageThenBackToTheAuthorizationRequest(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t)
	path := "/authorize?" + authQuery("code", f.topCluck.ClientID, topCluckRedirect, "eggs-count", "s1").Encode()

	page := b.get(t, path)
	if page.status != http.StatusOK {
		t.Fatalf("login page status %d", page.status)
	}
	for _, want := range []string{`action="/login"`, `name="email"`, `name="password"`, `>Login!</button>`} {
		if !strings.Contains(page.body, want) {
			t.Errorf("login page lacks %s:\n%s", want, page.body)
		}
	}
	if got := returnTo(t, page.body); got != path {
		t.Errorf("return_to %q, want %q", got, path)
	}

	wrong := b.login(t, f.brent.Email, "nope", path)
	if wrong.status != http.StatusOK || !strings.Contains(wrong.body, msgLoginFailed) || wrong.header.Get("Set-Cookie") != "" {
		t.Errorf("wrong password: %d, cookie %q, page:\n%s", wrong.status, wrong.header.Get("Set-Cookie"), wrong.body)
	}
	unknown := b.login(t, "nobody@example.com", "x", path)
	if unknown.status != http.StatusOK || !strings.Contains(unknown.body, msgLoginFailed) {
		t.Errorf("unknown email: %d:\n%s", unknown.status, unknown.body)
	}

	ok := b.login(t, f.brent.Email, f.brent.Password, path)
	if ok.status != http.StatusSeeOther || ok.header.Get("Location") != path {
		t.Fatalf("login: %d to %q, want 303 to %q", ok.status, ok.header.Get("Location"), path)
	}
	cookie := ok.header.Get("Set-Cookie")
	if !strings.HasPrefix(cookie, sessionCookie+"=") || !strings.Contains(cookie, "HttpOnly") {
		t.Errorf("session cookie %q", cookie)
	}
	if consent := b.get(t, ok.header.Get("Location")); !strings.Contains(consent.body, "Welcome, chicken owner!") {
		t.Errorf("after login: %d %s", consent.status, consent.body)
	}
}

func TestLoginReturnsOnlyToCOOPItself(t *testing.T) {
	f := newFixture(t, false)
	for _, returnTo := range []string{"http://evil.example/", "//evil.example/", `/\evil.example`, ""} {
		r := f.browser(t).login(t, f.brent.Email, f.brent.Password, returnTo)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
			t.Errorf("return_to %q: %d to %q, want 303 to /", returnTo, r.status, r.header.Get("Location"))
		}
	}
	if page := f.browser(t).get(t, "/login?return_to=%2Fauthorize"); returnTo(t, page.body) != "/authorize" {
		t.Errorf("GET /login keeps no local return_to:\n%s", page.body)
	}
}

func TestConsentPageShowsClientScopesAndLinks(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t).as(t, f.brent)
	q := authQuery("code", f.topCluck.ClientID, topCluckRedirect, "eggs-count profile", "s1")
	page := b.get(t, "/authorize?"+q.Encode())
	if page.status != http.StatusOK {
		t.Fatalf("status %d", page.status)
	}
	for _, want := range []string{
		`<title>Authorize "Top Cluck"</title>`,
		"Welcome, chicken owner!",
		"Get the Number of Eggs Collected Today",
		"Access Your Profile Data",
	} {
		if !strings.Contains(page.body, want) {
			t.Errorf("consent page lacks %q:\n%s", want, page.body)
		}
	}
	if strings.Contains(page.body, "Unlock the Barn") {
		t.Error("consent page lists a scope not requested")
	}
	for text, decision := range map[string]string{"Yes, I Authorize This Request": "1", "get me out of here!": "0"} {
		want := "/authorize/submit?" + q.Encode() + "&authorize=" + decision
		if got := link(t, page.body, text); got != want {
			t.Errorf("link %q = %q, want %q", text, got, want)
		}
	}
}

func TestConsentPageEscapesTheClientID(t *testing.T) {
	f := newFixture(t, false)
	f.s.AddApp(f.alice.ID, `<script>alert("hi")</script>`, []string{"profile"}, "http://x/cb")
	page := f.browser(t).as(t, f.brent).get(t, "/authorize?"+authQuery("code", `<script>alert("hi")</script>`, "", "", "").Encode())
	if strings.Contains(page.body, "<script>") || !strings.Contains(page.body, `Authorize "&lt;script&gt;alert(&#34;hi&#34;)&lt;/script&gt;"`) {
		t.Errorf("client id not escaped:\n%s", page.body)
	}
}

func TestApprovedCodeRedirectsWithCodeAndState(t *testing.T) {
	f := newFixture(t, false)
	loc := f.browser(t).as(t, f.brent).decide(t, authQuery("code", f.topCluck.ClientID, topCluckRedirect, "eggs-count profile", "s 1~"), true)
	code := loc.Query().Get("code")
	want := topCluckRedirect + "?code=" + code + "&state=s+1%7E"
	if loc.String() != want || !hex40.MatchString(code) {
		t.Fatalf("redirect %q, want %q", loc, want)
	}

	// The code acts for the logged-in user, Brent, not the app's owner.
	r := f.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {topCluckRedirect},
		"client_id": {f.topCluck.ClientID}, "client_secret": {f.topCluck.ClientSecret}})
	body := r.json(t)
	if r.status != http.StatusOK || body["scope"] != "eggs-count profile" || !hex40.MatchString(body["refresh_token"].(string)) {
		t.Fatalf("exchange: %d %s", r.status, r.body)
	}
	me := f.api(t, http.MethodGet, "/api/me", body["access_token"].(string))
	if me.body != `{"id":1,"email":"brent@example.com","firstName":"Brent","lastName":"Farmer"}` {
		t.Errorf("/api/me: %d %s", me.status, me.body)
	}
}

func TestApprovedCodeWithoutStateLeavesStateOut(t *testing.T) {
	f := newFixture(t, false)
	loc := f.browser(t).as(t, f.brent).decide(t, authQuery("code", f.topCluck.ClientID, "", "", ""), true)
	if loc.Query().Has("state") || loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), topCluckRedirect+"?code=") {
		t.Errorf("redirect %q", loc)
	}
}

func TestDeniedRedirectsWithAccessDenied(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		name, responseType, state, want string
	}{
		{"code with state", "code", "xyz", topCluckRedirect + "?error=access_denied&error_description=The+user+denied+access+to+your+application&state=xyz"},
		{"code without state", "code", "", topCluckRedirect + "?error=access_denied&error_description=The+user+denied+access+to+your+application"},
		{"implicit, in the query too", "token", "xyz", topCluckRedirect + "?error=access_denied&error_description=The+user+denied+access+to+your+application&state=xyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc := f.browser(t).as(t, f.brent).decide(t, authQuery(tc.responseType, f.topCluck.ClientID, "", "profile", tc.state), false)
			if loc.String() != tc.want {
				t.Errorf("redirect %q, want %q", loc, tc.want)
			}
		})
	}
	if codes, access, _ := f.stored(); codes+access != 0 {
		t.Errorf("%d codes and %d tokens issued on denial", codes, access)
	}
}

func TestImplicitGrantRedirectsWithTokenInFragment(t *testing.T) {
	f := newFixture(t, false)
	loc := f.browser(t).as(t, f.brent).decide(t, authQuery("token", f.topCluck.ClientID, topCluckRedirect, "eggs-count profile", "st"), true)
	frag, err := url.ParseQuery(loc.Fragment)
	if err != nil {
		t.Fatal(err)
	}
	access := frag.Get("access_token")
	want := "access_token=" + access + "&expires_in=86400&token_type=Bearer&scope=eggs-count+profile&state=st"
	if loc.RawQuery != "" || loc.EscapedFragment() != want || !hex40.MatchString(access) {
		t.Fatalf("redirect %q, want fragment %q", loc, want)
	}
	if r := f.api(t, http.MethodPost, "/api/1/eggs-count", access); r.status != http.StatusOK {
		t.Errorf("implicit token on Brent's farm: %d %s", r.status, r.body)
	}
	if _, _, refresh := f.stored(); refresh != 0 {
		t.Error("implicit grant issued a refresh token")
	}

	// Without a scope, the fragment has none.
	loc = f.browser(t).as(t, f.brent).decide(t, authQuery("token", f.topCluck.ClientID, "", "", ""), true)
	if strings.Contains(loc.Fragment, "scope") || strings.Contains(loc.Fragment, "state") {
		t.Errorf("fragment %q", loc.Fragment)
	}
}

func TestAuthorizeErrorsShownOnCOOPsPage(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t).as(t, f.brent)
	for _, tc := range []struct {
		name string
		q    url.Values
		msg  string
	}{
		{"missing client", authQuery("code", "", topCluckRedirect, "", "s"), msgBadClient},
		{"unknown client", authQuery("code", "Nobody's App", topCluckRedirect, "", "s"), msgBadClient},
		{"redirect URI differs", authQuery("code", f.topCluck.ClientID, topCluckRedirect+"/evil", "", "s"), msgRedirectURI},
		{"redirect URI differs in case", authQuery("code", f.topCluck.ClientID, strings.ToUpper(topCluckRedirect), "", "s"), msgRedirectURI},
		{"redirect URI with a fragment", authQuery("code", f.topCluck.ClientID, topCluckRedirect+"#x", "", "s"), msgRedirectURI},
		{"fragment, nothing registered", authQuery("code", f.lonely.ClientID, "http://x/cb#x", "", "s"), msgRedirectURI},
		{"none given, none registered", authQuery("code", f.lonely.ClientID, "", "", "s"), msgNoRedirectURI},
		{"bad client wins over bad response type", authQuery("dance", "Nobody's App", "", "", "s"), msgBadClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/authorize?", "/authorize/submit?authorize=1&"} {
				r := b.get(t, path+tc.q.Encode())
				if r.status != http.StatusBadRequest || r.header.Get("Location") != "" ||
					!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(r.body, tc.msg) {
					t.Errorf("%s: %d, Location %q, page:\n%s", path, r.status, r.header.Get("Location"), r.body)
				}
			}
		})
	}
}

func TestAuthorizeErrorsRedirectedToTheClient(t *testing.T) {
	f := newFixture(t, false)
	b := f.browser(t).as(t, f.brent)
	for _, tc := range []struct {
		name string
		q    url.Values
		want string
	}{
		{"bad response type", authQuery("dance", f.topCluck.ClientID, "", "", "s"),
			topCluckRedirect + "?error=invalid_request&error_description=Invalid+or+missing+response+type&state=s"},
		{"missing response type", authQuery("", f.topCluck.ClientID, topCluckRedirect, "", ""),
			topCluckRedirect + "?error=invalid_request&error_description=Invalid+or+missing+response+type"},
		{"scope not the app's", authQuery("code", f.cron.ClientID, "http://localhost/cron", "barn-unlock", "s"),
			"http://localhost/cron?error=invalid_scope&error_description=An+unsupported+scope+was+requested&state=s"},
		{"unknown scope, app without scopes", authQuery("token", f.lonely.ClientID, "http://x/cb?a=1", "dance", "s"),
			"http://x/cb?a=1&error=invalid_scope&error_description=An+unsupported+scope+was+requested&state=s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/authorize?", "/authorize/submit?authorize=1&"} {
				r := b.get(t, path+tc.q.Encode())
				if r.status != http.StatusFound || r.header.Get("Location") != tc.want {
					t.Errorf("%s: %d to %q, want 302 to %q", path, r.status, r.header.Get("Location"), tc.want)
				}
			}
		})
	}
}

func TestRegisteredRedirectURIUsedWhenNoneGiven(t *testing.T) {
	f := newFixture(t, false)
	code := f.code(t, f.brent, "profile", "")
	// No redirect_uri went to /authorize, so /token checks none.
	r := f.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code},
		"client_id": {f.topCluck.ClientID}, "client_secret": {f.topCluck.ClientSecret}})
	if r.status != http.StatusOK {
		t.Errorf("exchange without redirect_uri: %d %s", r.status, r.body)
	}
}

func TestAuthorizeAcceptsAnyRedirectURIWhenNoneRegistered(t *testing.T) {
	f := newFixture(t, false)
	loc := f.browser(t).as(t, f.alice).decide(t, authQuery("code", f.lonely.ClientID, "http://x/cb?keep=1", "", ""), true)
	if !strings.HasPrefix(loc.String(), "http://x/cb?keep=1&code=") {
		t.Errorf("redirect %q", loc)
	}
}

func TestSubmitNeedsTheLoggedInUser(t *testing.T) {
	f := newFixture(t, false)
	q := authQuery("code", f.topCluck.ClientID, topCluckRedirect, "profile", "s")
	r := f.browser(t).get(t, "/authorize/submit?"+q.Encode()+"&authorize=1")
	if r.status != http.StatusOK || r.header.Get("Location") != "" || returnTo(t, r.body) != "/authorize?"+q.Encode() {
		t.Errorf("submit without session: %d %q:\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if codes, _, _ := f.stored(); codes != 0 {
		t.Error("a code was issued without a logged-in user")
	}
}

func TestAuthorizeMethods(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct{ method, path, allow string }{
		{"POST", "/authorize", "GET, HEAD"},
		{"POST", "/authorize/submit", "GET, HEAD"},
		{"PUT", "/login", "GET, POST"},
	} {
		req, _ := http.NewRequest(tc.method, f.ts.URL+tc.path, nil)
		if r := f.do(t, req); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d, Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"))
		}
	}
}

func TestBuildURIKeepsQueryAndFragment(t *testing.T) {
	for _, tc := range []struct {
		uri        string
		inFragment bool
		want       string
	}{
		{"http://x/cb", false, "http://x/cb?k=v"},
		{"http://x/cb?a=1", false, "http://x/cb?a=1&k=v"},
		{"http://x/cb?a=1#f", false, "http://x/cb?a=1&k=v#f"},
		{"http://x/cb", true, "http://x/cb#k=v"},
		{"http://x/cb#f", true, "http://x/cb#f&k=v"},
		{"http://x/cb?a=1", true, "http://x/cb?a=1&#k=v"}, // the library's quirk
	} {
		if got := buildURI(tc.uri, []string{"k", "v"}, tc.inFragment); got != tc.want {
			t.Errorf("buildURI(%q, %t) = %q, want %q", tc.uri, tc.inFragment, got, tc.want)
		}
	}
}
