package login

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestRunRefusesRedirectURIsThatAreNotLoopback(t *testing.T) {
	tests := []struct {
		name, uri, mention string
	}{
		{"localhost", "http://localhost:8085/callback", "use 127.0.0.1"},
		{"LOCALHOST in capitals", "http://LOCALHOST:8085/callback", "use 127.0.0.1"},
		{"https", "https://127.0.0.1:8085/callback", "http://"},
		{"no port", "http://127.0.0.1/callback", "port"},
		{"port 0", "http://127.0.0.1:0/callback", "port"},
		{"port out of range", "http://127.0.0.1:70000/callback", "port"},
		{"public host", "http://coop.apps.knpuniversity.com:8085/callback", "loopback"},
		{"other loopback address", "http://127.0.0.2:8085/callback", "loopback"},
		{"query", "http://127.0.0.1:8085/callback?x=1", "query"},
		{"fragment", "http://127.0.0.1:8085/callback#x", "fragment"},
		{"empty", "", "http://"},
		{"custom scheme", "com.example.coop:/callback", "http://"},
		{"not a URL", "http://127.0.0.1:8085/%zz", "not a URL"},
		{"a password, not shown", "http://farmer:hunter2@127.0.0.1:8085/callback", "user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := newOutRecorder()
			cfg := Config{OAuth: oauth2.Config{ClientID: "c", RedirectURL: tt.uri}, Out: out}
			_, err := Run(t.Context(), cfg)
			if !errors.Is(err, ErrBadRedirectURI) {
				t.Fatalf("err = %v, want ErrBadRedirectURI", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q reveals the password", err)
			}
			if out.String() != "" {
				t.Errorf("printed %q before refusing", out.String())
			}
		})
	}
}

func TestParseRedirectURIAcceptsLoopbackLiterals(t *testing.T) {
	for _, uri := range []string{"http://127.0.0.1:8085/callback", "http://[::1]:8085/callback", "http://127.0.0.1:8085"} {
		if _, err := parseRedirectURI(uri); err != nil {
			t.Errorf("%s: %v", uri, err)
		}
	}
}

func TestRunReportsThePortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	stub := newStubCOOP(t)
	cfg := stub.config("http://" + busy.Addr().String() + "/callback")
	_, err = Run(t.Context(), cfg)
	var le *ListenError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *ListenError", err)
	}
	if le.Addr != busy.Addr().String() || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Errorf("ListenError names %q (%q), want %s", le.Addr, err, busy.Addr())
	}
}

// runUnanswered runs a login against stub that no browser ever answers
// (nothing is pasted either), with a 50 ms timeout; it also returns the
// redirect URI used and what the login printed.
func runUnanswered(t *testing.T, stub *stubCOOP, paste bool) (outcome, string, *outRecorder) {
	t.Helper()
	redirect := freeRedirectURI(t, "/callback")
	cfg := stub.config(redirect)
	cfg.Timeout = 50 * time.Millisecond
	cfg.Paste = paste
	in, never := io.Pipe()
	t.Cleanup(func() { never.Close() })
	cfg.In = in
	out := newOutRecorder()
	return await(t, start(t.Context(), cfg, out)), redirect, out
}

func TestRunTimesOutWhenNoAnswerComes(t *testing.T) {
	for _, paste := range []bool{false, true} {
		name := map[bool]string{false: "listener", true: "paste"}[paste]
		t.Run(name, func(t *testing.T) {
			o, redirect, out := runUnanswered(t, newStubCOOP(t), paste)
			if !errors.Is(o.err, ErrTimeout) {
				t.Fatalf("err = %v, want ErrTimeout", o.err)
			}
			for _, want := range []string{"50ms", redirect, "The redirect URI provided is missing or does not match"} {
				if !strings.Contains(o.err.Error(), want) {
					t.Errorf("error %q does not mention %q", o.err, want)
				}
			}
			state := queryOf(t, out.authURL(t)).Get("state")
			checkNoSecrets(t, o.err, out.String(), state)
		})
	}
}

