//go:build unix

package replicas

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// The shape of a run: issue 9 §6 asks for 3 replicas × 64 callers across
// 10 token expiries.
const (
	replicas = 3
	callers  = 64
	expiries = 10
	// every spaces the expiries: the emulator expires every access token
	// at once (coop.Server.ExpireAllTokens) in the middle of each period.
	// The proxy takes tokens living 30 s at least (shorter ones are
	// expired before use), so waiting for natural expiries would take 10
	// × 15 s or more; and a token rejected within 10 s of its issue makes
	// the proxy back off (tokensource.Cache.Invalidate's rejectWindow):
	// hence 11 s.
	every = 11 * time.Second
	// window: a caller's request that starts within this after an expiry
	// counts as made during the refresh it causes.
	window = time.Second
)

var scopes = []string{"eggs-collect", "eggs-count", "profile"}

// BenchmarkReplicas runs each store (the token file on one host, Redis)
// with each grant (client credentials; the farmer's, refreshed with a
// rotating refresh token). One iteration is one run of 10 expiries: run it
// with -benchtime=1x.
func BenchmarkReplicas(b *testing.B) {
	bin := build(b)
	for _, store := range []string{"file", "redis"} {
		for _, grant := range []config.Grant{config.ClientCredentials, config.AuthorizationCode} {
			b.Run(store+"/"+string(grant), func(b *testing.B) {
				var r result
				for b.Loop() {
					r = run(b, bin, store, grant)
				}
				r.report(b)
			})
		}
	}
}

// build compiles coop-proxy into a temporary directory.
func build(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "coop-proxy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/coop-proxy/coop-proxy/cmd/coop-proxy").CombinedOutput()
	if err != nil {
		b.Fatalf("building coop-proxy: %v\n%s", err, out)
	}
	return bin
}

// call is one caller's request: when it started (since the load began),
// how long it took, and the answer other than a 200 ("" for a 200).
type call struct {
	start, took time.Duration
	failure     string
}

// result is what one run measured.
type result struct {
	tokenRequests int
	calls         []call
	near, far     []time.Duration // latencies of requests near a token request, and of the others
}

