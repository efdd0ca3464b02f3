package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/login"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// farmerConfig is the configuration for the farmer's grant.
func (f *farm) farmerConfig(t *testing.T) *config.Settings {
	return f.config(t, "GRANT", "authorization_code", "SCOPES", "eggs-collect eggs-count profile")
}

var authURLLine = regexp.MustCompile(`Open this address in a browser to log in (?:to COOP|at the authorization server): (\S+)`)

// login runs `coop-proxy login` with Brent's browser approving (or
// denying), and returns its output and error.
func (f *farm) login(t *testing.T, cfg *config.Settings, approve bool) (string, error) {
	t.Helper()
	pr, pw := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		err := runLogin(context.Background(), &invocation{settings: cfg, out: pw})
		pw.Close()
		done <- err
	}()
	lines := readLines(pr) // read on, so that login never blocks writing
	browser := coop.NewBrowser(f.url, f.brent.Email, "brent-password")
	for line := range lines {
		out.WriteString(line + "\n")
		m := authURLLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		loc, err := browser.Decide(m[1], approve)
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		resp, err := browser.Client.Get(loc) // back to the loopback listener
		if err != nil {
			t.Fatalf("callback: %v", err)
		}
		resp.Body.Close()
	}
	return out.String(), <-done
}

func (f *farm) refreshRequests() int { return f.em.CountTokenRequests("refresh_token") }

func TestLoginThenServeActsForTheFarmer(t *testing.T) {
	f := newFarm(t)
	cfg := f.farmerConfig(t)
	out, err := f.login(t, cfg, true)
	if err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Logged in as brent@example.com (farmer 1)") {
		t.Fatalf("login output:\n%s", out)
	}
	rec := storedRecord(t, cfg)
	if rec.RefreshToken == "" || rec.UserID != 1 || rec.Email != "brent@example.com" || rec.GrantedAt.IsZero() {
		t.Fatalf("stored grant: %v", rec)
	}
	p := f.start(t, cfg)
	if me := call(t, "GET", p.url+"/api/me", nil); me.status != 200 || me.json["email"] != "brent@example.com" {
		t.Fatalf("/api/me: %d %s", me.status, me.body)
	}
	if a := call(t, "POST", p.url+"/api/1/eggs-collect", nil); a.status != 200 || a.json["success"] != true {
		t.Fatalf("eggs-collect: %d %s", a.status, a.body)
	}
	if n := f.em.CountTokenRequests("authorization_code"); n != 1 || f.refreshRequests() != 0 {
		t.Fatalf("token requests: %d code, %d refresh; want 1 and 0", n, f.refreshRequests())
	}

	var status bytes.Buffer
	if err := runStatus(context.Background(), &invocation{settings: cfg, out: &status}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"brent@example.com (id 1)", "eggs-collect eggs-count profile", "expires in", "refresh token:  held", "granted:", cfg.Store} {
		if !strings.Contains(status.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, status.String())
		}
	}
	if secretsRE.MatchString(status.String()) {
		t.Errorf("status shows a token:\n%s", status.String())
	}

	var logout bytes.Buffer
	if err := runLogout(context.Background(), &invocation{settings: cfg, out: &logout}); err != nil || !strings.Contains(logout.String(), "Logged out") {
		t.Fatalf("logout: %v %s", err, logout.String())
	}
	// The running proxy stops acting for the farmer within a second.
	waitUntil(t, "the logout to reach the proxy", func() bool {
		a := call(t, "GET", p.url+"/api/me", nil)
		return a.status == 503 && a.json["error"] == "login_required"
	})
	status.Reset()
	_ = runStatus(context.Background(), &invocation{settings: cfg, out: &status})
	if !strings.Contains(status.String(), "no farmer logged in") {
		t.Fatalf("status after logout:\n%s", status.String())
	}
	// The application's own token is still there, and status says so.
	ccCfg := f.config(t)
	if _, err := runTokenTo(t, ccCfg); err != nil {
		t.Fatal(err)
	}
	status.Reset()
	_ = runStatus(context.Background(), &invocation{settings: cfg, out: &status})
	if !strings.Contains(status.String(), "stored:         client_credentials|Brent's Lazy CRON Job|") {
		t.Fatalf("status does not list the other grant:\n%s", status.String())
	}
}

// runTokenTo runs `coop-proxy token` and returns what it printed.
func runTokenTo(t *testing.T, cfg *config.Settings) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runToken(context.Background(), &invocation{settings: cfg, out: &out})
	return out.String(), err
}

