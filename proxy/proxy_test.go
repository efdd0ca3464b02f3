package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// source hands out numbered tokens, or fails with err.
type source struct {
	mu       sync.Mutex
	n        int
	err      error
	rejected []string
}

func (s *source) Token(_ context.Context, rejected string) (tokenstore.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rejected != "" {
		s.rejected = append(s.rejected, rejected)
	}
	if s.err != nil {
		return tokenstore.Record{}, s.err
	}
	s.n++
	return tokenstore.Record{AccessToken: fmt.Sprintf("tok-%d-0123456789abcdef", s.n), Expiry: time.Now().Add(time.Hour)}, nil
}

func (s *source) fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// seen is what the upstream received.
type seen struct {
	Method, Path, RawQuery, Host, Auth, Body string
	Header, Trailer                          http.Header
}

// upstream records requests and answers with answer (default 200 "ok").
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	got    []seen
	answer func(w http.ResponseWriter, r *http.Request, n int)
}

func newUpstream(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *upstream {
	u := &upstream{answer: answer}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.got = append(u.got, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("Authorization"), string(b), r.Header.Clone(), r.Trailer.Clone()})
		n := len(u.got)
		u.mu.Unlock()
		if u.answer != nil {
			u.answer(w, r, n)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.got...)
}

type fixture struct {
	proxy *httptest.Server
	up    *upstream
	src   *source
	logs  *observer.ObservedLogs
}

func newFixture(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int), opts ...func(*Options)) *fixture {
	t.Helper()
	up := newUpstream(t, answer)
	src := &source{}
	cache := &tokensource.Cache{Source: src, Margin: time.Minute, Backoff: tokensource.Backoff{Min: time.Second, Max: time.Second}}
	t.Cleanup(cache.Close)
	core, logs := observer.New(zap.DebugLevel)
	u, _ := url.Parse(up.URL)
	o := Options{Upstream: u, Tokens: cache, Log: zap.New(core), AdminPaths: []string{"/healthz"}, LoopbackOnly: true, RetryBodyLimit: 1 << 20}
	for _, f := range opts {
		f(&o)
	}
	p := httptest.NewServer(New(o))
	t.Cleanup(p.Close)
	return &fixture{proxy: p, up: up, src: src, logs: logs}
}

