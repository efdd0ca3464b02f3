package tokensource

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// The credentials the grants below send; no test output may carry them.
const (
	testSecret  = "s3cr3t-Hunter2" // short: only its exact value gives it away
	testRefresh = "r3fr3sh-Tok3n"
)

func tokenServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func ccGrant(tokenURL string, client *http.Client, style oauth2.AuthStyle) *ClientCredentials {
	return &ClientCredentials{Client: client, Config: &clientcredentials.Config{
		ClientID: "Brent's Lazy CRON Job", ClientSecret: testSecret, TokenURL: tokenURL, AuthStyle: style,
	}}
}

func refreshGrant(tokenURL string, client *http.Client) *Refresh {
	return &Refresh{Client: client, Config: &oauth2.Config{
		ClientID: "Brent's Lazy CRON Job", ClientSecret: testSecret,
		Endpoint: oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
	}}
}

// fetchBoth asks the token endpoint at tokenURL with each grant, the refresh
// grant sending testRefresh.
func fetchBoth(t *testing.T, tokenURL string, client *http.Client) map[string]error {
	t.Helper()
	errs := map[string]error{}
	for name, g := range map[string]Grant{
		"client credentials, secret in the form":   ccGrant(tokenURL, client, oauth2.AuthStyleInParams),
		"client credentials, secret in the header": ccGrant(tokenURL, client, oauth2.AuthStyleInHeader),
		"refresh": refreshGrant(tokenURL, client),
	} {
		rec, err := g.Fetch(context.Background(), tokenstore.Record{RefreshToken: testRefresh}, true)
		if err == nil {
			t.Fatalf("%s: got a token %q, want an error", name, rec.AccessToken)
		}
		errs[name] = err
	}
	return errs
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var te *Error
	if !errors.As(err, &te) {
		t.Fatalf("%v (%T) is not a *Error", err, err)
	}
	return te
}

func TestTokenEndpointRedirectsAreNeverFollowed(t *testing.T) {
	var canaryHits atomic.Int32
	canary := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		canaryHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"stolen","token_type":"Bearer","expires_in":3600}`)
	})
	canaryURL, _ := url.Parse(canary.URL)
	endpoint := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, canary.URL+"/token?next=query-secret", http.StatusTemporaryRedirect)
	})
	for client, c := range map[string]*http.Client{
		"no client given":       nil,
		"a client that follows": {},
		"NewHTTPClient":         NewHTTPClient(time.Minute),
	} {
		for grant, err := range fetchBoth(t, endpoint.URL, c) {
			te := asError(t, err)
			if te.Code != Unavailable || !strings.Contains(te.Description, "HTTP 307") || !strings.Contains(te.Description, canaryURL.Host) {
				t.Errorf("%s, %s: %v; want %s naming HTTP 307 and %s", client, grant, err, Unavailable, canaryURL.Host)
			}
			if strings.Contains(te.Error(), "query-secret") {
				t.Errorf("%s, %s: the redirect's query is printed: %v", client, grant, err)
			}
		}
	}
	if n := canaryHits.Load(); n != 0 {
		t.Fatalf("the host the redirect named received %d requests", n)
	}
}

// echoForm answers with everything the client sent, as a careless or hostile
// token endpoint might: the form (client_secret, refresh_token) and the
// Authorization header, decoded and encoded.
func echoForm(r *http.Request) []string {
	_ = r.ParseForm()
	echo := []string{r.PostForm.Encode(), r.Header.Get("Authorization")}
	for _, vs := range r.PostForm {
		echo = append(echo, vs...)
	}
	if user, pass, ok := r.BasicAuth(); ok {
		echo = append(echo, user, pass)
	}
	return echo
}

func TestTokenEndpointTextNeverReachesErrorsOrLogs(t *testing.T) {
	answers := map[string]http.HandlerFunc{
		"400, the form as the error code": func(w http.ResponseWriter, r *http.Request) {
			echo := echoForm(r)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": echo[0], "error_description": strings.Join(echo, " "), "echo": echo})
		},
		"400 invalid_client, the form as the description": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": "invalid_client", "error_description": "bad: " + strings.Join(echoForm(r), " ")})
		},
		"200 invalid_grant, the form as the description": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"error": "invalid_grant", "error_description": strings.Join(echoForm(r), " ")})
		},
		"500, the form as a text body": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(500)
			_, _ = io.WriteString(w, strings.Join(echoForm(r), "\n"))
		},
		"400, the form as a form body": func(w http.ResponseWriter, r *http.Request) {
			echo := echoForm(r)
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, url.Values{"error": {echo[0]}, "error_description": {strings.Join(echo, " ")}}.Encode())
		},
		"200, the form as a broken JSON body": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, "{"+strings.Join(echoForm(r), " "))
		},
	}
	for answer, h := range answers {
		endpoint := tokenServer(t, h)
		for grant, err := range fetchBoth(t, endpoint.URL, nil) {
			te := asError(t, err)
			var logged bytes.Buffer
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logged), zap.DebugLevel))
			log.Error("no token", zap.Error(err))
			outputs := map[string]string{
				"Error()":     err.Error(),
				"Description": te.Description,
				"%v":          fmt.Sprintf("%v", err),
				"%+v":         fmt.Sprintf("%+v", err),
				"zap.Error":   logged.String(),
			}
			for i, e := 0, errors.Unwrap(err); e != nil; i, e = i+1, errors.Unwrap(e) {
				outputs[fmt.Sprintf("Error() of cause %d (%T)", i, e)] = e.Error()
			}
			for what, out := range outputs {
				for _, secret := range []string{testSecret, testRefresh, url.QueryEscape(testSecret)} {
					if strings.Contains(out, secret) {
						t.Errorf("%s, %s: %s carries %q: %s", answer, grant, what, secret, out)
					}
				}
			}
		}
	}
}

func TestA200WithoutAUsableTokenIsNotUnreachable(t *testing.T) {
	for name, body := range map[string]string{
		"not JSON":         "<html>hello</html>",
		"no access_token":  `{"token_type":"Bearer"}`,
		"truncated answer": `{"access_token":"abc`,
	} {
		endpoint := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		})
		for grant, err := range fetchBoth(t, endpoint.URL, nil) {
			te := asError(t, err)
			if te.Code != Unavailable || !strings.Contains(te.Description, "HTTP 2xx without a usable token") || strings.Contains(te.Description, "could not be reached") {
				t.Errorf("%s, %s: %v; want %s saying the endpoint answered HTTP 2xx without a usable token", name, grant, err, Unavailable)
			}
		}
	}
}

