package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
)

// farm is a COOP emulator with Brent's cron application, and the
// environment pointing coop-proxy at it.
type farm struct {
	em         *coop.Server
	url        string
	dir        string
	secretFile string
	app        coop.App
}

func newFarm(t *testing.T) *farm {
	t.Helper()
	f := &farm{em: coop.New(coop.Options{}), dir: t.TempDir()}
	brent := f.em.AddUser("brent@example.com", "pw", "Brent", "Farmer")
	f.app = f.em.AddApp(brent.ID, "Brent's Lazy CRON Job", []string{"eggs-count"}, "")
	srv := httptest.NewServer(f.em)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	f.secretFile = filepath.Join(f.dir, "secret")
	writeFile(t, f.secretFile, f.app.ClientSecret)
	return f
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// environ is the settings' environment: the farm's, then kv pairs of
// names (without the prefix) and values.
func (f *farm) environ(kv ...string) map[string]string {
	env := map[string]string{}
	base := []string{"UPSTREAM", f.url, "CLIENT_ID", f.app.ClientID, "CLIENT_SECRET_FILE", f.secretFile,
		"STORE", filepath.Join(f.dir, "state", "tokens.json"), "LISTEN", "127.0.0.1:0", "ADMIN_LISTEN", "127.0.0.1:0"}
	kv = append(base, kv...)
	for i := 0; i+1 < len(kv); i += 2 {
		env[config.EnvPrefix+kv[i]] = kv[i+1]
	}
	return env
}

func (f *farm) settings(t *testing.T, kv ...string) *config.Settings {
	t.Helper()
	s, err := config.Load("test", nil, f.environ(kv...), config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// running is a server in this process.
type running struct {
	srv        *Server
	proxy, adm string
	addrs      Addrs
	logs       *syncBuffer
	stop       func() error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func start(t *testing.T, s *config.Settings, o Options) *running {
	t.Helper()
	logs := &syncBuffer{}
	o.Level = zap.NewAtomicLevelAt(zap.DebugLevel)
	o.Log = zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(logs), o.Level))
	ready := make(chan Addrs, 1)
	o.Ready = ready
	srv, err := New(s, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	r := &running{srv: srv, logs: logs}
	select {
	case a := <-ready:
		r.proxy, r.adm, r.addrs = "http://"+a.Proxy, "http://"+a.Admin, a
	case err := <-done:
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	var stopErr error
	r.stop = func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// get answers within 5 s, or fails the test: nothing here may hang.
func get(t *testing.T, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Defect 1: an inbound secret file rewritten in place (truncated, then
// written) while a reload reads it must never leave the proxy without it.
func TestAReloadNeverSwitchesTheInboundSecretOff(t *testing.T) {
	f := newFarm(t)
	inbound := filepath.Join(f.dir, "inbound")
	writeFile(t, inbound, "open-sesame")
	env := f.environ("INBOUND_SECRET_FILE", inbound)
	s, err := config.Load("test", nil, env, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, s, Options{Reread: func() (*config.Settings, error) {
		return config.Load("test", nil, env, config.Everything)
	}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.WriteFile(inbound, []byte("open-sesame"), 0o600) // O_TRUNC, then the write
		}
	})
	const reloads = 2000
	open := 0
	for range reloads {
		r.srv.reread()
		req := httptest.NewRequest("GET", "http://127.0.0.1/api/me", nil)
		w := httptest.NewRecorder()
		r.srv.routes[0].handler.ServeHTTP(w, req)
		if w.Code != http.StatusUnauthorized {
			open++
		}
	}
	close(stop)
	wg.Wait()
	if open != 0 {
		t.Fatalf("after %d of %d reloads a request without the inbound secret was let through", open, reloads)
	}
	if !strings.Contains(r.logs.String(), "reload failed") {
		t.Log("no reload read the file half-written (the race did not happen this run)")
	}
}

// Defect 2: a setting that takes a restart is never applied by a later
// reload, whatever else that reload changes.
func TestASecondReloadDoesNotApplyAChangeThatWaitsForARestart(t *testing.T) {
	f := newFarm(t)
	s := f.settings(t)
	r := start(t, s, Options{})
	if code, body := get(t, r.proxy+"/api/me"); code != 401 && code != 200 {
		t.Fatalf("first request: %d %s", code, body) // the token is fetched
	}
	r.srv.Reload(f.settings(t, "CLIENT_ID", "Another App"))
	newSecret, _ := f.em.RegenerateSecret(f.app.ClientID)
	f.em.ExpireAllTokens()
	secondFile := filepath.Join(f.dir, "secret2")
	writeFile(t, secondFile, newSecret)
	r.srv.Reload(f.settings(t, "CLIENT_ID", "Another App", "CLIENT_SECRET_FILE", secondFile))
	if got := r.srv.settings.Load().Route.ClientID; got != f.app.ClientID {
		t.Fatalf("client id in effect: %q", got)
	}
	get(t, r.proxy+"/api/1/eggs-count") // a new token, with the new secret
	reqs := f.em.TokenRequests()
	last := reqs[len(reqs)-1]
	if last.ClientID != f.app.ClientID || last.Status != 200 {
		t.Fatalf("the token request after two reloads went out as %q (status %d)", last.ClientID, last.Status)
	}
	if n := strings.Count(r.logs.String(), "take effect only on restart"); n != 2 {
		t.Fatalf("the client id change was reported %d times, want at each reload", n)
	}
}

// Defect 5: a caller that announces a body and never sends it, or stops
// reading the answer, is cut off; connections beyond MAX_CONNS wait.
func TestSlowCallersAreCutOff(t *testing.T) {
	f := newFarm(t)
	big := bytes.Repeat([]byte("x"), 1<<20)
	var writeFailed atomic.Bool
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 100 { // 100 MiB
			if _, err := w.Write(big); err != nil {
				writeFailed.Store(true)
				return
			}
		}
	}))
	t.Cleanup(upstream.Close)
	r := start(t, f.settings(t, "TOKEN_URL", f.url+"/token", "UPSTREAM", upstream.URL, "REQUEST_TIMEOUT", "1s"), Options{})
	addr := strings.TrimPrefix(r.proxy, "http://")

	// 1,000 callers announcing a body they never send: each is answered
	// or cut off once REQUEST_TIMEOUT has passed, none is held.
	const callers = 1000
	conns := make([]net.Conn, 0, callers)
	for range callers {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "POST /api/1/eggs-count HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nabcd")
		conns = append(conns, c)
	}
	held := 0
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		answer, err := io.ReadAll(c) // until the server closes it
		if err != nil {
			held++
		}
		if i == 0 && !strings.HasPrefix(string(answer), "HTTP/1.1 408") {
			t.Errorf("a caller holding back its body got %.40q, want a 408", answer)
		}
	}
	t.Logf("%d of %d callers holding back their body were still connected after 20 s", held, callers)
	if held != 0 {
		t.Fatalf("%d of %d callers holding back their body kept their connection", held, callers)
	}

	// A caller that stops reading a 100 MiB answer.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = io.WriteString(c2, "GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	deadline := time.Now().Add(30 * time.Second)
	for !writeFailed.Load() {
		if time.Now().After(deadline) {
			t.Fatal("a caller that stopped reading still holds its connection and the upstream answer")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectionsBeyondMaxConnsWait(t *testing.T) {
	f := newFarm(t)
	r := start(t, f.settings(t, "MAX_CONNS", "2"), Options{})
	addr := strings.TrimPrefix(r.proxy, "http://")
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	answered := make(chan int, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Post(r.proxy+"/api/1/eggs-count", "", nil)
		if err != nil {
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	select {
	case code := <-answered:
		t.Fatalf("a third connection was served (%d) while two were held", code)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	if code := <-answered; code != 200 {
		t.Fatalf("after one closed: %d", code)
	}
	held[1].Close()
}

// A connection gives its slot back however it ends: closed by the caller
// after its request, or by the server (Connection: close), one after the
// other well beyond MAX_CONNS.
func TestConnectionsGiveTheirSlotBack(t *testing.T) {
	f := newFarm(t)
	r := start(t, f.settings(t, "MAX_CONNS", "2"), Options{})
	for i := range 6 {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: i%2 == 0}}
		resp, err := c.Post(r.proxy+"/api/1/eggs-count", "", nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.CloseIdleConnections()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d: %d", i+1, resp.StatusCode)
		}
	}
}

// A connection gives its slot back once however it ends, also when the
// caller, COOP or net/http ends it: after each such end, MAX_CONNS
// connections are served at once, and not one more.
func TestEveryWayAConnectionEndsGivesItsSlotBackOnce(t *testing.T) {
	f := newFarm(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/dies-mid-body": // ReverseProxy panics with http.ErrAbortHandler
			w.Header().Set("Content-Length", "1000")
			_, _ = io.WriteString(w, "the first bytes")
			w.(http.Flusher).Flush()
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		case "/switches": // a 101 the proxy refuses (502), never a tunnel
			if c, brw, err := http.NewResponseController(w).Hijack(); err == nil {
				_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
				_ = brw.Flush()
				c.Close()
			}
		case "/slow": // until the caller has gone
			<-r.Context().Done()
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(upstream.Close)
	r := start(t, f.settings(t, "TOKEN_URL", f.url+"/token", "UPSTREAM", upstream.URL, "MAX_CONNS", "2",
		"REQUEST_TIMEOUT", "1s", "MAX_HEADER_BYTES", "1024"), Options{})
	addr := strings.TrimPrefix(r.proxy, "http://")
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		return c
	}
	const host = "Host: 127.0.0.1\r\n"
	ends := []struct{ name, send, want string }{
		{"Connection: close", "GET /x HTTP/1.1\r\n" + host + "Connection: close\r\n\r\n", "HTTP/1.1 200"},
		{"header over net/http's limit", "GET /x HTTP/1.1\r\n" + host + "X-Big: " + strings.Repeat("a", 10000) + "\r\n\r\n", "HTTP/1.1 431"},
		{"malformed request line", "NOT HTTP\r\n\r\n", "HTTP/1.1 400"},
		{"body cut off by the read deadline", "POST /x HTTP/1.1\r\n" + host + "Content-Length: 10\r\n\r\nab", "HTTP/1.1 408"},
		{"COOP dies mid-body", "GET /dies-mid-body HTTP/1.1\r\n" + host + "\r\n", ""},
		{"websocket upgrade", "GET /switches HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "HTTP/1.1 502"},
		{"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 403"},
		{"h2c upgrade", "GET /x HTTP/1.1\r\n" + host + "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "HTTP/1.1 200"},
	}
	for _, e := range ends {
		c := dial()
		_, _ = io.WriteString(c, e.send)
		got, err := io.ReadAll(io.LimitReader(c, 15)) // to the server's close, or the status line
		c.Close()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%s: not served (a slot was not given back): %v", e.name, err)
		}
		if !strings.HasPrefix(string(got), e.want) {
			t.Fatalf("%s: got %q, want %q", e.name, got, e.want)
		}
	}
	gone := dial() // the caller goes away mid-request
	_, _ = io.WriteString(gone, "GET /slow HTTP/1.1\r\n"+host+"\r\n")
	time.Sleep(50 * time.Millisecond)
	gone.Close()

	// Two connections served and held: the two slots.
	var held []net.Conn
	for range 2 {
		c := dial()
		_, _ = io.WriteString(c, "GET /x HTTP/1.1\r\n"+host+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d of MAX_CONNS=2 not served (a slot was not given back): %v", len(held)+1, err)
		}
		resp.Body.Close()
		held = append(held, c)
	}
	third := make(chan error, 1)
	go func() {
		c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(r.proxy + "/x")
		if err == nil {
			resp.Body.Close()
		}
		third <- err
	}()
	select {
	case err := <-third:
		t.Fatalf("a third connection was served while two were held (a slot was given back twice): %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	if err := <-third; err != nil {
		t.Fatalf("the third connection, after one of two closed: %v", err)
	}
	held[1].Close()
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "limitListener).release") {
		t.Fatalf("a goroutine waits in release (given back more slots than taken):\n%s", stacks)
	}
}

// Defect 11: only a stale socket is ever removed.
func TestUnixListenRemovesNothingButAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "precious")
	empty := filepath.Join(dir, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, empty} {
		ln, err := listen("unix:" + path)
		if err == nil {
			ln.Close()
			t.Fatalf("listened on %s", path)
		}
		if !strings.Contains(err.Error(), "is not a socket") || strings.Count(err.Error(), "\n") != 0 {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "precious" {
		t.Fatal("the file was changed")
	}
	if info, err := os.Stat(empty); err != nil || !info.IsDir() {
		t.Fatal("the directory was removed")
	}
}

// Defect 15: a line at error level reaches the output at once, with the
// lines before it.
func TestErrorLinesAreWrittenAtOnce(t *testing.T) {
	var out syncBuffer
	lg := NewLogger(&out, "json", config.LogLevel{Level: zapcore.InfoLevel})
	log := lg.Log
	defer lg.Flush()
	log.Info("first")
	log.Error("second")
	if !strings.Contains(out.String(), "first") || !strings.Contains(out.String(), "second") {
		t.Fatalf("after an error line the output holds %q", out.String())
	}
}

// Defect 8: an API that rejects every token costs a few token requests,
// not one per caller request.
func TestAnAPIRejectingEveryTokenCausesNoTokenStorm(t *testing.T) {
	f := newFarm(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(api.Close)
	r := start(t, f.settings(t, "UPSTREAM", api.URL, "TOKEN_URL", f.url+"/token"), Options{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	deadline := time.Now().Add(3 * time.Second)
	var requests, unavailable atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				resp, err := client.Post(r.proxy+"/api/1/eggs-count", "", nil)
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				requests.Add(1)
				if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
					unavailable.Add(1)
				}
			}
		})
	}
	wg.Wait()
	fetches := f.em.CountTokenRequests("")
	t.Logf("%d caller requests in 3 s cost %d token requests (%d answered 503 + Retry-After)", requests.Load(), fetches, unavailable.Load())
	// One at start, one for the retry, then a backoff of 1 s doubling.
	if fetches > 5 || unavailable.Load() != requests.Load() {
		t.Fatalf("%d caller requests cost %d token requests; %d answered 503", requests.Load(), fetches, unavailable.Load())
	}
}

// A reload whose settings have no inbound secret (the file setting gone,
// as Reread may return whatever it reads) must not switch the inbound
// secret off: the listener it guards is the one in effect, and removing
// the secret is a change that waits for a restart.
func TestAReloadWithoutAnInboundSecretKeepsTheOneInEffect(t *testing.T) {
	f := newFarm(t)
	inbound := filepath.Join(f.dir, "inbound")
	writeFile(t, inbound, "open-sesame")
	r := start(t, f.settings(t, "INBOUND_SECRET_FILE", inbound), Options{})
	for i := range 2 { // a second reload must not apply it either
		r.srv.Reload(f.settings(t))
		if code, body := get(t, r.proxy+"/api/1/eggs-count"); !strings.Contains(body, "inbound_credential_required") {
			t.Fatalf("reload %d: a request without the inbound secret got %d %s", i+1, code, body)
		}
		if code, body := get(t, r.proxy+"/api/1/eggs-count", "Proxy-Authorization", "Bearer open-sesame"); strings.Contains(body, "inbound_credential_required") {
			t.Fatalf("reload %d: a request with the inbound secret got %d %s", i+1, code, body)
		}
	}
	if !strings.Contains(r.logs.String(), "INBOUND_SECRET") {
		t.Fatalf("the kept inbound secret is not reported as waiting for a restart:\n%s", r.logs.String())
	}
}

// A secret file replaced by another of the same size and time (cp -p, or
// Kubernetes swapping a Secret volume's link) is noticed.
func TestASecretFileReplacedWithTheSameSizeAndTimeIsNoticed(t *testing.T) {
	dir := t.TempDir()
	path, other := filepath.Join(dir, "secret"), filepath.Join(dir, "new")
	writeFile(t, path, "aaaa")
	writeFile(t, other, "bbbb")
	when := time.Now().Add(-time.Hour)
	for _, p := range []string{path, other} {
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
	}
	srv := &Server{}
	srv.settings.Store(&config.Settings{Route: config.Route{ClientSecretFile: path}})
	seen := srv.secretFiles()
	if !unchanged(seen, srv.secretFiles()) {
		t.Fatal("an untouched file looks changed")
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if unchanged(seen, srv.secretFiles()) {
		t.Fatal("a file put in place with the same size and time was not noticed")
	}
}

func TestLogTimesAreZapsISO8601(t *testing.T) {
	cfg := zapcore.EncoderConfig{TimeKey: "t", EncodeTime: encodeTime}
	want := zapcore.EncoderConfig{TimeKey: "t", EncodeTime: zapcore.ISO8601TimeEncoder}
	east := time.FixedZone("east", 5*3600+30*60)
	for _, at := range []time.Time{
		time.Date(2026, 11, 29, 10, 16, 6, 123456789, time.UTC),
		time.Date(2026, 11, 29, 10, 16, 6, 999999999, time.UTC),
		time.Date(2026, 11, 29, 10, 16, 7, 0, time.UTC),
		time.Date(2026, 11, 29, 10, 16, 7, 5_000_000, east),
	} {
		got, _ := zapcore.NewJSONEncoder(cfg).EncodeEntry(zapcore.Entry{Time: at}, nil)
		exp, _ := zapcore.NewJSONEncoder(want).EncodeEntry(zapcore.Entry{Time: at}, nil)
		if got.String() != exp.String() {
			t.Errorf("%v: %s, want %s", at, got, exp)
		}
	}
}

// A COOP that stalls in the middle of its answer, to a caller that waits
// patiently, holds nothing past REQUEST_TIMEOUT: after a request without a
// body, and after one whose body was streamed to COOP (larger than
// RETRY_BODY_LIMIT), whose end starts the bound.
func TestAnUpstreamStallingMidBodyIsCutOff(t *testing.T) {
	for _, body := range []int{0, 2 << 20} {
		t.Run(fmt.Sprintf("request body of %d bytes", body), func(t *testing.T) {
			f := newFarm(t)
			cancelled, release := make(chan struct{}), make(chan struct{})
			upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if n, _ := io.Copy(io.Discard, r.Body); n != int64(body) {
					t.Errorf("COOP got a body of %d bytes, want %d", n, body)
				}
				w.Header().Set("Content-Length", "1000")
				_, _ = io.WriteString(w, "the first bytes")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					close(cancelled)
				case <-release: // the test is over
				}
			}))
			t.Cleanup(upstream.Close)
			t.Cleanup(func() { close(release) }) // before upstream.Close: cleanups run last first
			r := start(t, f.settings(t, "TOKEN_URL", f.url+"/token", "UPSTREAM", upstream.URL, "REQUEST_TIMEOUT", "1s", "SHUTDOWN_TIMEOUT", "1s"), Options{})
			go func() {
				resp, err := http.Post(r.proxy+"/api/me", "application/octet-stream", bytes.NewReader(make([]byte, body)))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			select {
			case <-cancelled:
			case <-time.After(20 * time.Second):
				t.Fatal("a request to a COOP stalled mid-body is still held")
			}
		})
	}
}

// REQUEST_TIMEOUT counts from the request's arrival: time spent waiting for
// a token is part of it. A COOP still silent when it has passed is a 504
// (not a connection closed without an answer, as for a caller gone).
func TestRequestTimeoutCountsTheWaitForAToken(t *testing.T) {
	f := newFarm(t)
	slowToken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(700 * time.Millisecond)
		f.em.ServeHTTP(w, r)
	}))
	t.Cleanup(slowToken.Close)
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(upstream.Close)
	t.Cleanup(func() { close(release) })
	r := start(t, f.settings(t, "TOKEN_URL", slowToken.URL+"/token", "UPSTREAM", upstream.URL, "REQUEST_TIMEOUT", "1s", "SHUTDOWN_TIMEOUT", "1s"), Options{})
	resp, err := http.Get(r.proxy + "/api/me")
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(body), "upstream_timeout") {
		t.Fatalf("got %d %s, want 504 upstream_timeout", resp.StatusCode, body)
	}
}

