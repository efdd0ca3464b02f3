//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// TestKilledServeKeepsTheFarmersGrant measures issue 7's defect 7 in the
// issue's own scenario, through the real `serve`: the farmer's grant
// (authorization code; COOP rotates the refresh token on every use), its
// access tokens revoked at COOP in a loop so that serve refreshes (401
// invalid_token, refresh, retry), and serve SIGKILLed at a random moment,
// 100 times in a row on one store. After each kill the store, opened as the
// next process opens it (recovering a journalled write), must hold the
// refresh token that is live at COOP. The target is at most 2 grants lost
// in 100 kills.
//
// A kill between COOP's rotation and the write(2) of its answer to the
// journal loses the grant whatever the store does: the live token is then
// only in the answer in flight or in the dead process's memory (tokenstore's
// TestKilledRefreshKeepsTheLiveGrant aims its kills at that window). That
// window is about 1-1.5 ms under -race (0.3-0.5 ms without): COOP's answer
// crossing loopback and read by x/oauth2, then serve's own log line, the
// encoding of the file and the write. Here the kills fall anywhere in a run
// of serve, start-up included, and serve refreshes as often as the
// revocations and its backoff let it: at once when the token it starts with
// is revoked (some 35 ms after its start), then, a replacement token
// rejected within 10 s backing off, not before 0.5 s later. About one
// refresh per run, then, and 3 grants lost in 2,000 kills measured (idle,
// with a second run alongside, and beside two CPU hogs); the count of 100
// kills passes 2 about once in 1,000 runs (Poisson). A grant lost with the
// live token in a file (the store did not recover it) fails the test
// whatever the count.
func TestKilledServeKeepsTheFarmersGrant(t *testing.T) {
	const (
		kills   = 100
		maxLost = 2
		// Each kill lands at random within this after serve is started:
		// some 35 s in all.
		within = 600 * time.Millisecond
	)
	k := newKillRig(t)
	for i := range kills {
		k.run(t, i, rand.N(within))
	}
	k.last(t)
	t.Logf("%d SIGKILLs of serve in %v: %d lost the grant (%d with the live refresh token in a file); "+
		"%d fell inside a store update (a temporary file left), %d recovered from it; %d refreshes at COOP; callers got %s",
		kills, time.Since(k.began).Round(time.Millisecond), k.lost, k.stranded, k.inUpdate, k.recovered, k.f.refreshRequests(), &k.answers)
	if k.stranded > 0 {
		t.Errorf("%d kills lost a live refresh token that had reached a file", k.stranded)
	}
	if k.lost > maxLost {
		t.Errorf("%d of %d kills lost the farmer's grant, want at most %d", k.lost, kills, maxLost)
	}
	// Not a vacuous pass: most runs of serve refresh before the kill.
	if n := k.f.refreshRequests(); n < kills/4 {
		t.Errorf("only %d refreshes in %d runs of serve: the kills did not meet the refreshes", n, kills)
	}
}

// killRig is the state of TestKilledServeKeepsTheFarmersGrant.
type killRig struct {
	f                   *farm
	cfg                 *config.Settings
	sock                string                 // reused: each child replaces its predecessor's stale socket
	inUse               atomic.Pointer[string] // the access token COOP's API saw last
	began               time.Time
	lost, stranded      int // grants lost; of those, with the live token in a file
	inUpdate, recovered int // kills that left a temporary file; recovered from it
	answers             answerTally
}

// newKillRig logs the farmer in, and watches the access tokens COOP's API
// receives.
func newKillRig(t *testing.T) *killRig {
	k := &killRig{f: newFarm(t), sock: filepath.Join(t.TempDir(), "proxy.sock"), began: time.Now()}
	k.cfg = k.f.farmerConfig(t)
	if _, err := k.f.login(t, k.cfg, true); err != nil {
		t.Fatal(err)
	}
	k.f.watchAPI(func(r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		k.inUse.Store(&tok)
	})
	return k
}

// revoke revokes, at COOP, the access token serve used last.
func (k *killRig) revoke() {
	if tok := k.inUse.Load(); tok != nil {
		k.f.em.RevokeToken(*tok)
	}
}

// run starts serve, drives it once it listens, SIGKILLs it delay after its
// start, and checks the grant it left.
func (k *killRig) run(t *testing.T, i int, delay time.Duration) {
	t.Helper()
	c := startChild(t, k.cfg, config.EnvPrefix+"LISTEN=unix:"+k.sock)
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = c.cmd.Wait(); close(exited) }()
	killed := make(chan error, 1)
	go func() { killed <- killAfter(c.cmd.Process, delay) }()
	ctx, stopDriving := context.WithCancel(t.Context())
	var driving sync.WaitGroup
	if listening(k.sock, exited) {
		driving.Go(func() { drive(ctx, unixClient(k.sock), k.revoke, &k.answers) })
	}
	<-exited
	stopDriving()
	driving.Wait()
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("run %d: serve ended otherwise than by the kill (%v):\n%s", i, waitErr, c.stderr.String())
	}
	if secretsRE.MatchString(c.stderr.String()) {
		t.Errorf("run %d: the child's log holds a secret or token", i)
	}
	if where := k.check(t); where != "" {
		k.lost++
		t.Logf("run %d, killed %v after its start: grant lost, the live refresh token %s; logging in again", i, delay, where)
		if _, err := k.f.login(t, k.cfg, true); err != nil {
			t.Fatal(err)
		}
	}
}

