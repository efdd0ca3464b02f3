package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"image/png"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// testTimeout bounds each test whole: the browser, the login command and
// every step between. Generous, so that only a hang trips it.
const testTimeout = 60 * time.Second

// screenshotPath is where UPDATE_SCREENSHOT=1 writes the success callback
// page, for the README.
const screenshotPath = "../../docs/login-callback.png"

// bin is the coop-proxy binary TestMain builds.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "coop-proxy-browsertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "coop-proxy")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/coop-proxy/coop-proxy/cmd/coop-proxy").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building coop-proxy: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// farm is the COOP emulator with Brent, his application registered with a
// loopback redirect URI on a free port, and the settings for coop-proxy's
// commands against it.
type farm struct {
	coopURL, email, password, clientID, redirectURI, store string
	env                                                    []string
}

func newFarm(t *testing.T) *farm {
	em := coop.New(coop.Options{})
	f := &farm{email: "brent@example.com", password: rand.Text()[:16], clientID: "Brent's Lazy CRON Job"}
	brent := em.AddUser(f.email, f.password, "Brent", "Farmer")
	f.redirectURI = "http://" + freeLoopbackAddr(t) + "/callback"
	app := em.AddApp(brent.ID, f.clientID, coop.AllScopes(), f.redirectURI)
	srv := httptest.NewServer(em)
	t.Cleanup(srv.Close)
	f.coopURL = srv.URL

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(app.ClientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.store = filepath.Join(dir, "tokens.json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COOP_PROXY_") {
			f.env = append(f.env, kv)
		}
	}
	f.env = append(f.env,
		"COOP_PROXY_UPSTREAM="+f.coopURL,
		"COOP_PROXY_CLIENT_ID="+f.clientID,
		"COOP_PROXY_CLIENT_SECRET_FILE="+secretFile,
		"COOP_PROXY_STORE="+f.store,
		"COOP_PROXY_REDIRECT_URI="+f.redirectURI,
	)
	return f
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// loginRun is `coop-proxy login` running as a subprocess.
type loginRun struct {
	authURL chan string   // the authorization address it printed
	done    chan struct{} // closed when it has exited; then the fields below are set
	stdout  strings.Builder
	stderr  bytes.Buffer
	err     error
}

// startLogin runs `coop-proxy login --grant authorization_code --no-browser`;
// the process is killed when ctx ends.
func (f *farm) startLogin(ctx context.Context, t *testing.T) *loginRun {
	cmd := exec.CommandContext(ctx, bin, "login", "--grant", "authorization_code", "--no-browser")
	cmd.Env = f.env
	r := &loginRun{authURL: make(chan string, 1), done: make(chan struct{})}
	cmd.Stderr = &r.stderr
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	authLine := regexp.MustCompile(regexp.QuoteMeta(f.coopURL+"/authorize?") + `\S+`)
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			r.stdout.WriteString(sc.Text() + "\n")
			if u := authLine.FindString(sc.Text()); u != "" && !sent {
				r.authURL <- u
				sent = true
			}
		}
		r.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Cancel() // kills it, if a failed test left it waiting
		<-r.done
	})
	return r
}

// address waits for the authorization address the command prints.
func (r *loginRun) address(ctx context.Context, t *testing.T) string {
	select {
	case u := <-r.authURL:
		return u
	case <-r.done:
		t.Fatalf("login exited before printing the address to open: %v\n%s%s", r.err, r.stdout.String(), r.stderr.String())
	case <-ctx.Done():
		t.Fatal("login printed no address to open in time")
	}
	return ""
}

// wait waits for the command to exit.
func (r *loginRun) wait(ctx context.Context, t *testing.T) {
	select {
	case <-r.done:
	case <-ctx.Done():
		t.Fatal("login did not exit after the browser came back")
	}
}

// chromium returns the path of the Chromium binary: Debian calls it
// chromium, other distributions chromium-browser.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: `make test` installs it (.ci/deps), or apt-get install chromium")
	return ""
}

// newBrowser starts headless Chromium with a fresh profile; it closes when
// the test ends or ctx does.
func newBrowser(ctx context.Context, t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root, Chromium's sandbox refuses to start
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() }) // before the profile dir is removed
	return bctx
}