func TestRunStopsWhenContextIsCancelled(t *testing.T) {
	stub := newStubCOOP(t)
	cfg := stub.config(freeRedirectURI(t, "/callback"))
	ctx, cancel := context.WithCancel(t.Context())
	out := newOutRecorder()
	done := start(ctx, cfg, out)
	out.authURL(t)
	cancel()
	if o := await(t, done); !errors.Is(o.err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", o.err)
	}
}

// TestRunSendsPKCEAndExchangesTheCode drives the listener flow against a stub
// COOP that records what reaches its token endpoint.
func TestRunSendsPKCEAndExchangesTheCode(t *testing.T) {
	stub := newStubCOOP(t)
	redirect := freeRedirectURI(t, "/callback")
	cfg := stub.config(redirect)
	opened := make(chan string, 1)
	cfg.OpenBrowser = func(u string) error { opened <- u; return nil }
	out := newOutRecorder()
	done := start(t.Context(), cfg, out)

	var authURL string
	select {
	case authURL = <-opened:
	case <-time.After(wait):
		t.Fatal("OpenBrowser not called")
	}
	if printed := out.authURL(t); printed != authURL {
		t.Errorf("printed %q, opened %q", printed, authURL)
	}
	q := queryOf(t, authURL)
	state := q.Get("state")
	if len(state) < 22 { // 128 bits in base64url
		t.Errorf("state %q is shorter than 128 bits", state)
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorization URL lacks PKCE S256: %v", q)
	}
	if q.Get("redirect_uri") != redirect || q.Get("response_type") != "code" || q.Get("scope") != "eggs-count profile" {
		t.Errorf("authorization URL query = %v", q)
	}

	browser := noRedirects(nil)
	if resp, _ := get(t, browser, strings.TrimSuffix(redirect, "/callback")+"/favicon.ico"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another path answered %d, want 404", resp.StatusCode)
	}
	resp, page := get(t, browser, redirect+"?code=c0dec0dec0de&state="+url.QueryEscape(state))
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "You are logged in to coop-proxy") {
		t.Errorf("callback page %d %q", resp.StatusCode, page)
	}
	o := await(t, done)
	if o.err != nil {
		t.Fatal(o.err)
	}

	form := <-stub.forms
	verifier := form.Get("code_verifier")
	if verifier == "" || oauth2.S256ChallengeFromVerifier(verifier) != q.Get("code_challenge") {
		t.Errorf("code_verifier %q does not match the challenge", verifier)
	}
	if form.Get("code") != "c0dec0dec0de" || form.Get("redirect_uri") != redirect || form.Get("grant_type") != "authorization_code" {
		t.Errorf("token request form = %v", form)
	}
	if o.res.Token.AccessToken != "834401f20deb9ba7ee94615b5ceedf1aba2187f1" || o.res.Token.RefreshToken == "" || o.res.Token.Expiry.IsZero() {
		t.Errorf("token = %+v", o.res.Token)
	}
	if strings.Join(o.res.Scopes, " ") != "eggs-count profile" {
		t.Errorf("scopes = %v", o.res.Scopes)
	}
	checkNoSecrets(t, nil, out.String(), state, verifier, "c0dec0dec0de", o.res.Token.AccessToken, o.res.Token.RefreshToken)

	if _, err := net.Dial("tcp", strings.TrimPrefix(strings.TrimSuffix(redirect, "/callback"), "http://")); err == nil {
		t.Error("the listener is still open after the login")
	}
}