// check opens the store as the next process would, and returns "" when it
// holds the refresh token live at COOP, or else where the live token was.
func (k *killRig) check(t *testing.T) string {
	t.Helper()
	if left, _ := filepath.Glob(k.cfg.Store + ".tmp-*"); len(left) > 0 {
		k.inUpdate++
	}
	onDisk := tokensIn(t, filepath.Dir(k.cfg.Store))
	st, err := tokenstore.Open(k.cfg.Store, tokenstore.WithRecoverHandler(func(string, string) { k.recovered++ }))
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := st.Load(t.Context(), server.StoreKey(&k.cfg.Route))
	if err != nil {
		t.Fatal(err)
	}
	if ok && k.f.em.RefreshTokenLive(rec.RefreshToken) {
		return ""
	}
	for _, tok := range onDisk {
		if k.f.em.RefreshTokenLive(tok) {
			k.stranded++
			return "LEFT IN A FILE that the store did not recover"
		}
	}
	return "in flight (killed between COOP's rotation and the journal write)"
}

// last has the next serve use the grant the last kill left: the refresh
// it may have sent just before dying can reach COOP after check looked.
func (k *killRig) last(t *testing.T) {
	t.Helper()
	k.f.em.RevokeToken(storedRecord(t, k.cfg).AccessToken)
	refreshes := k.f.refreshRequests()
	c := startChild(t, k.cfg, config.EnvPrefix+"LISTEN=unix:"+k.sock)
	waitSocket(t, c, k.sock)
	switch a, err := send(t.Context(), unixClient(k.sock)); {
	case a == "503 login_required":
		k.lost++
		t.Log("the last kill lost the grant: its refresh reached COOP after the check")
	case err != nil || a != "200" || k.f.refreshRequests() != refreshes+1:
		t.Fatalf("after the last kill: %q %v, %d refreshes (want 1)", a, err, k.f.refreshRequests()-refreshes)
	}
	c.stop(t)
}

// drive is the caller side of the kill test: it revokes the access token in
// use at COOP, sends a few requests through serve (the first makes it
// refresh and retry, or answer token_rejected while it backs off), and again,
// until ctx ends. Requests that fail because serve died are not counted.
func drive(ctx context.Context, client *http.Client, revoke func(), answers *answerTally) {
	defer client.CloseIdleConnections()
	for {
		revoke()
		for range 3 {
			a, err := send(ctx, client)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				answers.add(a)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// send sends one request through serve and returns its status, with the
// error code of a 503.
func send(ctx context.Context, client *http.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://coop-proxy/api/1/eggs-count", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	a := fmt.Sprint(resp.StatusCode)
	if resp.StatusCode == http.StatusServiceUnavailable {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		a += " " + e.Error
	}
	return a, nil
}

// answerTally counts answers by status (and 503 error code).
type answerTally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *answerTally) add(a string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[a]++
}

func (t *answerTally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var parts []string
	for _, a := range slices.Sorted(maps.Keys(t.n)) {
		parts = append(parts, fmt.Sprintf("%s ×%d", a, t.n[a]))
	}
	return strings.Join(parts, ", ")
}

// waitSocket waits until the child accepts connections on its Unix socket.
// (Its "listening" log line is buffered for up to a second.)
func waitSocket(t *testing.T, c *child, path string) {
	t.Helper()
	if !listening(path, nil) {
		t.Fatalf("the child does not listen on %s:\n%s", path, c.stderr.String())
	}
}

// listening waits until a child accepts connections on the Unix socket at
// path, and reports whether it does: false once exited is closed, or after
// 10 s.
func listening(path string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("unix", path); err == nil {
			conn.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(2 * time.Millisecond):
		}
	}
	return false
}

// killAfter sends SIGKILL to p after d. It sleeps in nanosleep(2), woken
// by the kernel alone: a Go timer in this process could fire in step with
// its network wakeups, bunching the kills just after COOP answered.
func killAfter(p *os.Process, d time.Duration) error {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// quotedToken is a JSON string that looks like one of COOP's tokens.
var quotedToken = regexp.MustCompile(`"([0-9a-f]{40})"`)

// tokensIn returns what looks like COOP's tokens in the token file and its
// temporary files in dir.
func tokensIn(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var toks []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".lock") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range quotedToken.FindAllStringSubmatch(string(data), -1) {
			toks = append(toks, m[1])
		}
	}
	return toks
}