func do(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newReq(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestForwardReplacesTheCallersCredentials(t *testing.T) {
	f := newFixture(t, nil)
	req := newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect?access_token=callers&x=1", "access_token=callers-form&a=b")
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer callers-own")
	req.Header.Set("DPoP", "callers-proof")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, body := do(t, req)
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	got := f.up.requests()[0]
	upHost := strings.TrimPrefix(f.up.URL, "http://")
	checks := map[string][2]string{
		"Authorization":    {got.Auth, "Bearer tok-1-0123456789abcdef"},
		"query":            {got.RawQuery, "x=1"},
		"form body":        {got.Body, "a=b"},
		"path":             {got.Path, "/api/1/eggs-collect"},
		"Host":             {got.Host, upHost},
		"X-Hop":            {got.Header.Get("X-Hop"), ""},
		"DPoP":             {got.Header.Get("DPoP"), ""},
		"X-Forwarded-For":  {got.Header.Get("X-Forwarded-For"), "127.0.0.1"},
		"X-Forwarded-Host": {got.Header.Get("X-Forwarded-Host"), strings.TrimPrefix(f.proxy.URL, "http://")},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
}

// The X-Forwarded fields are those httputil's SetXForwarded sets, for every
// caller address, Host and scheme, also when they change from one request
// to the next (forwarded keeps the last ones' values).
func TestForwardedIsSetXForwarded(t *testing.T) {
	var f forwarded
	cases := []struct {
		remote, host string
		tls          bool
	}{
		{"127.0.0.1:40000", "127.0.0.1:8080", false},
		{"127.0.0.1:40001", "127.0.0.1:8080", false},
		{"127.0.0.1:40002", "localhost:8080", false},
		{"[::1]:40003", "localhost:8080", true},
		{"@", "localhost", false}, // a Unix socket's caller: no address
		{"127.0.0.1:40004", "127.0.0.1:8080", false},
	}
	for _, c := range cases {
		in := httptest.NewRequest("GET", "http://"+c.host+"/api/me", nil)
		in.RemoteAddr = c.remote
		if c.tls {
			in.TLS = &tls.ConnectionState{}
		}
		ours := &httputil.ProxyRequest{In: in, Out: in.Clone(context.Background())}
		std := &httputil.ProxyRequest{In: in, Out: in.Clone(context.Background())}
		f.set(ours)
		std.SetXForwarded()
		for _, name := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if got, want := ours.Out.Header[name], std.Out.Header[name]; !slices.Equal(got, want) {
				t.Errorf("%s from %s to %s: %s = %q, SetXForwarded sets %q", c.remote, c.host, map[bool]string{true: "https", false: "http"}[c.tls], name, got, want)
			}
		}
	}
}

// Callers at once, from several addresses, with several Hosts and their own
// X-Forwarded fields: each request reaches COOP with its own caller's
// values, never another's (forwarded shares the value slices, and
// -race watches them).
func TestForwardedValuesAreEachCallersOwnAtOnce(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		fmt.Fprintf(w, "%q %q %q", r.Header.Values("X-Forwarded-For"), r.Header.Values("X-Forwarded-Host"), r.Header.Values("X-Forwarded-Proto"))
	})
	h := f.proxy.Config.Handler
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			remote := []string{"127.0.0.1:1000", "[::1]:2000", "@", "127.0.0.2:3000"}[i%4]
			for j := range 100 {
				host := []string{"127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080"}[(i+j)%4]
				r := httptest.NewRequest("GET", "/api/me", nil)
				r.Host, r.RemoteAddr = host, remote
				if j%3 == 0 {
					r.TLS = &tls.ConnectionState{}
				}
				r.Header["X-Forwarded-For"] = []string{"6.6.6.6"}
				r.Header["X-Forwarded-Host"] = []string{"attacker.example"}
				r.Header["X-Forwarded-Proto"] = []string{"gopher"}
				std := &httputil.ProxyRequest{In: r, Out: r.Clone(context.Background())}
				clear(std.Out.Header)
				std.SetXForwarded()
				want := fmt.Sprintf("%q %q %q", std.Out.Header.Values("X-Forwarded-For"), std.Out.Header.Values("X-Forwarded-Host"), std.Out.Header.Values("X-Forwarded-Proto"))
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if got := w.Body.String(); w.Code != 200 || got != want {
					t.Errorf("from %s to %s: %d %s, want %s", remote, host, w.Code, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, nil)
	proxyHost := strings.TrimPrefix(f.proxy.URL, "http://")
	tests := []struct {
		name   string
		req    func() *http.Request
		raw    string // sent as is when set
		status int
		code   string
	}{
		{"CONNECT", nil, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 405, "method_not_allowed"},
		{"absolute URL for another host", nil, "GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\n\r\n", 400, "foreign_host"},
		{"admin path", func() *http.Request { return newReq(t, "GET", f.proxy.URL+"/healthz", "") }, "", 404, "not_found"},
		{"rebound DNS name", func() *http.Request {
			r := newReq(t, "GET", f.proxy.URL+"/api/me", "")
			r.Host = "attacker.example"
			return r
		}, "", 403, "host_not_allowed"},
		{"browser cross-origin", func() *http.Request {
			r := newReq(t, "POST", f.proxy.URL+"/api/1/barn-unlock", "")
			r.Header.Set("Origin", "https://attacker.example")
			return r
		}, "", 403, "browser_request_refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var status int
			var body string
			if tt.raw != "" {
				status, body = sendRaw(t, proxyHost, tt.raw)
			} else {
				resp, b := do(t, tt.req())
				status, body = resp.StatusCode, b
			}
			var p problem
			if status != tt.status || json.Unmarshal([]byte(body), &p) != nil || p.Error != tt.code || p.Description == "" {
				t.Fatalf("status %d body %q, want %d with error %q", status, body, tt.status, tt.code)
			}
		})
	}
	if n := len(f.up.requests()); n != 0 {
		t.Fatalf("%d refused requests reached the upstream", n)
	}
	if n := f.src.fetches(); n != 0 {
		t.Fatalf("refused requests fetched %d tokens", n)
	}
}

func TestAbsoluteURLForTheUpstreamIsForwarded(t *testing.T) {
	f := newFixture(t, nil)
	upHost := strings.TrimPrefix(f.up.URL, "http://")
	status, _ := sendRaw(t, strings.TrimPrefix(f.proxy.URL, "http://"),
		"GET http://"+upHost+"/api/me HTTP/1.1\r\nHost: "+upHost+"\r\nConnection: close\r\n\r\n")
	if status != 200 || len(f.up.requests()) != 1 {
		t.Fatalf("status %d, upstream saw %d requests", status, len(f.up.requests()))
	}
}

// sendRaw writes text to addr and reads the status and body of the answer.
func sendRaw(t *testing.T, addr, text string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const invalidToken = `Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid"`

func TestRejectedTokenIsReplacedAndTheRequestRetriedOnce(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "fresh")
	})
	resp, body := do(t, newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", "payload=1"))
	if resp.StatusCode != 200 || body != "fresh" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	got := f.up.requests()
	if len(got) != 2 || got[1].Auth != "Bearer tok-2-0123456789abcdef" || got[1].Body != "payload=1" {
		t.Fatalf("upstream saw %+v", got)
	}
	if n := f.src.fetches(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if entries := requestLines(f.logs, "retried").Len(); entries != 1 {
		t.Fatalf("request log lines with retried=true: %d, want 1", entries)
	}
}

// A token failure is never a 401: a second rejection, of a token fetched
// just now, drops that token too and answers 503.
func TestRejectedTwiceGives503(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
	var p problem
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || json.Unmarshal([]byte(body), &p) != nil || p.Error != "token_rejected" {
		t.Fatalf("status %d Retry-After %q body %q, want 503 token_rejected", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := len(f.up.requests()); n != 2 {
		t.Fatalf("%d upstream requests, want 2", n)
	}
	// The token fetched to replace a rejected one was rejected at once: the
	// cache backs off instead of fetching a token per request.
	if resp, _ := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", "")); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || f.src.fetches() != 2 {
		t.Fatalf("next request: status %d, %d fetches; want 503 while backing off, 2 fetches", resp.StatusCode, f.src.fetches())
	}
}

// A request whose body was not kept cannot be sent again: the rejected token
// is dropped all the same, and the caller gets 503 to send it again.
func TestRejectedTokenWithABodyNotKeptIsDropped(t *testing.T) {
	chunked := func(r *http.Request) { r.Body, r.ContentLength = io.NopCloser(strings.NewReader("0123456789")), -1 }
	tests := []struct {
		name  string
		limit int64
		req   func(*http.Request)
	}{
		{"with a length", 8, func(*http.Request) {}},
		{"chunked", 8, chunked},
		{"RetryBodyLimit 0 keeps no body", 0, func(*http.Request) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 {
					w.Header().Set("WWW-Authenticate", invalidToken)
					w.WriteHeader(401)
					return
				}
				_, _ = io.WriteString(w, "ok")
			}, func(o *Options) { o.RetryBodyLimit = tt.limit })
			req := newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", "0123456789")
			tt.req(req)
			resp, body := do(t, req)
			var p problem
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || json.Unmarshal([]byte(body), &p) != nil ||
				p.Error != "token_rejected" || !strings.Contains(p.Description, "not kept") {
				t.Fatalf("status %d Retry-After %q body %q, want 503 token_rejected", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
			if got := f.up.requests(); len(got) != 1 || got[0].Body != "0123456789" {
				t.Fatalf("upstream saw %+v, want the request once", got)
			}
			if resp, _ := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", "")); resp.StatusCode != 200 || f.up.requests()[1].Auth != "Bearer tok-2-0123456789abcdef" {
				t.Fatalf("next request: status %d with %q, want 200 with a new token", resp.StatusCode, f.up.requests()[1].Auth)
			}
		})
	}
}

