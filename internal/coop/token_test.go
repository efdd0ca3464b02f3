package coop

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// creds returns app's credentials as body parameters plus the given pairs.
func creds(app App, pairs ...string) url.Values {
	v := url.Values{"client_id": {app.ClientID}, "client_secret": {app.ClientSecret}}
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Set(pairs[i], pairs[i+1])
	}
	return v
}

// wantTokenError checks a token endpoint error: 400, JSON with exactly error
// and error_description, not cacheable.
func wantTokenError(t *testing.T, r result, code, description string) {
	t.Helper()
	if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/json" || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("status %d, Content-Type %q, Cache-Control %q; want 400, application/json, no-store",
			r.status, r.header.Get("Content-Type"), r.header.Get("Cache-Control"))
	}
	want := map[string]any{"error": code, "error_description": description}
	if got := r.json(t); !maps.Equal(got, want) {
		t.Errorf("body %s, want %v", r.body, want)
	}
}

// wantTokens checks a successful token response and returns its body.
func wantTokens(t *testing.T, r result, scope any, withRefresh bool) map[string]any {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"} {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	body := r.json(t)
	if !hex40.MatchString(body["access_token"].(string)) || body["expires_in"] != 86400.0 || body["token_type"] != "Bearer" {
		t.Errorf("body %s", r.body)
	}
	if sc, ok := body["scope"]; !ok || sc != scope {
		t.Errorf("scope %v (present %t), want %v", sc, ok, scope)
	}
	refresh, ok := body["refresh_token"].(string)
	if ok != withRefresh || (ok && !hex40.MatchString(refresh)) {
		t.Errorf("refresh_token %q (present %t), want present %t", refresh, ok, withRefresh)
	}
	return body
}

func TestTokenErrorRows(t *testing.T) {
	f := newFixture(t, false)
	code := f.code(t, f.brent, "eggs-count", topCluckRedirect)
	_, refresh := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	for _, tc := range []struct {
		name              string
		form              url.Values
		basic             []string
		code, description string
	}{
		{"no grant_type", creds(f.cron), nil,
			"invalid_request", "The grant type was not specified in the request"},
		{"empty grant_type", creds(f.cron, "grant_type", ""), nil,
			"invalid_request", "The grant type was not specified in the request"},
		{"unknown grant", creds(f.cron, "grant_type", "password"), nil,
			"unsupported_grant_type", `Grant type "password" not supported`},
		{"unknown grant named as sent", url.Values{"grant_type": {"implicit"}}, nil,
			"unsupported_grant_type", `Grant type "implicit" not supported`},
		{"no client credentials", url.Values{"grant_type": {"client_credentials"}}, nil,
			"invalid_client", "Client credentials were not found in the headers or body"},
		{"client_secret without client_id", url.Values{"grant_type": {"client_credentials"}, "client_secret": {f.cron.ClientSecret}}, nil,
			"invalid_client", "Client credentials were not found in the headers or body"},
		{"wrong secret", creds(f.cron, "grant_type", "client_credentials", "client_secret", "0123"), nil,
			"invalid_client", "The client credentials are invalid"},
		{"no secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {f.cron.ClientID}}, nil,
			"invalid_client", "The client credentials are invalid"},
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"Nobody"}, "client_secret": {"x"}}, nil,
			"invalid_client", "The client credentials are invalid"},
		{"wrong secret in Basic", url.Values{"grant_type": {"client_credentials"}}, []string{f.plain.ClientID, "wrong"},
			"invalid_client", "The client credentials are invalid"},
		{"Basic wins over the body", creds(f.plain, "grant_type", "client_credentials"), []string{f.plain.ClientID, "wrong"},
			"invalid_client", "The client credentials are invalid"},
		{"scope outside the application's", creds(f.cron, "grant_type", "client_credentials", "scope", "eggs-count barn-unlock"), nil,
			"invalid_scope", "The scope requested is invalid for this request"},
		{"scope with a doubled space", creds(f.cron, "grant_type", "client_credentials", "scope", "eggs-count  eggs-collect"), nil,
			"invalid_scope", "The scope requested is invalid for this request"},
		{"unknown scope, app without scopes", creds(f.lonely, "grant_type", "client_credentials", "scope", "dance"), nil,
			"invalid_scope", "An unsupported scope was requested"},
		{"no code", creds(f.topCluck, "grant_type", "authorization_code", "redirect_uri", topCluckRedirect), nil,
			"invalid_request", `Missing parameter: "code" is required`},
		{"unknown code", creds(f.topCluck, "grant_type", "authorization_code", "code", strings.Repeat("ab", 20), "redirect_uri", topCluckRedirect), nil,
			"invalid_grant", "Authorization code doesn't exist or is invalid for the client"},
		{"foreign code", creds(f.plain, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect), nil,
			"invalid_grant", "Authorization code doesn't exist or is invalid for the client"},
		{"redirect_uri differs", creds(f.topCluck, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect+"/x"), nil,
			"redirect_uri_mismatch", "The redirect URI is missing or do not match"},
		{"redirect_uri missing", creds(f.topCluck, "grant_type", "authorization_code", "code", code), nil,
			"redirect_uri_mismatch", "The redirect URI is missing or do not match"},
		{"scope wider than the code's", creds(f.topCluck, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect, "scope", "eggs-count profile"), nil,
			"invalid_scope", "The scope requested is invalid for this request"},
		{"no refresh_token", creds(f.topCluck, "grant_type", "refresh_token"), nil,
			"invalid_request", `Missing parameter: "refresh_token" is required`},
		{"unknown refresh token", creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", strings.Repeat("cd", 20)), nil,
			"invalid_grant", "Invalid refresh token"},
		{"foreign refresh token", creds(f.plain, "grant_type", "refresh_token", "refresh_token", refresh), nil,
			"invalid_grant", "refresh_token doesn't exist or is invalid for the client"},
		{"refresh scope wider than the grant's", creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", refresh, "scope", "profile eggs-count"), nil,
			"invalid_scope", "The scope requested is invalid for this request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantTokenError(t, f.token(t, tc.form, tc.basic...), tc.code, tc.description)
		})
	}

	// None of the failed attempts used up the code or the refresh token.
	wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect)), "eggs-count", true)
	wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", refresh)), "profile", true)
}

