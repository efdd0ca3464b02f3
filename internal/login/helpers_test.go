package login

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// wait bounds every wait on a channel in these tests.
const wait = 10 * time.Second

// freeRedirectURI returns a loopback redirect URI on a port free right now.
func freeRedirectURI(t *testing.T, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + path
}

// outRecorder is a Config.Out that a test can read while Run runs.
type outRecorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes chan string
}

func newOutRecorder() *outRecorder { return &outRecorder{writes: make(chan string, 100)} }

func (o *outRecorder) Write(p []byte) (int, error) {
	o.mu.Lock()
	o.buf.Write(p)
	o.mu.Unlock()
	select {
	case o.writes <- string(p):
	default:
	}
	return len(p), nil
}

func (o *outRecorder) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

var authURLLine = regexp.MustCompile(`Open this address in a browser to log in to COOP: (\S+)`)

// authURL waits for Run to print the authorization URL.
func (o *outRecorder) authURL(t *testing.T) string {
	t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case <-o.writes:
			if m := authURLLine.FindStringSubmatch(o.String()); m != nil {
				return m[1]
			}
		case <-timeout:
			t.Fatalf("no authorization URL printed; Out: %q", o.String())
		}
	}
}

// outcome is what Run returned.
type outcome struct {
	res *Result
	err error
}

// start runs Run in the background with out as Out.
func start(ctx context.Context, cfg Config, out *outRecorder) <-chan outcome {
	cfg.Out = out
	done := make(chan outcome, 1)
	go func() {
		res, err := Run(ctx, cfg)
		done <- outcome{res, err}
	}()
	return done
}

func await(t *testing.T, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(wait):
		t.Fatal("Run did not return")
		return outcome{}
	}
}

// noRedirects is a test browser's client: it follows nothing by itself.
func noRedirects(jar http.CookieJar) *http.Client {
	return &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       wait,
	}
}

// get does a GET with c and returns the response with its body read.
func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, b.String()
}

// queryOf returns the query of a URL.
func queryOf(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// checkNoSecrets fails when a secret shows in the error or, outside the one
// authorization URL line that must carry the state, in Out.
func checkNoSecrets(t *testing.T, err error, out string, secrets ...string) {
	t.Helper()
	authLine := authURLLine.FindString(out)
	rest := strings.Replace(out, authLine, "", 1)
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if err != nil && strings.Contains(err.Error(), s) {
			t.Errorf("error %q reveals a secret", err)
		}
		if strings.Contains(rest, s) {
			t.Errorf("Out reveals a secret: %q", out)
		}
	}
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}

// stubCOOP is a minimal authorization server: /authorize answers a login
// page (or what authorize says), /token answers with token and records the
// forms it got.
type stubCOOP struct {
	*httptest.Server
	authorize func(w http.ResponseWriter, r *http.Request)
	token     func(w http.ResponseWriter, r *http.Request)
	forms     chan url.Values
}

const stubTokenJSON = `{"access_token":"834401f20deb9ba7ee94615b5ceedf1aba2187f1","expires_in":86400,"token_type":"Bearer","scope":"eggs-count profile","refresh_token":"aaaabbbbccccddddeeeeffff0000111122223333"}`

func newStubCOOP(t *testing.T) *stubCOOP {
	s := &stubCOOP{
		authorize: func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`<html><form action="/login"></form></html>`))
		},
		token: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(stubTokenJSON))
		},
		forms: make(chan url.Values, 10),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/authorize":
			s.authorize(w, r)
		case "/token":
			r.ParseForm()
			s.forms <- r.PostForm
			s.token(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *stubCOOP) config(redirectURI string) Config {
	return Config{
		OAuth: oauth2.Config{
			ClientID:     "TopCluck",
			ClientSecret: "0123456789abcdef0123456789abcdef",
			Endpoint:     oauth2.Endpoint{AuthURL: s.URL + "/authorize", TokenURL: s.URL + "/token", AuthStyle: oauth2.AuthStyleInParams},
			RedirectURL:  redirectURI,
			Scopes:       []string{"eggs-count", "profile"},
		},
		HTTPClient: s.Client(),
		Timeout:    wait,
		Server:     "COOP",
	}
}