func TestLoginDenied(t *testing.T) {
	f := newFarm(t)
	cfg := f.farmerConfig(t)
	out, err := f.login(t, cfg, false)
	if !errors.Is(err, login.ErrDenied) {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if f.em.CountTokenRequests("") != 0 {
		t.Fatal("a denied login reached the token endpoint")
	}
}

func TestNoGrantGivesLoginRequired(t *testing.T) {
	f := newFarm(t)
	p := f.start(t, f.farmerConfig(t))
	a := call(t, "GET", p.url+"/api/me", nil)
	desc, _ := a.json["error_description"].(string)
	if a.status != 503 || a.json["error"] != "login_required" || !strings.Contains(desc, "coop-proxy login") || a.header.Get("Retry-After") == "" {
		t.Fatalf("%d %s", a.status, a.body)
	}
	if !strings.Contains(p.logs.String(), "coop-proxy login") {
		t.Fatal("the log does not say how to log in")
	}
}

// TestRefreshIsStoredBeforeUse checks, at every request COOP receives, that
// the token it carries is already the one on disk.
func TestRefreshIsStoredBeforeUse(t *testing.T) {
	f := newFarm(t)
	cfg := f.farmerConfig(t)
	if _, err := f.login(t, cfg, true); err != nil {
		t.Fatal(err)
	}
	first := storedRecord(t, cfg)
	var unstored atomic.Int32
	var mu sync.Mutex
	everStored := map[string]bool{first.AccessToken: true}
	f.watchAPI(func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		everStored[storedRecord(t, cfg).AccessToken] = true
		if !everStored[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")] {
			unstored.Add(1)
		}
	})
	p := f.start(t, cfg)
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	f.clock.Advance(24*time.Hour - 4*time.Minute) // inside the refresh margin
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	waitUntil(t, "the refresh", func() bool { return f.refreshRequests() == 1 })
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	now := storedRecord(t, cfg)
	if now.RefreshToken == first.RefreshToken || now.AccessToken == first.AccessToken || now.Email != "brent@example.com" {
		t.Fatalf("after refresh the store holds %v", now)
	}
	if n := unstored.Load(); n != 0 {
		t.Fatalf("%d requests reached COOP with a token not yet stored", n)
	}
}

// flakyStore fails every write while fail is set, as a full disk would.
type flakyStore struct {
	inner tokensource.Store
	fail  atomic.Bool
}

func (s *flakyStore) Shared() bool { return s.inner.Shared() }

func (s *flakyStore) Update(ctx context.Context, k tokenstore.Key, fn func(tokenstore.Record, bool) (*tokenstore.Record, error)) (tokenstore.Record, error) {
	if !s.fail.Load() {
		return s.inner.Update(ctx, k, fn)
	}
	var next *tokenstore.Record
	cur, err := s.inner.Update(ctx, k, func(c tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		n, err := fn(c, ok)
		next = n
		return nil, err
	})
	if err != nil || next == nil {
		return cur, err
	}
	return *next, &tokenstore.WriteError{Path: "test", Err: errors.New("no space left on device")}
}

func TestGrantSurvivesAStoreWriteFailureAfterRotation(t *testing.T) {
	f := newFarm(t)
	cfg := f.farmerConfig(t)
	if _, err := f.login(t, cfg, true); err != nil {
		t.Fatal(err)
	}
	before := storedRecord(t, cfg)
	flaky := &flakyStore{}
	p := f.startWith(t, cfg, server.Options{TokenOptions: server.TokenOptions{WrapStore: func(s tokensource.Store) tokensource.Store { flaky.inner = s; return flaky }}})
	call(t, "POST", p.url+"/api/1/eggs-count", nil)

	flaky.fail.Store(true)
	f.clock.Advance(24*time.Hour + time.Minute) // expired: the next request needs the refresh
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("with the write failing: %d %s", a.status, a.body)
	}
	if f.refreshRequests() != 1 || storedRecord(t, cfg).RefreshToken != before.RefreshToken {
		t.Fatal("expected one refresh and the old grant still on disk")
	}
	if r := call(t, "GET", p.admin+"/readyz", nil); r.status != 503 || !strings.Contains(r.body, "not yet written") {
		t.Fatalf("/readyz with tokens pending: %d %s", r.status, r.body)
	}
	if !strings.Contains(p.logs.String(), "NOT WRITTEN") {
		t.Fatal("the failed write was not logged loudly")
	}

	flaky.fail.Store(false) // the disk is back: the maintenance loop writes within a second
	waitUntil(t, "the pending write", func() bool { return storedRecord(t, cfg).RefreshToken != before.RefreshToken })
	waitUntil(t, "readiness", func() bool { return call(t, "GET", p.admin+"/readyz", nil).status == 200 })
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	// A new process finds the rotated grant on disk and can refresh it.
	p = f.start(t, cfg)
	f.clock.Advance(24*time.Hour + time.Minute)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 || f.refreshRequests() != 2 {
		t.Fatalf("after restart: %d %s, %d refreshes", a.status, a.body, f.refreshRequests())
	}
	for _, tr := range f.em.TokenRequests() {
		if tr.Status != 200 {
			t.Fatalf("a token request failed: %+v", tr)
		}
	}
}