// ReverseProxy panics with http.ErrAbortHandler when COOP's body fails after
// the headers went out; the request is logged and counted all the same.
func TestAbortedResponseIsLoggedAndCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}, func(o *Options) {
		o.Metrics = NewMetrics(reg, func() float64 { return 0 }, func() bool { return true })
	})
	if resp, err := http.Get(f.proxy.URL + "/api/me"); err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	lines := requestLines(f.logs, "aborted")
	if lines.Len() != 1 {
		t.Fatalf("aborted request lines: %d, want 1 (all: %v)", lines.Len(), f.logs.All())
	}
	if n := requestsCounted(t, reg); n != 1 {
		t.Fatalf("requests counted: %v, want 1", n)
	}
}

func requestsCounted(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "coop_proxy_requests_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestOther401sPassThroughWithoutATokenRequest(t *testing.T) {
	answers := map[string]func(w http.ResponseWriter){
		"insufficient scope": func(w http.ResponseWriter) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Service", scope="barn-unlock", error="insufficient_scope"`)
			w.WriteHeader(401)
		},
		"another farmer": func(w http.ResponseWriter) {
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":"access_denied","error_message":"You do not have access to take this action on behalf of this user"}`)
		},
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) { answer(w) })
			resp, body := do(t, newReq(t, "POST", f.proxy.URL+"/api/2/barn-unlock", ""))
			if resp.StatusCode != 401 || len(f.up.requests()) != 1 || f.src.fetches() != 1 {
				t.Fatalf("status %d, %d upstream requests, %d fetches", resp.StatusCode, len(f.up.requests()), f.src.fetches())
			}
			if name == "another farmer" && !strings.Contains(body, "error_message") {
				t.Fatalf("body not passed through: %q", body)
			}
		})
	}
}