// throughConsent opens the authorization address, logs in on COOP's form as
// the farmer would, and clicks approve or deny on the consent page. It
// returns the page the browser lands on: its address without the query (which
// holds the code), its HTTP status and its text.
func (f *farm) throughConsent(b context.Context, t *testing.T, authURL, choice string) (landed string, status int64, text string) {
	t.Helper()
	if err := chromedp.Do(b, chromedp.Navigate(authURL)); err != nil {
		t.Fatalf("opening the authorization address: %v", err)
	}
	if err := chromedp.Do(b,
		chromedp.SendKeys(`//label[contains(., "Email")]/input`, f.email),
		chromedp.SendKeys(`//label[contains(., "Password")]/input`, f.password),
	); err != nil {
		t.Fatalf("filling COOP's login form: %v", err)
	}
	if _, err := chromedp.RunResponse(b, chromedp.Click(`//button[normalize-space()="Login!"]`)); err != nil {
		t.Fatalf("submitting COOP's login form: %v", err)
	}
	consent, err := chromedp.Run(b, chromedp.Text(chromedp.CSS("body")))
	if err != nil || !strings.Contains(consent, `Authorize "`+f.clientID+`"`) {
		t.Fatalf("no consent page after COOP's login (%v):\n%s", err, consent)
	}
	resp, err := chromedp.RunResponse(b, chromedp.Click(`//a[normalize-space()="`+choice+`"]`))
	if err != nil {
		t.Fatalf("clicking %q: %v", choice, err)
	}
	text, err = chromedp.Run(b, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatalf("reading the page after %q: %v", choice, err)
	}
	landed, _, _ = strings.Cut(resp.URL, "?")
	return landed, resp.Status, text
}

func TestBrowserLoginApproved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	f := newFarm(t)
	run := f.startLogin(ctx, t)
	b := newBrowser(ctx, t)

	landed, status, text := f.throughConsent(b, t, run.address(ctx, t), "Yes, I Authorize This Request")
	if landed != f.redirectURI || status != 200 {
		t.Fatalf("landed on %d %s, want coop-proxy's callback %s", status, landed, f.redirectURI)
	}
	for _, want := range []string{"You are logged in to coop-proxy", "The terminal where you ran the login", "You can close this tab."} {
		if !strings.Contains(text, want) {
			t.Errorf("the callback page does not say %q:\n%s", want, text)
		}
	}
	if title, err := chromedp.Run(b, chromedp.Title()); err != nil || title != "coop-proxy: logged in" {
		t.Errorf("the tab's title: %q %v", title, err)
	}
	if err := chromedp.Do(b, chromedp.EmulateViewport(800, 250)); err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(b, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(shot)); err != nil || img.Bounds().Dx() != 800 || img.Bounds().Dy() != 250 {
		t.Fatalf("screenshot: not an 800×250 PNG (%v)", err)
	}
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(screenshotPath, shot, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	run.wait(ctx, t)
	out := run.stdout.String()
	if run.err != nil {
		t.Fatalf("login: %v\n%s%s", run.err, out, run.stderr.String())
	}
	if want := fmt.Sprintf("Logged in as %s (farmer 1) for %q", f.email, f.clientID); !strings.Contains(out, want) {
		t.Errorf("login output lacks %q:\n%s", want, out)
	}

	st := exec.CommandContext(ctx, bin, "status", "--grant", "authorization_code")
	st.Env = f.env
	shown, err := st.CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, shown)
	}
	for _, want := range []string{f.email + " (id 1)", strings.Join(coop.AllScopes(), " "), "refresh token:  held"} {
		if !strings.Contains(string(shown), want) {
			t.Errorf("status lacks %q:\n%s", want, shown)
		}
	}
	rec, ok := f.stored(ctx, t)
	if !ok || rec.Email != f.email || rec.UserID != 1 || rec.RefreshToken == "" || !slices.Equal(rec.Scopes, coop.AllScopes()) {
		t.Fatalf("stored grant: %v (found: %v)", rec, ok)
	}
}

func TestBrowserLoginDenied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	f := newFarm(t)
	run := f.startLogin(ctx, t)
	b := newBrowser(ctx, t)

	landed, status, text := f.throughConsent(b, t, run.address(ctx, t), "get me out of here!")
	if landed != f.redirectURI || status != 400 {
		t.Fatalf("landed on %d %s, want coop-proxy's callback %s", status, landed, f.redirectURI)
	}
	for _, want := range []string{"The login to coop-proxy failed", "Login refused on COOP", "nothing was saved", "run coop-proxy login again"} {
		if !strings.Contains(text, want) {
			t.Errorf("the callback page does not say %q:\n%s", want, text)
		}
	}

	run.wait(ctx, t)
	stderr := strings.TrimSpace(run.stderr.String())
	if run.err == nil || strings.Contains(stderr, "\n") || !strings.Contains(stderr, "login refused on COOP") {
		t.Errorf("login: %v, want a non-zero exit with one line saying the farmer refused; stderr:\n%s", run.err, stderr)
	}
	if _, ok := f.stored(ctx, t); ok {
		t.Fatal("a denied login stored a grant")
	}
}

// stored reads the farmer's grant from the store, as serve would find it.
func (f *farm) stored(ctx context.Context, t *testing.T) (tokenstore.Record, bool) {
	st, err := tokenstore.Open(f.store)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.Keys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) > 1 {
		t.Fatalf("the store holds %d grants: %q", len(keys), keys)
	}
	rec, ok, err := st.Load(ctx, tokenstore.Key{TokenURL: f.coopURL + "/token", ClientID: f.clientID, GrantType: "authorization_code"})
	if err != nil {
		t.Fatal(err)
	}
	return rec, ok
}