func (r result) report(b *testing.B) {
	failed, failures := 0, map[string]int{}
	for _, c := range r.calls {
		if c.failure != "" {
			failed++
			failures[c.failure]++
		}
	}
	b.ReportMetric(float64(r.tokenRequests), "token-requests")
	b.ReportMetric(float64(r.tokenRequests)/expiries, "token-requests/expiry")
	b.ReportMetric(float64(len(r.calls)), "requests")
	b.ReportMetric(float64(failed), "failed")
	b.ReportMetric(ms(p99(r.near)), "p99-refresh-ms")
	b.ReportMetric(ms(p99(r.far)), "p99-other-ms")
	b.ReportMetric(ms(slices.Max(append(r.near, 0))), "max-refresh-ms")
	b.ReportMetric(ms(slices.Max(append(r.far, 0))), "max-other-ms")
	b.ReportMetric(float64(len(r.near)), "refresh-requests")
	b.Logf("%d token requests for %d expiries; %d requests (%d failed); p99 %.2f ms within %v after an expiry (%d requests), %.2f ms otherwise",
		r.tokenRequests, expiries, len(r.calls), failed, ms(p99(r.near)), window, len(r.near), ms(p99(r.far)))
	for f, n := range failures {
		b.Logf("%d × %s", n, f)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func p99(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// run starts the emulator, the store and three replicas, loads them for
// expiries × every while the emulator expires every token once per
// period, and stops them.
func run(b *testing.B, bin, store string, grant config.Grant) result {
	b.Helper()
	em := coop.New(coop.Options{Now: time.Now})
	brent := em.AddUser("brent@example.com", "brent-password", "Brent", "Farmer")
	app := em.AddApp(brent.ID, "bench", scopes, "http://127.0.0.1:9/callback")
	upstream := httptest.NewServer(em)
	defer upstream.Close()

	shared := b.TempDir()
	settings := map[string]string{
		"UPSTREAM": upstream.URL, "CLIENT_ID": app.ClientID, "GRANT": string(grant),
		"LISTEN": "127.0.0.1:0", "ADMIN_LISTEN": "off", "LOG_FORMAT": "json",
		"STORE": filepath.Join(shared, "tokens.json"), "CLIENT_SECRET_FILE": write(b, shared, "secret", app.ClientSecret),
	}
	if grant == config.AuthorizationCode {
		settings["SCOPES"] = strings.Join(scopes, " ")
	}
	var key []byte
	if store == "redis" {
		rs := redistest.Start(b, redistest.Options{})
		key = make([]byte, 32)
		_, _ = rand.Read(key)
		settings["STORE"] = rs.URL()
		settings["STORE_KEY_FILE"] = write(b, shared, "keys", base64.StdEncoding.EncodeToString(key))
	}
	if grant == config.AuthorizationCode {
		login(b, em, app, brent, settings)
	}

	var urls []string
	for i := range replicas {
		env := maps.Clone(settings)
		if store == "redis" { // each replica in a directory of its own
			dir := b.TempDir()
			env["CLIENT_SECRET_FILE"] = write(b, dir, "secret", app.ClientSecret)
			env["STORE_KEY_FILE"] = write(b, dir, "keys", base64.StdEncoding.EncodeToString(key))
			env["REPLICA"] = fmt.Sprintf("replica-%d", i)
		}
		urls = append(urls, serve(b, bin, env))
	}
	for _, u := range urls {
		warm(b, u)
	}

	start := time.Now()
	expired := make(chan []time.Duration, 1)
	go func() {
		var at []time.Duration // since start
		for k := range expiries {
			time.Sleep(time.Until(start.Add(time.Duration(k)*every + every/2)))
			em.ExpireAllTokens()
			at = append(at, time.Since(start))
		}
		expired <- at
	}()
	calls := load(urls, start, expiries*every)
	at := <-expired
	r := result{calls: calls}
	for _, tr := range em.TokenRequests() {
		if tr.GrantType == tokenGrant(grant) && tr.At.After(start) {
			r.tokenRequests++
		}
	}
	for _, c := range calls {
		if afterAny(c.start, at) {
			r.near = append(r.near, c.took)
		} else {
			r.far = append(r.far, c.took)
		}
	}
	return r
}

// tokenGrant is the grant type of the token requests that renew grant's
// tokens.
func tokenGrant(grant config.Grant) string {
	if grant == config.AuthorizationCode {
		return "refresh_token"
	}
	return "client_credentials"
}

// afterAny reports whether t is within window after one of at.
func afterAny(t time.Duration, at []time.Duration) bool {
	for _, a := range at {
		if t >= a && t < a+window {
			return true
		}
	}
	return false
}

func write(b *testing.B, dir, name, content string) string {
	b.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	return path
}

// environ is settings as COOP_PROXY_ variables.
func environ(settings map[string]string) map[string]string {
	env := map[string]string{}
	for k, v := range settings {
		env[config.EnvPrefix+k] = v
	}
	return env
}

// login stores the farmer's grant, as `coop-proxy login` would: tokens
// the emulator issued to the app for brent, with a refresh token.
func login(b *testing.B, em *coop.Server, app coop.App, brent coop.User, settings map[string]string) {
	b.Helper()
	cfg, err := config.Load("bench", nil, environ(settings), config.Everything)
	if err != nil {
		b.Fatal(err)
	}
	k := server.StoreKey(&cfg.Route)
	st, err := server.OpenBackend(context.Background(), cfg, k, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	access, refresh := em.IssueToken(app.ClientID, brent.ID, scopes, true)
	now := time.Now()
	rec := tokenstore.Record{AccessToken: access, TokenType: "Bearer", RefreshToken: refresh, Expiry: now.Add(24 * time.Hour),
		Scopes: scopes, UserID: brent.ID, Email: brent.Email, GrantedAt: now}
	if _, err := st.Update(context.Background(), k, func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &rec, nil }); err != nil {
		b.Fatal(err)
	}
}

var listening = regexp.MustCompile(`"listen":"([^"]+)"`)

// serve starts `coop-proxy serve` with settings (and none of the caller's
// COOP_PROXY_ variables), its log in a file, stopped when b ends; it
// returns the proxy's URL.
func serve(b *testing.B, bin string, settings map[string]string) string {
	b.Helper()
	cmd := exec.Command(bin, "serve")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, config.EnvPrefix) {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range environ(settings) {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logPath := filepath.Join(b.TempDir(), "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if addr := firstMatch(logPath); addr != "" {
			return "http://" + addr
		}
	}
	log, _ := os.ReadFile(logPath)
	b.Fatalf("coop-proxy serve does not listen:\n%s", log)
	return ""
}

// firstMatch is the address of the "listening" line in the log at path.
func firstMatch(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := listening.FindStringSubmatch(sc.Text()); m != nil {
			return m[1]
		}
	}
	return ""
}

const apiPath = "/api/1/eggs-count"

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: callers}}

// warm waits for the replica at u to answer 200.
func warm(b *testing.B, u string) {
	b.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Post(u+apiPath, "", nil); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	b.Fatalf("%s does not answer 200", u)
}

// load has callers callers, spread over urls, each call the API in a loop
// for d, and returns their calls.
func load(urls []string, start time.Time, d time.Duration) []call {
	var mu sync.Mutex
	var all []call
	var wg sync.WaitGroup
	for i := range callers {
		u := urls[i%len(urls)] + apiPath
		wg.Go(func() {
			var mine []call
			for {
				t := time.Now()
				if t.Sub(start) >= d {
					break
				}
				failure := ""
				resp, err := client.Post(u, "", nil)
				if err != nil {
					failure = err.Error()
				} else {
					if resp.StatusCode != http.StatusOK {
						body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
						failure = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
					}
					resp.Body.Close()
				}
				mine = append(mine, call{start: t.Sub(start), took: time.Since(t), failure: failure})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}