func TestClientCredentialsGrant(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		name  string
		app   App
		scope string
		want  any // the scope answered
	}{
		{"no scope gets all the application's", f.cron, "", "eggs-collect eggs-count"},
		{"a subset", f.cron, "eggs-count", "eggs-count"},
		{"the scope as sent", f.cron, "eggs-count eggs-collect", "eggs-count eggs-collect"},
		{"another application's scopes", f.plain, "", "barn-unlock chickens-feed profile"},
		{"app without scopes, none asked: null", f.lonely, "", nil},
		{"app without scopes may ask any of COOP's", f.lonely, "profile", "profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantTokens(t, f.token(t, creds(tc.app, "grant_type", "client_credentials", "scope", tc.scope)), tc.want, false)
		})
	}

	// The token acts for the application's owner, on their farm only.
	token := f.clientCredentials(t, f.cron, "")
	if r := f.api(t, http.MethodPost, "/api/1/eggs-collect", token); r.status != http.StatusOK {
		t.Errorf("owner's farm: %d %s", r.status, r.body)
	}
	if r := f.api(t, http.MethodPost, "/api/2/eggs-collect", token); r.status != http.StatusUnauthorized {
		t.Errorf("another farm: %d %s", r.status, r.body)
	}
}

func TestTokenScopeMayComeInTheQuery(t *testing.T) {
	f := newFixture(t, false)
	req, _ := http.NewRequest(http.MethodPost, f.ts.URL+"/token?scope=profile", strings.NewReader(creds(f.plain, "grant_type", "client_credentials").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	wantTokens(t, f.do(t, req), "profile", false)
}

func TestBasicCredentialsAreNotURLDecoded(t *testing.T) {
	f := newFixture(t, false)
	form := url.Values{"grant_type": {"client_credentials"}}
	for _, tc := range []struct {
		name  string
		form  url.Values
		basic []string
		ok    bool
	}{
		{"special id, form-encoded as RFC 6749 says", form, []string{url.QueryEscape(f.cron.ClientID), url.QueryEscape(f.cron.ClientSecret)}, false},
		{"special id, raw", form, []string{f.cron.ClientID, f.cron.ClientSecret}, true},
		{"special id in the body", creds(f.cron, "grant_type", "client_credentials"), nil, true},
		{"plain id, form-encoded", form, []string{url.QueryEscape(f.plain.ClientID), url.QueryEscape(f.plain.ClientSecret)}, true},
		{"plain id, raw", form, []string{f.plain.ClientID, f.plain.ClientSecret}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.token(t, tc.form, tc.basic...)
			if tc.ok {
				wantTokens(t, r, r.json(t)["scope"], false)
			} else {
				wantTokenError(t, r, "invalid_client", "The client credentials are invalid")
			}
		})
	}
}

func TestOAuth2LibraryAuthStyles(t *testing.T) {
	for _, tc := range []struct {
		name      string
		style     oauth2.AuthStyle
		ok        bool
		wantBasic []bool // AuthInBasic of each request COOP received
	}{
		{"in header fails for a special client id", oauth2.AuthStyleInHeader, false, []bool{true}},
		{"in params works", oauth2.AuthStyleInParams, true, []bool{false}},
		{"auto-detect retries in the body", oauth2.AuthStyleAutoDetect, true, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false)
			conf := clientcredentials.Config{
				ClientID:     f.cron.ClientID,
				ClientSecret: f.cron.ClientSecret,
				TokenURL:     f.ts.URL + "/token",
				AuthStyle:    tc.style,
			}
			tok, err := conf.Token(context.Background())
			var rerr *oauth2.RetrieveError
			switch {
			case tc.ok && err != nil:
				t.Fatalf("Token: %v", err)
			case tc.ok && (!hex40.MatchString(tok.AccessToken) || tok.Expiry.IsZero()):
				t.Errorf("token %+v", tok)
			case !tc.ok && (!errors.As(err, &rerr) || rerr.ErrorCode != "invalid_client"):
				t.Errorf("error %v, want invalid_client", err)
			}
			var basic []bool
			for _, r := range f.s.TokenRequests() {
				basic = append(basic, r.AuthInBasic)
			}
			if !slices.Equal(basic, tc.wantBasic) {
				t.Errorf("requests in Basic %v, want %v", basic, tc.wantBasic)
			}
		})
	}
}