// TestRunHandlesTheAuthorizationResponse covers what the redirect can carry,
// and what the token endpoint can answer, through the listener.
func TestRunHandlesTheAuthorizationResponse(t *testing.T) {
	const code = "5ecre7c0de5ecre7c0de"
	tests := []struct {
		name      string
		query     func(state string) string
		token     func(w http.ResponseWriter, r *http.Request) // nil: the stub's success
		check     func(t *testing.T, err error)
		exchanges int
	}{
		{
			name: "denial is ErrDenied",
			query: func(s string) string {
				return "error=access_denied&error_description=The+user+denied+access&state=" + s
			},
			check: wantIs(ErrDenied),
		},
		{
			name: "another error is an AuthorizationError",
			query: func(s string) string {
				return "error=invalid_scope&error_description=The+scope+requested+is+invalid&state=" + s
			},
			check: wantAuthorizationError("invalid_scope"),
		},
		{
			name:  "an error with another state is a state mismatch",
			query: func(string) string { return "error=access_denied&state=forged" },
			check: wantIs(ErrStateMismatch),
		},
		{
			name:  "a code with another state is not exchanged",
			query: func(string) string { return "code=" + code + "&state=forged" },
			check: wantIs(ErrStateMismatch),
		},
		{
			name:  "a code without state is not exchanged",
			query: func(string) string { return "code=" + code },
			check: wantIs(ErrStateMismatch),
		},
		{
			name:  "a code with two states is not exchanged",
			query: func(s string) string { return "code=" + code + "&state=" + s + "&state=" + s },
			check: wantIs(ErrStateMismatch),
		},
		{
			name:  "neither code nor error",
			query: func(s string) string { return "state=" + s },
			check: wantAuthorizationError("invalid_request"),
		},
		{
			name:  "an expired code is invalid_grant",
			query: func(s string) string { return "code=" + code + "&state=" + s },
			token: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				w.Write([]byte(`{"error":"invalid_grant","error_description":"The authorization code has expired"}`))
			},
			check:     wantAuthorizationError("invalid_grant"),
			exchanges: 1,
		},
		{
			name:  "a token endpoint failing without an OAuth error leaves its body out",
			query: func(s string) string { return "code=" + code + "&state=" + s },
			token: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
				w.Write([]byte("<html>stack trace with " + code + "</html>"))
			},
			check: func(t *testing.T, err error) {
				wantAuthorizationError("")(t, err)
				if !strings.Contains(err.Error(), "500") || strings.Contains(err.Error(), "stack trace") {
					t.Errorf("error %q", err)
				}
			},
			exchanges: 1,
		},
		{
			name:  "a token endpoint echoing the form in its error is not repeated",
			query: func(s string) string { return "code=" + code + "&state=" + s },
			token: func(w http.ResponseWriter, r *http.Request) {
				echo := r.PostForm.Get("client_secret") + " " + r.PostForm.Get("code")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, `{"error":%q,"error_description":"bad secret=%s"}`, echo, url.QueryEscape(echo))
			},
			check:     wantAuthorizationError(""),
			exchanges: 1,
		},
		{
			name:  "a token endpoint's redirect is not followed nor repeated",
			query: func(s string) string { return "code=" + code + "&state=" + s },
			token: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://127.0.0.1:1/steal?secret="+r.PostForm.Get("client_secret"), http.StatusTemporaryRedirect)
			},
			check: func(t *testing.T, err error) {
				if err == nil {
					t.Fatal("no error")
				}
			},
			exchanges: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := newStubCOOP(t)
			if tt.token != nil {
				stub.token = tt.token
			}
			redirect := freeRedirectURI(t, "/cb")
			out := newOutRecorder()
			done := start(t.Context(), stub.config(redirect), out)
			state := queryOf(t, out.authURL(t)).Get("state")

			resp, page := get(t, noRedirects(nil), redirect+"?"+tt.query(url.QueryEscape(state)))
			o := await(t, done)
			tt.check(t, o.err)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "The login to coop-proxy failed") {
				t.Errorf("callback page %d %q", resp.StatusCode, page)
			}
			if got := len(stub.forms); got != tt.exchanges {
				t.Errorf("%d token requests, want %d", got, tt.exchanges)
			}
			checkNoSecrets(t, o.err, out.String(), state, code, stub.config("").OAuth.ClientSecret)
			if strings.Contains(page, code) || strings.Contains(page, state) {
				t.Errorf("page reveals a secret: %q", page)
			}
		})
	}
}

func wantIs(target error) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("err = %v, want %v", err, target)
		}
	}
}

func wantAuthorizationError(code string) func(*testing.T, error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ae *AuthorizationError
		if !errors.As(err, &ae) {
			t.Fatalf("err = %v, want *AuthorizationError", err)
		}
		if ae.Code != code {
			t.Errorf("Code = %q, want %q", ae.Code, code)
		}
	}
}

