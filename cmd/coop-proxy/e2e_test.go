package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/fakeclock"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// TestMain lets a test run the test binary as coop-proxy itself, for the
// tests that need separate processes.
func TestMain(m *testing.M) {
	if os.Getenv("COOP_PROXY_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// farm is a COOP emulator on loopback with two farmers and the tutorial's
// cron application owned by Brent.
type farm struct {
	em           *coop.Server
	url          string
	redirect     string                                // the application's registered loopback redirect URI
	onAPI        atomic.Pointer[func(r *http.Request)] // when set, sees every /api/ request before COOP does
	onToken      atomic.Pointer[func()]                // when set, called on every POST /token before COOP answers
	clock        *fakeclock.Clock
	brent, sally coop.User
	app          coop.App
	dir          string
	secretFile   string
}

func newFarm(t *testing.T) *farm { return newFarmWith(t, coop.Options{}) }

// newFarmWith is newFarm with emulator options; the fake clock is used
// unless opts brings a clock of its own.
func newFarmWith(t *testing.T, opts coop.Options) *farm {
	t.Helper()
	f := &farm{clock: fakeclock.New(time.Now()), dir: t.TempDir(), redirect: freeRedirectURI(t)}
	if opts.Now == nil {
		opts.Now = f.clock.Now
	}
	f.em = coop.New(opts)
	f.brent = f.em.AddUser("brent@example.com", "brent-password", "Brent", "Farmer")
	f.sally = f.em.AddUser("sally@example.com", "sally-password", "Sally", "Farmer")
	f.app = f.em.AddApp(f.brent.ID, "Brent's Lazy CRON Job", []string{"eggs-collect", "eggs-count", "profile"}, f.redirect)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hook := f.onAPI.Load(); hook != nil && strings.HasPrefix(r.URL.Path, "/api/") {
			(*hook)(r)
		}
		if hook := f.onToken.Load(); hook != nil && r.URL.Path == "/token" {
			(*hook)()
		}
		f.em.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.secretFile = filepath.Join(f.dir, "secret")
	if err := os.WriteFile(f.secretFile, []byte(f.app.ClientSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is the default configuration pointed at the emulator, on
// ephemeral loopback ports, with a store in the test's directory; kv are
// further settings, as pairs of environment names (without the prefix) and
// values.
func (f *farm) config(t *testing.T, kv ...string) *config.Settings {
	t.Helper()
	s, err := config.Load("test", nil, f.environ(kv...), config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// environ is config's environment.
func (f *farm) environ(kv ...string) map[string]string {
	env := map[string]string{}
	for k, v := range map[string]string{"UPSTREAM": f.url, "CLIENT_ID": f.app.ClientID, "CLIENT_SECRET_FILE": f.secretFile,
		"STORE": filepath.Join(f.dir, "state", "tokens.json"), "LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "127.0.0.1:0",
		"REDIRECT_URI": f.redirect, "NO_BROWSER": "true", "LOGIN_TIMEOUT": "10s"} {
		env[config.EnvPrefix+k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvPrefix+kv[i]] = kv[i+1]
	}
	return env
}

// secretsRE matches what COOP's secrets and tokens look like (32 or 40 hex
// digits); fingerprints are 8.
var secretsRE = regexp.MustCompile(`[0-9a-f]{32,}`)

// logBuffer collects a proxy's log lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a proxy served in this process.
type proc struct {
	url, admin string
	logs       *logBuffer
	srv        *server.Server
	stop       func() error
}

// start runs serve with cfg until the test ends (or stop). Every test that
// starts a proxy also checks that its log holds no secret or token.
func (f *farm) start(t *testing.T, cfg *config.Settings) *proc {
	t.Helper()
	return f.startWith(t, cfg, server.Options{})
}

// startWith is start with options (the log, ready and the clock are set here).
func (f *farm) startWith(t *testing.T, cfg *config.Settings, opts server.Options) *proc {
	t.Helper()
	opts.Now = f.clock.Now
	return runServer(t, cfg, opts, func(log string) {
		if s := secretsRE.FindString(log); s != "" {
			t.Errorf("the log holds a secret or token (%d hex digits)", len(s))
		}
		if strings.Contains(log, "Bearer ") {
			t.Error("the log holds an Authorization value")
		}
	})
}

// runServer runs cfg's server in this process, logging at debug level,
// until the test ends; then atEnd checks its log.
func runServer(t *testing.T, cfg *config.Settings, opts server.Options, atEnd func(log string)) *proc {
	t.Helper()
	logs := &logBuffer{}
	opts.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	opts.Log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), opts.Level))
	ready := make(chan server.Addrs, 1)
	opts.Ready = ready
	srv, err := server.New(cfg, opts)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	p := &proc{logs: logs, srv: srv}
	select {
	case a := <-ready:
		p.url, p.admin = "http://"+a.Proxy, "http://"+a.Admin
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	var once sync.Once
	var stopErr error
	p.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("serve ended with %v", err)
		}
		atEnd(logs.String())
	})
	return p
}

type answer struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func call(t *testing.T, method, url string, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	_ = json.Unmarshal(b, &a.json)
	return a
}

// watchAPI sets the hook that sees every /api/ request before COOP does.
func (f *farm) watchAPI(hook func(r *http.Request)) { f.onAPI.Store(&hook) }

// watchToken sets the hook called on every POST /token before COOP answers.
func (f *farm) watchToken(hook func()) { f.onToken.Store(&hook) }

func (f *farm) tokenRequests() int { return f.em.CountTokenRequests("") }

func TestEggsCollectThroughTheProxy(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	first := call(t, "POST", p.url+"/api/1/eggs-collect", nil)
	if first.status != 200 || first.json["success"] != true || !strings.Contains(first.body, "eggs have been collected") {
		t.Fatalf("first collect: %d %s", first.status, first.body)
	}
	again := call(t, "POST", p.url+"/api/1/eggs-collect", nil)
	if again.status != 200 || !strings.Contains(again.body, "give the ladies a break") {
		t.Fatalf("collect within 20 s: %d %s", again.status, again.body)
	}
	me := call(t, "GET", p.url+"/api/me", nil)
	if me.status != 200 || me.json["email"] != "brent@example.com" {
		t.Fatalf("/api/me: %d %s", me.status, me.body)
	}
	if n := f.tokenRequests(); n != 1 {
		t.Fatalf("token requests = %d, want 1", n)
	}
	ready := call(t, "GET", p.admin+"/readyz", nil)
	if ready.status != 200 {
		t.Fatalf("/readyz: %d %s", ready.status, ready.body)
	}
	metrics := call(t, "GET", p.admin+"/metrics", nil)
	for _, m := range []string{`coop_proxy_requests_total{code="200",route="default"} 3`, `coop_proxy_token_fetches_total{outcome="ok",route="default"} 1`, "coop_proxy_upstream_duration_seconds_bucket", `coop_proxy_token_expiry_seconds{route="default"}`, `coop_proxy_retries_total{route="default"} 0`} {
		if !strings.Contains(metrics.body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
}

func TestTheBasicQuirkIsHandledByDefault(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t, "AUTH_STYLE", "auto") // tries Basic (refused: COOP does not URL-decode it), then the body
	p := f.start(t, cfg)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("auto: %d %s", a.status, a.body)
	}
	cfg = f.config(t, "AUTH_STYLE", "basic", "STORE", filepath.Join(f.dir, "basic.json"))
	p = f.start(t, cfg)
	a := call(t, "POST", p.url+"/api/1/eggs-count", nil)
	if a.status != 503 || a.json["error"] != "invalid_client" {
		t.Fatalf("basic with an apostrophe in the client id: %d %s", a.status, a.body)
	}
}

func TestCallersCredentialsAreReplaced(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	a := call(t, "POST", p.url+"/api/1/eggs-count?access_token=0123456789012345678901234567890123456789",
		map[string]string{"Authorization": "Bearer not-mine"})
	if a.status != 200 || a.json["success"] != true {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

func TestScopeAndOwnership401sPassThroughWithoutTokenRequests(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	before := f.tokenRequests()
	sally := call(t, "POST", p.url+"/api/2/eggs-count", nil)
	if sally.status != 401 || sally.json["error_message"] == nil {
		t.Fatalf("another farmer: %d %s", sally.status, sally.body)
	}
	barn := call(t, "POST", p.url+"/api/1/barn-unlock", nil) // the app lacks barn-unlock
	if barn.status != 401 || !strings.Contains(barn.header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("missing scope: %d %s %v", barn.status, barn.body, barn.header)
	}
	if n := f.tokenRequests(); n != before {
		t.Fatalf("token requests went from %d to %d", before, n)
	}
}

func TestRevokedTokenIsReplacedOnce(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	p := f.start(t, cfg)
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	rec := storedRecord(t, cfg)
	f.em.RevokeToken(rec.AccessToken)
	a := call(t, "POST", p.url+"/api/1/eggs-count", nil)
	if a.status != 200 || f.tokenRequests() != 2 {
		t.Fatalf("after revocation: %d %s with %d token requests", a.status, a.body, f.tokenRequests())
	}
	if !strings.Contains(p.logs.String(), `"retried":true`) {
		t.Fatal("the request log does not say the request was retried")
	}
	if m := call(t, "GET", p.admin+"/metrics", nil); !strings.Contains(m.body, `coop_proxy_retries_total{route="default"} 1`) {
		t.Fatal("retries metric not 1")
	}
}

func TestExpiryIsRefreshedAheadOfTime(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	f.clock.Advance(24*time.Hour - 4*time.Minute) // inside the 5-minute margin, still valid
	a := call(t, "POST", p.url+"/api/1/eggs-count", nil)
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	waitUntil(t, "the refresh ahead of expiry", func() bool { return f.tokenRequests() == 2 })
	f.clock.Advance(5 * time.Minute) // the first token has expired now
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 || f.tokenRequests() != 2 {
		t.Fatalf("after the old token's expiry: %d %s, %d token requests", a.status, a.body, f.tokenRequests())
	}
}

func TestManyCallersAtExpiryCauseOneTokenRequest(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	f.clock.Advance(24*time.Hour + time.Minute)
	const callers = 500
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}
	var wg sync.WaitGroup
	statuses := make([]int, callers)
	for i := range callers {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", p.url+"/api/1/eggs-count", nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	for i, s := range statuses {
		if s != 200 {
			t.Fatalf("caller %d got %d", i, s)
		}
	}
	if n := f.tokenRequests(); n != 2 {
		t.Fatalf("token requests = %d, want 2 (one at start, one at expiry)\n%s", n, p.logs.String())
	}
}

func TestTokenEndpointDownGives503AndRecovers(t *testing.T) {
	f := newFarm(t)
	f.em.SetTokenFault(coop.FaultDown)
	p := f.start(t, f.config(t))
	a := call(t, "POST", p.url+"/api/1/eggs-collect", nil)
	if a.status != 503 || a.header.Get("Retry-After") == "" || a.json["error"] != "token_endpoint_unavailable" {
		t.Fatalf("token endpoint down: %d %v %s", a.status, a.header, a.body)
	}
	if n := len(f.em.APIRequests()); n != 0 {
		t.Fatalf("%d requests reached the farm API without a token", n)
	}
	if r := call(t, "GET", p.admin+"/readyz", nil); r.status != 503 {
		t.Fatalf("/readyz while no token: %d", r.status)
	}
	f.em.SetTokenFault(coop.FaultNone)
	f.clock.Advance(time.Minute) // past the backoff
	if a := call(t, "POST", p.url+"/api/1/eggs-collect", nil); a.status != 200 {
		t.Fatalf("after recovery: %d %s", a.status, a.body)
	}
}

func TestRejectedSecretGives503NamingTheProblem(t *testing.T) {
	f := newFarm(t)
	if err := os.WriteFile(f.secretFile, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := f.start(t, f.config(t))
	a := call(t, "POST", p.url+"/api/1/eggs-collect", nil)
	desc, _ := a.json["error_description"].(string)
	if a.status != 503 || a.json["error"] != "invalid_client" || !strings.Contains(desc, "client credentials") || a.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

func TestRestartReusesTheStoredToken(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	p := f.start(t, cfg)
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	p = f.start(t, cfg)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if n := f.tokenRequests(); n != 1 {
		t.Fatalf("token requests over two runs = %d, want 1", n)
	}
	info, err := os.Stat(cfg.Store)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("store file: %v, mode %v", err, info.Mode())
	}
}

func TestCorruptStoreIsReportedAndRecovered(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	if err := os.MkdirAll(filepath.Dir(cfg.Store), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.Store, []byte(`{"version":1,"grants":{"x":{"access_tok`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := f.start(t, cfg)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if !strings.Contains(p.logs.String(), "corrupt") || !strings.Contains(p.logs.String(), cfg.Store) {
		t.Fatalf("the log does not report the corrupt file with its path:\n%s", p.logs.String())
	}
	aside, _ := filepath.Glob(cfg.Store + ".corrupt-*")
	if len(aside) != 1 {
		t.Fatalf("corrupt file not moved aside: %v", aside)
	}
}

func TestForwardProxyUseIsRefused(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.config(t))
	host := strings.TrimPrefix(p.url, "http://")
	for _, raw := range []string{
		"CONNECT coop.apps.knpuniversity.com:443 HTTP/1.1\r\nHost: coop.apps.knpuniversity.com:443\r\n\r\n",
		"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
	} {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, raw)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil || resp.StatusCode < 400 || resp.StatusCode > 499 {
			t.Fatalf("%q: %v %v", strings.SplitN(raw, "\r", 2)[0], resp, err)
		}
	}
	if f.tokenRequests() > 1 || len(f.em.APIRequests()) != 0 {
		t.Fatal("a refused request reached COOP")
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTokenCommandPrintsOnlyAValidToken(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	first, err := runTokenTo(t, cfg)
	if err != nil || !regexp.MustCompile(`^[0-9a-f]{40}\n$`).MatchString(first) {
		t.Fatalf("token printed %q, %v", first, err)
	}
	second, err := runTokenTo(t, cfg) // from the store: no second request
	if err != nil || second != first || f.tokenRequests() != 1 {
		t.Fatalf("second run: %q %v, %d token requests", second, err, f.tokenRequests())
	}
	tok := strings.TrimSpace(first)
	a := call(t, "POST", f.url+"/api/1/eggs-count", map[string]string{"Authorization": "Bearer " + tok})
	if a.status != 200 {
		t.Fatalf("the printed token does not work at COOP: %d %s", a.status, a.body)
	}
}