func TestAuthorizationCodeIsSingleUse(t *testing.T) {
	f := newFixture(t, false)
	code := f.code(t, f.brent, "eggs-count", topCluckRedirect)
	form := creds(f.topCluck, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect)
	wantTokens(t, f.token(t, form), "eggs-count", true)
	wantTokenError(t, f.token(t, form), "invalid_grant", "Authorization code doesn't exist or is invalid for the client")
}

func TestAuthorizationCodeGrant(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		name            string
		scope, redirect string // sent to /authorize
		exchange        []string
		want            any
	}{
		{"scope of the code", "eggs-count profile", topCluckRedirect, []string{"redirect_uri", topCluckRedirect}, "eggs-count profile"},
		{"narrower scope", "eggs-count profile", topCluckRedirect, []string{"redirect_uri", topCluckRedirect, "scope", "profile"}, "profile"},
		{"no scope: null", "", topCluckRedirect, []string{"redirect_uri", topCluckRedirect}, nil},
		{"no scope in the code: any of the app's", "", topCluckRedirect, []string{"redirect_uri", topCluckRedirect, "scope", "barn-unlock"}, "barn-unlock"},
		{"redirect_uri compared URL-decoded", "profile", topCluckRedirect, []string{"redirect_uri", "http%3A%2F%2Flocalhost:9000/coop/oauth/handle"}, "profile"},
		{"no redirect_uri sent to /authorize: none checked", "profile", "", []string{"redirect_uri", "http://anything"}, "profile"},
		{"PKCE parameters accepted and ignored", "profile", topCluckRedirect,
			[]string{"redirect_uri", topCluckRedirect, "code_verifier", "not-the-right-one"}, "profile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code := f.code(t, f.brent, tc.scope, tc.redirect)
			form := creds(f.topCluck, append([]string{"grant_type", "authorization_code", "code", code}, tc.exchange...)...)
			wantTokens(t, f.token(t, form), tc.want, true)
		})
	}
}