func TestCallbackHandlerAnswersOnlyTheFirstCallback(t *testing.T) {
	callbacks := make(chan callback, 1)
	done := make(chan struct{})
	h := &callbackHandler{path: "/cb", callbacks: callbacks, done: done}

	first := make(chan *httptest.ResponseRecorder)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/cb?code=x&state=y", nil))
		first <- rec
	}()
	var cb callback
	select {
	case cb = <-callbacks:
	case <-time.After(wait):
		t.Fatal("first callback not handed over")
	}
	if cb.query.Get("code") != "x" {
		t.Errorf("query = %v", cb.query)
	}

	tests := []struct {
		name, method, target string
		status               int
		body                 string
	}{
		{"a second callback is told the login is done", http.MethodGet, "/cb?code=z&state=y", http.StatusOK, "already done"},
		{"another path is not found", http.MethodGet, "/other", http.StatusNotFound, "not found"},
		{"a POST is not allowed", http.MethodPost, "/cb", http.StatusMethodNotAllowed, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), tt.body) {
				t.Errorf("answered %d %q", rec.Code, rec.Body.String())
			}
		})
	}

	cb.reply <- nil
	select {
	case rec := <-first:
		if !strings.Contains(rec.Body.String(), "You are logged in to coop-proxy") || rec.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("first callback answered %v %q", rec.Header(), rec.Body.String())
		}
	case <-time.After(wait):
		t.Fatal("first callback not answered")
	}
}

func TestCallbackHandlerTellsTheBrowserWhenRunStoppedWaiting(t *testing.T) {
	callbacks := make(chan callback, 1)
	done := make(chan struct{})
	h := &callbackHandler{path: "/cb", callbacks: callbacks, done: done}
	close(done)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/cb?code=x&state=y", nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "stopped waiting") {
		t.Errorf("answered %d %q", rec.Code, rec.Body.String())
	}
}

func TestRunNotesABrowserThatDidNotOpen(t *testing.T) {
	stub := newStubCOOP(t)
	redirect := freeRedirectURI(t, "/callback")
	cfg := stub.config(redirect)
	cfg.OpenBrowser = func(u string) error { return errors.New("cannot open " + u) }
	out := newOutRecorder()
	done := start(t.Context(), cfg, out)
	state := queryOf(t, out.authURL(t)).Get("state")
	get(t, noRedirects(nil), redirect+"?error=access_denied&state="+url.QueryEscape(state))
	o := await(t, done)
	if !errors.Is(o.err, ErrDenied) {
		t.Fatalf("err = %v, want ErrDenied", o.err)
	}
	if !strings.Contains(out.String(), "Could not open a browser") {
		t.Errorf("Out = %q", out.String())
	}
	checkNoSecrets(t, o.err, out.String(), state)
}

func TestPreflightCatchesCOOPsErrorPage(t *testing.T) {
	errorPage := func(msg string) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte("<html><body><h1>Error</h1><p>" + msg + "</p></body></html>"))
		}
	}
	tests := []struct {
		name      string
		authorize func(http.ResponseWriter, *http.Request)
		want      string // ConsentPageError.Message; "" = the login goes on
		advice    string
	}{
		{"unknown client", errorPage("The client id supplied is invalid"), "The client id supplied is invalid", "check the client id"},
		{"mismatching redirect URI", errorPage("The redirect URI provided is missing or does not match"), "The redirect URI provided is missing or does not match", "register exactly"},
		{"no redirect URI", errorPage("No redirect URI was supplied or stored"), "No redirect URI was supplied or stored", "register exactly"},
		{"another 400 page", errorPage("Something else"), "", ""},
		{"a redirect", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/login", http.StatusFound)
		}, "", ""},
		{"a server error", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "The client id supplied is invalid", http.StatusInternalServerError)
		}, "", ""},
	}
	for _, tt := range tests {
		for _, paste := range []bool{false, true} {
			t.Run(tt.name+map[bool]string{false: " (listener)", true: " (paste)"}[paste], func(t *testing.T) {
				stub := newStubCOOP(t)
				stub.authorize = tt.authorize
				o, redirect, out := runUnanswered(t, stub, paste)
				if tt.want == "" {
					if !errors.Is(o.err, ErrTimeout) {
						t.Fatalf("err = %v, want the login to go on to ErrTimeout", o.err)
					}
					return
				}
				var ce *ConsentPageError
				if !errors.As(o.err, &ce) {
					t.Fatalf("err = %v, want *ConsentPageError", o.err)
				}
				if ce.Message != tt.want || !strings.Contains(o.err.Error(), tt.advice) {
					t.Errorf("error %q, Message %q", o.err, ce.Message)
				}
				if tt.advice == "register exactly" && !strings.Contains(o.err.Error(), redirect) {
					t.Errorf("error %q does not name the redirect URI", o.err)
				}
				if out.String() != "" {
					t.Errorf("printed %q before the preflight failed", out.String())
				}
			})
		}
	}
}