func TestNoTokenGives503AndForwardsNothing(t *testing.T) {
	f := newFixture(t, nil)
	f.src.err = &tokensource.Error{Code: tokensource.ClientRejected, Description: "COOP rejected the client credentials"}
	resp, body := do(t, newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", ""))
	var p problem
	_ = json.Unmarshal([]byte(body), &p)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || p.Error != "invalid_client" || !strings.Contains(p.Description, "rejected") {
		t.Fatalf("status %d Retry-After %q body %q", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if len(f.up.requests()) != 0 {
		t.Fatal("a request was forwarded without a token")
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		f := newFixture(t, nil)
		f.up.Close()
		resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
		if resp.StatusCode != 502 || !strings.Contains(body, "upstream_unreachable") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
	t.Run("too slow", func(t *testing.T) {
		release := make(chan struct{})
		f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, func(o *Options) { o.Base = NewTransport(50 * time.Millisecond) })
		defer close(release)
		resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
		if resp.StatusCode != 504 || !strings.Contains(body, "upstream_timeout") {
			t.Fatalf("status %d body %q", resp.StatusCode, body)
		}
	})
}

func TestResponseIsStreamed(t *testing.T) {
	next := make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-next
		_, _ = io.WriteString(w, "second\n")
	})
	resp, err := http.Get(f.proxy.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk %q, %v: the response was not streamed", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Fatalf("rest %q", rest)
	}
}

func TestLogsCarryNoSecrets(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
		}
	})
	req := newReq(t, "GET", f.proxy.URL+"/api/me?access_token=callers-secret", "")
	req.Header.Set("Authorization", "Bearer callers-bearer")
	do(t, req)
	var all bytes.Buffer
	for _, e := range f.logs.All() {
		fmt.Fprintf(&all, "%s %v\n", e.Message, e.ContextMap())
	}
	for _, secret := range []string{"tok-1-0123456789abcdef", "tok-2-0123456789abcdef", "callers-secret", "callers-bearer", "Bearer"} {
		if strings.Contains(all.String(), secret) {
			t.Fatalf("log contains %q:\n%s", secret, all.String())
		}
	}
	if f.logs.FilterMessage("request").Len() != 1 {
		t.Fatalf("want one request line, got:\n%s", all.String())
	}
}

// requestLines are the request log lines whose field flag is true.
func requestLines(logs *observer.ObservedLogs, flag string) *observer.ObservedLogs {
	return logs.FilterMessage("request").Filter(func(e observer.LoggedEntry) bool {
		return e.ContextMap()[flag] == true
	})
}