func TestAuthorizationCodeExpiresAfter30Seconds(t *testing.T) {
	f := newFixture(t, false)
	fresh := f.code(t, f.brent, "profile", topCluckRedirect)
	old := f.code(t, f.brent, "profile", topCluckRedirect)
	f.clock.Advance(30 * time.Second)
	wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "authorization_code", "code", fresh, "redirect_uri", topCluckRedirect)), "profile", true)
	f.clock.Advance(time.Second)
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "authorization_code", "code", old, "redirect_uri", topCluckRedirect)),
		"invalid_grant", "The authorization code has expired")
}

func TestRefreshTokenRotates(t *testing.T) {
	f := newFixture(t, false)
	code := f.code(t, f.brent, "eggs-count profile", topCluckRedirect)
	first := wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "authorization_code", "code", code, "redirect_uri", topCluckRedirect)), "eggs-count profile", true)
	old := first["refresh_token"].(string)

	second := wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", old)), "eggs-count profile", true)
	next := second["refresh_token"].(string)
	if next == old || second["access_token"] == first["access_token"] {
		t.Fatal("refresh returned the same tokens")
	}
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", old)), "invalid_grant", "Invalid refresh token")

	// A narrower scope sticks to the new refresh token.
	third := wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", next, "scope", "profile")), "profile", true)
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", third["refresh_token"].(string), "scope", "eggs-count")),
		"invalid_scope", "The scope requested is invalid for this request")

	// The old access tokens still work: rotation deletes refresh tokens only.
	if r := f.api(t, http.MethodGet, "/api/me", first["access_token"].(string)); r.status != http.StatusOK {
		t.Errorf("first access token after refresh: %d %s", r.status, r.body)
	}
	if r := f.api(t, http.MethodGet, "/api/me", third["access_token"].(string)); !strings.Contains(r.body, `"id":1`) {
		t.Errorf("refreshed token acts for %s, want Brent", r.body)
	}
}

func TestRefreshTokenExpiresAfter14Days(t *testing.T) {
	f := newFixture(t, false)
	_, fresh := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	_, old := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	f.clock.Advance(14 * 24 * time.Hour)
	wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", fresh)), "profile", true)
	f.clock.Advance(time.Second)
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", old)), "invalid_grant", "Refresh token has expired")
}

func TestTokenEndpointMethods(t *testing.T) {
	f := newFixture(t, false)
	for _, tc := range []struct {
		method string
		status int
		allow  string
	}{
		{http.MethodGet, http.StatusNotFound, ""},
		{http.MethodPut, http.StatusMethodNotAllowed, "GET, POST"},
		{http.MethodDelete, http.StatusMethodNotAllowed, "GET, POST"},
	} {
		req, _ := http.NewRequest(tc.method, f.ts.URL+"/token?"+creds(f.cron, "grant_type", "client_credentials").Encode(), nil)
		r := f.do(t, req)
		if r.status != tc.status || r.header.Get("Allow") != tc.allow || strings.Contains(r.body, "access_token") {
			t.Errorf("%s /token: %d, Allow %q", tc.method, r.status, r.header.Get("Allow"))
		}
	}
	if n := f.s.CountTokenRequests(""); n != 0 {
		t.Errorf("%d token requests recorded, want 0", n)
	}
}

func TestPHPURLDecode(t *testing.T) {
	for in, want := range map[string]string{
		"a+b%20c":    "a b c",
		"http%3A%2F": "http:/",
		"100%":       "100%",
		"%zz%4":      "%zz%4",
		"%41%42":     "AB",
	} {
		if got := phpURLDecode(in); got != want {
			t.Errorf("phpURLDecode(%q) = %q, want %q", in, got, want)
		}
	}
}