func TestPreflightSendsNoCookies(t *testing.T) {
	stub := newStubCOOP(t)
	cookies := make(chan int, 1)
	stub.authorize = func(w http.ResponseWriter, r *http.Request) {
		cookies <- len(r.Cookies())
		w.Write([]byte("login page"))
	}
	redirect := freeRedirectURI(t, "/callback")
	cfg := stub.config(redirect)
	jar := &fixedJar{}
	cfg.HTTPClient = &http.Client{Jar: jar}
	cfg.Timeout = 50 * time.Millisecond
	o := await(t, start(t.Context(), cfg, newOutRecorder()))
	if !errors.Is(o.err, ErrTimeout) {
		t.Fatalf("err = %v", o.err)
	}
	if n := <-cookies; n != 0 {
		t.Errorf("preflight sent %d cookies", n)
	}
}

// fixedJar always offers a session cookie.
type fixedJar struct{}

func (*fixedJar) SetCookies(*url.URL, []*http.Cookie) {}
func (*fixedJar) Cookies(*url.URL) []*http.Cookie {
	return []*http.Cookie{{Name: "session", Value: "farmer"}}
}

func TestErrorsAreOneLine(t *testing.T) {
	errs := []error{
		ErrDenied, ErrStateMismatch, ErrTimeout, ErrBadRedirectURI, ErrBadPaste,
		&AuthorizationError{Code: "invalid_grant", Description: "The authorization code\nhas expired"},
		&ListenError{Addr: "127.0.0.1:8085", Err: errors.New("bind: address already in use")},
		&ConsentPageError{Message: "The client id supplied is invalid", ClientID: "TopCluck", RedirectURI: "http://127.0.0.1:8085/cb"},
		&APIError{Status: 401, Code: "invalid_token", Description: "The access token provided is invalid"},
	}
	for _, err := range errs {
		if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
			t.Errorf("%T: %q", err, msg)
		}
	}
}

// TestCallbackPageTellsTheFarmerWhatHappened reads the callback pages as the
// farmer sees them: a title and a heading that say how the login went, the
// reason as a sentence, and where to look next.
func TestCallbackPageTellsTheFarmerWhatHappened(t *testing.T) {
	tests := []struct {
		name   string
		result error
		status int
		want   []string
	}{
		{"approved", nil, http.StatusOK, []string{
			"<title>coop-proxy: logged in</title>", "<h1>You are logged in to coop-proxy</h1>",
			"The terminal where you ran the login", "You can close this tab.",
		}},
		{"denied", ErrDenied, http.StatusBadRequest, []string{
			"<title>coop-proxy: login failed</title>", "<h1>The login to coop-proxy failed</h1>",
			"<p>Login refused on COOP (&#34;get me out of here!&#34;): nothing was saved;", "You can close this tab.",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callbacks := make(chan callback, 1)
			h := &callbackHandler{path: "/cb", callbacks: callbacks, done: make(chan struct{})}
			go func() { (<-callbacks).reply <- tt.result }()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/cb?code=x&state=y", nil))
			for _, want := range tt.want {
				if rec.Code != tt.status || !strings.Contains(rec.Body.String(), want) {
					t.Errorf("answered %d without %q:\n%s", rec.Code, want, rec.Body.String())
				}
			}
		})
	}
}
