package login

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/fakeclock"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/coop"
)

// farm is an emulated COOP on loopback with one farmer.
type farm struct {
	coop   *coop.Server
	srv    *httptest.Server
	clock  *fakeclock.Clock
	farmer coop.User
}

const farmerPassword = "cluck-cluck"

func newFarm(t *testing.T) *farm {
	clock := fakeclock.New(time.Date(2014, 6, 1, 8, 0, 0, 0, time.UTC))
	c := coop.New(coop.Options{Now: clock.Now})
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return &farm{coop: c, srv: srv, clock: clock, farmer: c.AddUser("brent@example.com", farmerPassword, "Brent", "Farmer")}
}

// config is a login of the application clientID, registered on the farm with
// the redirect URI registered, asking for eggs-count and profile.
func (f *farm) config(t *testing.T, clientID, redirect, registered string, style oauth2.AuthStyle) Config {
	app := f.coop.AddApp(f.farmer.ID, clientID, coop.AllScopes(), registered)
	return Config{
		OAuth: oauth2.Config{
			ClientID:     app.ClientID,
			ClientSecret: app.ClientSecret,
			Endpoint:     oauth2.Endpoint{AuthURL: f.srv.URL + "/authorize", TokenURL: f.srv.URL + "/token", AuthStyle: style},
			RedirectURL:  redirect,
			Scopes:       []string{"eggs-count", "profile"},
		},
		HTTPClient: f.srv.Client(),
		Timeout:    wait,
		Server:     "COOP",
	}
}

// TestLoginAgainstTheEmulator runs the whole flow in a test browser against
// the emulated COOP, through the loopback listener or the paste.
func TestLoginAgainstTheEmulator(t *testing.T) {
	tests := []struct {
		name      string
		clientID  string
		style     oauth2.AuthStyle
		paste     bool
		approve   bool
		late      bool                // the browser comes back after the code expired
		tamper    func(string) string // changes the redirected address
		check     func(*testing.T, *farm, outcome)
		exchanges int
	}{
		{name: "approval logs in", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, approve: true, check: wantLoggedIn, exchanges: 1},
		{name: "approval logs in by paste", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, paste: true, approve: true, check: wantLoggedIn, exchanges: 1},
		{name: "approval logs in with Basic credentials when the client id needs no escaping", clientID: "TopCluck", style: oauth2.AuthStyleInHeader, approve: true, check: wantLoggedIn, exchanges: 1},
		{
			name: "Basic credentials for a client id with an apostrophe fail as on COOP", clientID: "Brent's Top Cluck", style: oauth2.AuthStyleInHeader, approve: true,
			check: func(t *testing.T, _ *farm, o outcome) { wantAuthorizationError("invalid_client")(t, o.err) }, exchanges: 1,
		},
		{name: "denial is ErrDenied", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, approve: false, check: wantErr(ErrDenied)},
		{
			name: "a tampered state is refused before any exchange", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, approve: true,
			tamper: func(loc string) string { return replaceParam(loc, "state", "forged") }, check: wantErr(ErrStateMismatch),
		},
		{
			name: "a pasted address with another state is refused before any exchange", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, paste: true, approve: true,
			tamper: func(loc string) string { return replaceParam(loc, "state", "forged") }, check: wantErr(ErrStateMismatch),
		},
		{
			name: "an expired code is invalid_grant", clientID: "Top Cluck", style: oauth2.AuthStyleInParams, approve: true, late: true,
			check: func(t *testing.T, _ *farm, o outcome) { wantAuthorizationError("invalid_grant")(t, o.err) }, exchanges: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFarm(t)
			redirect := freeRedirectURI(t, "/callback")
			cfg := f.config(t, tt.clientID, redirect, redirect, tt.style)
			cfg.Paste = tt.paste
			in, typing := io.Pipe()
			defer typing.Close()
			cfg.In = in
			out := newOutRecorder()
			done := start(t.Context(), cfg, out)
			authURL := out.authURL(t)
			state := queryOf(t, authURL).Get("state")

			b := coop.NewBrowser(f.srv.URL, "brent@example.com", farmerPassword)
			loc, err := b.Decide(authURL, tt.approve)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(loc, redirect+"?") {
				t.Fatalf("COOP redirected to %q", loc)
			}
			code := queryOf(t, loc).Get("code")
			if tt.late {
				f.clock.Advance(31 * time.Second)
			}
			if tt.tamper != nil {
				loc = tt.tamper(loc)
			}
			if tt.paste {
				io.WriteString(typing, loc+"\n")
			} else {
				resp, page := get(t, b.Client, loc)
				if ok := resp.StatusCode == http.StatusOK; ok != strings.Contains(page, "You are logged in to coop-proxy") {
					t.Errorf("callback page %d %q", resp.StatusCode, page)
				}
			}
			o := await(t, done)
			tt.check(t, f, o)
			if got := f.coop.CountTokenRequests("authorization_code"); got != tt.exchanges {
				t.Errorf("%d authorization_code token requests, want %d", got, tt.exchanges)
			}
			secrets := []string{state, code}
			if o.res != nil {
				secrets = append(secrets, o.res.Token.AccessToken, o.res.Token.RefreshToken)
			}
			checkNoSecrets(t, o.err, out.String(), secrets...)
		})
	}
}

