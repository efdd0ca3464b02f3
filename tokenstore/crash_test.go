//go:build linux

package tokenstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Environment of the refreshing process started by TestKilledRefreshKeepsTheLiveGrant.
const (
	envRefreshStore  = "TOKENSTORE_REFRESH_STORE"  // the token file
	envRefreshURL    = "TOKENSTORE_REFRESH_URL"    // COOP's token endpoint
	envRefreshSecret = "TOKENSTORE_REFRESH_SECRET" // the emulated application's secret
)

const crashClientID = "crash-test"

// crashGrant refreshes the farmer's grant as `serve` does.
func crashGrant(tokenURL, secret string, client *http.Client) *tokensource.Refresh {
	return &tokensource.Refresh{
		Config: &oauth2.Config{
			ClientID:     crashClientID,
			ClientSecret: secret,
			Endpoint:     oauth2.Endpoint{TokenURL: tokenURL, AuthStyle: oauth2.AuthStyleInParams},
		},
		Client: client,
	}
}

// refresh is one refresh of g through the store, as tokensource.Stored does it.
func refresh(ctx context.Context, s *tokenstore.Store, g *tokensource.Refresh) error {
	_, err := s.Update(ctx, g.Key(), func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		next, err := g.Fetch(ctx, cur, ok)
		if err != nil {
			return nil, err
		}
		return &next, nil
	})
	return err
}

// TestRefreshLoopProcess is the body of the process that
// TestKilledRefreshKeepsTheLiveGrant kills: it refreshes the grant until
// killed (or, should the test die first, for a minute). Run directly it
// does nothing.
func TestRefreshLoopProcess(t *testing.T) {
	path := os.Getenv(envRefreshStore)
	if path == "" {
		return
	}
	s, err := tokenstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	g := crashGrant(os.Getenv(envRefreshURL), os.Getenv(envRefreshSecret), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		if err := refresh(ctx, s, g); err != nil {
			t.Fatal(err)
		}
	}
}

// connCounter counts a server's open connections.
type connCounter struct {
	mu   sync.Mutex
	open int
	idle *sync.Cond // signalled when open drops to 0
}

func (c *connCounter) track(_ net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch state {
	case http.StateNew:
		c.open++
	case http.StateClosed, http.StateHijacked:
		c.open--
		if c.open == 0 {
			c.idle.Broadcast()
		}
	}
}

// wait returns once no connection is open: every request received has been
// answered (or its answer failed), so every rotation has happened.
func (c *connCounter) wait() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.open > 0 {
		c.idle.Wait()
	}
}

// teeWriter keeps a copy of the body written.
type teeWriter struct {
	http.ResponseWriter
	body bytes.Buffer
}

func (w *teeWriter) Write(p []byte) (int, error) {
	w.body.Write(p)
	return w.ResponseWriter.Write(p)
}

// killAfter sends SIGKILL to pid after d. It sleeps in nanosleep(2), woken by
// the kernel alone: a Go timer in this mostly idle process was seen to fire
// in step with its network wakeups, bunching the kills just after COOP
// answered.
func killAfter(pid int, d time.Duration) error {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// onDisk reports whether token is in one of the files in dir.
func onDisk(t *testing.T, dir, token string) bool {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(token)) {
			return true
		}
	}
	return false
}

// TestKilledRefreshKeepsTheLiveGrant measures issue 7's defect 7. A process
// refreshes a rotating grant in a loop (COOP issues a new refresh token and
// kills the old one on every use); it is SIGKILLed at a random moment, 100
// times, and after each kill the store, opened as the next process would,
// must hold the live refresh token.
//
// A kill between COOP's rotation and the write of its answer to the
// temporary file loses the grant whatever the store does: the live token is
// then in no file, only in COOP's answer in flight or in the dead process's
// memory. The test counts those losses ("in flight") apart, and requires
// that no kill loses a live token that had reached a file.
func TestKilledRefreshKeepsTheLiveGrant(t *testing.T) {
	const (
		kills  = 100
		within = 20 * time.Millisecond // each kill falls at random within this, after the first refresh request
	)
	srv := coop.New(coop.Options{})
	user := srv.AddUser("farmer@example.com", "password", "Farmer", "Brown")
	scopes := []string{"eggs-count"}
	app := srv.AddApp(user.ID, crashClientID, scopes, "")

	var (
		mu   sync.Mutex
		live string // the refresh token COOP issued last: the only one alive
	)
	requested := make(chan struct{}, 1)
	conns := &connCounter{}
	conns.idle = sync.NewCond(&conns.mu)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case requested <- struct{}{}:
		default:
		}
		tw := &teeWriter{ResponseWriter: w}
		srv.ServeHTTP(tw, r)
		var answer struct {
			RefreshToken string `json:"refresh_token"`
		}
		if json.Unmarshal(tw.body.Bytes(), &answer) == nil && answer.RefreshToken != "" {
			mu.Lock()
			live = answer.RefreshToken
			mu.Unlock()
		}
	}))
	ts.Config.ConnState = conns.track
	ts.Start()
	defer ts.Close()
	tokenURL := ts.URL + "/token"
	// The test's own requests leave no connection open behind them.
	g := crashGrant(tokenURL, app.ClientSecret, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}})

	path := filepath.Join(t.TempDir(), "tokens.json")
	ctx := t.Context()
	seed := func() {
		t.Helper()
		_, rt := srv.IssueToken(app.ClientID, user.ID, scopes, true)
		mu.Lock()
		live = rt
		mu.Unlock()
		s, err := tokenstore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ctx, g.Key(), func(tokenstore.Record, bool) (*tokenstore.Record, error) {
			return &tokenstore.Record{RefreshToken: rt, Scopes: scopes}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	seed()

	var inFlight, stranded, recovered int
	for i := range kills {
		select {
		case <-requested:
		default:
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestRefreshLoopProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envRefreshStore+"="+path, envRefreshURL+"="+tokenURL, envRefreshSecret+"="+app.ClientSecret)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-requested: // the loop is running
		case err := <-exited:
			t.Fatalf("kill %d: the refreshing process ended by itself (%v):\n%s", i, err, out.String())
		}
		if err := killAfter(cmd.Process.Pid, rand.N(within)); err != nil {
			t.Fatal(err)
		}
		if err := <-exited; err == nil {
			t.Fatalf("kill %d: the refreshing process ended by itself:\n%s", i, out.String())
		}
		conns.wait()
		mu.Lock()
		want := live
		mu.Unlock()
		reachedFile := onDisk(t, filepath.Dir(path), want)

		// As the next process to start: a read finds the live token,
		// recovering it if need be.
		s, err := tokenstore.Open(path, tokenstore.WithRecoverHandler(func(string, string) { recovered++ }))
		if err != nil {
			t.Fatal(err)
		}
		r, ok, err := s.Load(ctx, g.Key())
		if err != nil {
			t.Fatalf("kill %d: %v", i, err)
		}
		switch {
		case ok && r.RefreshToken == want:
			continue
		case reachedFile:
			stranded++
		default:
			inFlight++
		}
		seed()
	}
	// The live token tracked is the one COOP takes.
	s, err := tokenstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := refresh(ctx, s, g); err != nil {
		t.Fatalf("the stored grant does not refresh after the last kill: %v", err)
	}

	t.Logf("%d kills: %d lost the grant (%d in flight, %d with the live token in a file); %d recovered from a temporary file",
		kills, inFlight+stranded, inFlight, stranded, recovered)
	if stranded > 0 {
		t.Errorf("%d of %d kills lost a live refresh token that had reached a file", stranded, kills)
	}
}