func TestDeadGrantGivesLoginRequiredAndANewLoginIsPickedUpLive(t *testing.T) {
	f := newFarm(t)
	cfg := f.farmerConfig(t)
	if _, err := f.login(t, cfg, true); err != nil {
		t.Fatal(err)
	}
	p := f.start(t, cfg)
	call(t, "POST", p.url+"/api/1/eggs-count", nil)
	f.em.RevokeToken(storedRecord(t, cfg).RefreshToken) // the farmer revoked the application
	f.em.ExpireAllTokens()

	for range 3 {
		a := call(t, "POST", p.url+"/api/1/eggs-count", nil)
		desc, _ := a.json["error_description"].(string)
		if a.status != 503 || a.json["error"] != "login_required" || !strings.Contains(desc, "coop-proxy login") {
			t.Fatalf("dead grant: %d %s", a.status, a.body)
		}
	}
	if n := f.refreshRequests(); n != 1 {
		t.Fatalf("refresh requests for a dead grant = %d, want 1", n)
	}

	if _, err := f.login(t, cfg, true); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2 * time.Second)
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("after a new login: %d %s", a.status, a.body)
	}
}

// TestFourProcessesShareOneStore runs four coop-proxy processes on one store
// while their short-lived tokens expire: between them, one refresh per
// renewal reaches COOP, none is refused, and every process keeps serving.
func TestFourProcessesShareOneStore(t *testing.T) {
	const life = 4 * time.Second // renewed at half-life, 2 s
	f := newFarmWith(t, coop.Options{AccessTokenLifetime: life, Now: time.Now})
	cfg := f.farmerConfig(t)
	if _, err := f.login(t, cfg, true); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	var procs []*child
	for range 4 {
		procs = append(procs, startChild(t, cfg))
	}
	for _, c := range procs {
		c.waitListening(t)
	}
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	var failures atomic.Int32
	for _, c := range procs {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 200 {
					failures.Add(1)
					t.Errorf("%s: %d %s", c.url, a.status, a.body)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, c := range procs {
		c.stop(t)
	}
	refreshes, refused := 0, 0
	for _, tr := range f.em.TokenRequests() {
		if tr.GrantType == "refresh_token" {
			refreshes++
			if tr.Status != 200 {
				refused++
			}
		}
	}
	// A renewal is due every half-life (2 s); four uncoordinated processes
	// would send four times as many, all but one of each round refused.
	most := int(time.Since(began)/(life/2)) + 1
	if refused != 0 || refreshes < 1 || refreshes > most {
		t.Fatalf("%d refresh requests, %d refused in %v; want 1 to %d, none refused", refreshes, refused, time.Since(began), most)
	}
}

// child is coop-proxy running as a separate process (this test binary,
// see TestMain).
type child struct {
	cmd    *exec.Cmd
	url    string
	stderr *logBuffer
}

var listeningRE = regexp.MustCompile(`"listen":"([^"]+)"`)

// startChild starts coop-proxy serve with cfg's settings, and extra
// environment variables ("NAME=value"), which override them.
func startChild(t *testing.T, cfg *config.Settings, extra ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve")
	cmd.Env = append(os.Environ(),
		"COOP_PROXY_TEST_AS_MAIN=1",
		config.EnvPrefix+"UPSTREAM="+cfg.Route.Upstream,
		config.EnvPrefix+"CLIENT_ID="+cfg.Route.ClientID,
		config.EnvPrefix+"CLIENT_SECRET_FILE="+cfg.Route.ClientSecretFile,
		config.EnvPrefix+"GRANT="+string(cfg.Route.Grant),
		config.EnvPrefix+"STORE="+cfg.Store,
		config.EnvPrefix+"LISTEN=127.0.0.1:0",
		config.EnvPrefix+"ADMIN_LISTEN=off",
		config.EnvPrefix+"REFRESH_MARGIN="+cfg.Route.RefreshMargin.String(),
		config.EnvPrefix+"REDIRECT_URI="+cfg.Route.RedirectURI,
	)
	cmd.Env = append(cmd.Env, extra...) // the last of duplicates wins
	c := &child{cmd: cmd, stderr: &logBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return c
}

// waitListening waits for the child's "listening" log line.
func (c *child) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !listeningRE.MatchString(c.stderr.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("the child does not listen:\n%s", c.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.url = "http://" + listeningRE.FindStringSubmatch(c.stderr.String())[1]
}

// stop sends SIGTERM and expects a clean exit 0.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child %s: %v\n%s", c.url, err, c.stderr.String())
	}
	if s := secretsRE.FindString(c.stderr.String()); s != "" {
		t.Errorf("child log holds a secret or token")
	}
}

// readLines sends r's lines on the channel it returns, reading ahead of
// the receiver (up to 100 lines held) so that the writer does not block;
// the channel is closed at r's end.
func readLines(r io.Reader) <-chan string {
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}