// returnsSoon fails the test when f has not returned within a bound far
// above any scheduling delay; f waiting on a fetch would never return.
func returnsSoon(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s waited for the token fetch in flight", what)
	}
}

func TestNothingWaitsForAHangingTokenEndpoint(t *testing.T) {
	entered, cancelled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once sync.Once
	endpoint := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm() // the server notices a closed connection only once the body is read
		once.Do(func() { close(entered) })
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes: cleanups run last first

	stored := &Stored{Grant: ccGrant(endpoint.URL, nil, oauth2.AuthStyleInParams), Store: newMemStore(), Margin: 5 * time.Minute, Log: zap.NewNop()}
	c := &Cache{Source: stored, Margin: 5 * time.Minute, Backoff: Backoff{Min: time.Second, Max: time.Minute}}
	t.Cleanup(c.Close)
	c.Prefetch()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch never reached the token endpoint")
	}
	// What /readyz, /metrics and the maintenance loop call.
	returnsSoon(t, "Durable", func() { stored.Durable() })
	returnsSoon(t, "Flush", func() {
		if err := stored.Flush(context.Background()); err != nil {
			t.Errorf("Flush: %v", err)
		}
	})
	returnsSoon(t, "LastError", func() { c.LastError() })
	returnsSoon(t, "Current", func() { c.Current() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	returnsSoon(t, "Token with a cancelled context", func() { _, _ = c.Token(ctx) })
	// Shutdown: Close cancels the request itself.
	returnsSoon(t, "Close", c.Close)
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the token endpoint never saw the request cancelled")
	}
}

// The token client went through HTTP_PROXY/HTTPS_PROXY (http.DefaultTransport),
// so the client secret, refresh tokens and login codes were sent to
// whatever proxy the environment named (in clear text to an http:// COOP),
// while the API transport talks to COOP directly (proxy.NewTransport).
func TestTheTokenClientUsesNoProxyFromTheEnvironment(t *testing.T) {
	at, ok := NewHTTPClient(time.Minute).Transport.(answerTransport)
	if !ok {
		t.Fatalf("transport %T, want answerTransport", NewHTTPClient(time.Minute).Transport)
	}
	tr, ok := at.base.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T: http.DefaultTransport reads HTTP_PROXY", at.base)
	}
	if tr.Proxy != nil {
		t.Fatal("the token client's transport has a Proxy function")
	}
}