func wantErr(target error) func(*testing.T, *farm, outcome) {
	return func(t *testing.T, _ *farm, o outcome) { wantIs(target)(t, o.err) }
}

func wantLoggedIn(t *testing.T, f *farm, o outcome) {
	t.Helper()
	if o.err != nil {
		t.Fatal(o.err)
	}
	tok := o.res.Token
	if len(tok.AccessToken) != 40 || len(tok.RefreshToken) != 40 || tok.TokenType != "Bearer" {
		t.Errorf("token = %+v", tok)
	}
	if left := time.Until(tok.Expiry); left < 86000*time.Second || left > 86400*time.Second {
		t.Errorf("token expires in %s, want about 86400 s", left)
	}
	if strings.Join(o.res.Scopes, " ") != "eggs-count profile" {
		t.Errorf("scopes = %v", o.res.Scopes)
	}
	id, email, err := WhoAmI(t.Context(), f.srv.Client(), f.srv.URL, tok.AccessToken)
	if err != nil || id != f.farmer.ID || email != f.farmer.Email {
		t.Errorf("WhoAmI = %d, %q, %v; want %d, %q", id, email, err, f.farmer.ID, f.farmer.Email)
	}
}

// replaceParam sets one query parameter of a URL.
func replaceParam(raw, key, value string) string {
	u, _ := url.Parse(raw)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestLoginCOOPRefuses covers requests COOP answers with its own error page.
// The emulator, as COOP did, shows its login page to a browser not logged in
// before it looks at the client or the redirect URI, so the preflight (no
// cookies) sees the login page and lets the login go on; the farmer then
// meets the error page after logging in, nothing comes back, and the login
// ends in ErrTimeout, whose message names the cause.
func TestLoginCOOPRefuses(t *testing.T) {
	tests := []struct {
		name, registered, clientID, page string
	}{
		{"another redirect URI registered", "http://127.0.0.1:1/elsewhere", "Top Cluck", "The redirect URI provided is missing or does not match"},
		{"an unknown client id", "", "Nobody's App", "The client id supplied is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFarm(t)
			redirect := freeRedirectURI(t, "/callback")
			cfg := f.config(t, "Top Cluck", redirect, tt.registered, oauth2.AuthStyleInParams)
			cfg.OAuth.ClientID = tt.clientID
			cfg.Timeout = 200 * time.Millisecond
			out := newOutRecorder()
			done := start(t.Context(), cfg, out)

			_, err := coop.NewBrowser(f.srv.URL, "brent@example.com", farmerPassword).Decide(out.authURL(t), true)
			if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), tt.page) {
				t.Fatalf("after login COOP answered %v, want its 400 page", err)
			}
			o := await(t, done)
			if !errors.Is(o.err, ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", o.err)
			}
			if !strings.Contains(o.err.Error(), redirect) || !strings.Contains(o.err.Error(), "200ms") {
				t.Errorf("error %q", o.err)
			}
			if n := f.coop.CountTokenRequests(""); n != 0 {
				t.Errorf("%d token requests", n)
			}
		})
	}
}