// A listener that fails (not a shutdown) ends Run: the admin listener must
// close with the others, not be left open with its goroutine serving.
func TestAFailedListenerEndingRunClosesTheAdminListener(t *testing.T) {
	f := newFarm(t)
	ready := make(chan Addrs, 1)
	srv, err := New(f.settings(t), Options{Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	var addrs Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	srv.mu.Lock()
	for _, fr := range srv.fronts {
		_ = fr.ln.Close() // Serve returns an error other than ErrServerClosed
	}
	srv.mu.Unlock()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its listener failed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end after its listener failed")
	}
	if c, err := net.DialTimeout("tcp", addrs.Admin, time.Second); err == nil {
		c.Close()
		t.Fatalf("the admin listener %s still accepts connections after Run returned", addrs.Admin)
	}
}

// Without Options.Requests, request lines are Log.Named("proxy")'s as they
// are with it: the environment's route is not named, a file's route once.
func TestRequestLinesWithoutOptionsRequestsNameTheRouteAsRouteLabelSays(t *testing.T) {
	f := newFarm(t)
	r := start(t, f.settings(t), Options{})
	get(t, r.proxy+"/api/me")
	_ = r.stop()
	found := false
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"request"`) {
			found = true
			if strings.Contains(l, `"route"`) {
				t.Errorf("the environment's route is named in its request line: %s", l)
			}
		}
	}
	if !found {
		t.Fatalf("no request line:\n%s", r.logs.String())
	}
}
