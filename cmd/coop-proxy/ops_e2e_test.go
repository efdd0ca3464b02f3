package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// unixClient talks HTTP over the Unix socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}}
}

func TestUnixSocketListener(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	cfg.Route.Listen = "unix:" + sock

	// A socket file left by a process that died is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	p := f.start(t, cfg)
	info, err := os.Stat(sock)
	if err != nil || info.Mode().Perm() != 0o660 || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v %v", info.Mode(), err)
	}
	resp, err := unixClient(sock).Post("http://localhost/api/1/eggs-count", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("over the socket: %v %v", resp, err)
	}
	resp.Body.Close()

	// A second proxy on the same socket is refused with a clear reason.
	var stderr bytes.Buffer
	t.Setenv(config.EnvPrefix+"CLIENT_ID", cfg.Route.ClientID)
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET_FILE", cfg.Route.ClientSecretFile)
	t.Setenv(config.EnvPrefix+"STORE", cfg.Store)
	t.Setenv(config.EnvPrefix+"UPSTREAM", cfg.Route.Upstream)
	if code := run([]string{"serve", "--listen", cfg.Route.Listen, "--admin-listen", "off"}, &bytes.Buffer{}, &stderr); code == 0 || !strings.Contains(stderr.String(), "another process is listening") {
		t.Fatalf("second listener: exit %d %q", code, stderr.String())
	}

	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket file left after exit: %v", err)
	}
}

func TestNonLoopbackNeedsAnInboundSecret(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	inbound := filepath.Join(f.dir, "inbound")
	_ = os.WriteFile(inbound, []byte("open-sesame\n"), 0o600)
	t.Setenv(config.EnvPrefix+"CLIENT_ID", cfg.Route.ClientID)
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET_FILE", cfg.Route.ClientSecretFile)
	t.Setenv(config.EnvPrefix+"STORE", cfg.Store)
	tests := []struct {
		name string
		args []string
		ok   bool
	}{
		{"all interfaces, no secret", []string{"--listen", "0.0.0.0:18080"}, false},
		{"a LAN address, no secret", []string{"--listen", "192.0.2.10:8080"}, false},
		{"with an inbound secret", []string{"--listen", "0.0.0.0:18080", "--inbound-secret-file", inbound}, true},
		{"open door accepted by name", []string{"--listen", "[::]:18080", "--allow-unauthenticated-callers"}, true},
		{"loopback", []string{"--listen", "127.0.0.1:18080"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check-config"}, tt.args...), &stdout, &stderr)
			if (code == 0) != tt.ok {
				t.Fatalf("exit %d:\n%s", code, stdout.String())
			}
			if !tt.ok && !strings.Contains(stdout.String(), "INBOUND_SECRET_FILE") {
				t.Fatalf("the refusal does not say what to do:\n%s", stdout.String())
			}
		})
	}
	// serve refuses before listening.
	var stderr bytes.Buffer
	if code := run([]string{"serve", "--listen", "0.0.0.0:18080"}, &bytes.Buffer{}, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("serve: exit %d %q", code, stderr.String())
	}
}

func TestInboundSecretEndToEnd(t *testing.T) {
	f := newFarm(t)
	inbound := filepath.Join(f.dir, "inbound")
	_ = os.WriteFile(inbound, []byte("open-sesame"), 0o600)
	p := f.start(t, f.config(t, "INBOUND_SECRET_FILE", inbound))
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 401 || a.json["error"] != "inbound_credential_required" {
		t.Fatalf("without the secret: %d %s", a.status, a.body)
	}
	if a := call(t, "POST", p.url+"/api/1/eggs-count", map[string]string{"Proxy-Authorization": "Bearer nope"}); a.status != 401 {
		t.Fatalf("with a wrong secret: %d %s", a.status, a.body)
	}
	if a := call(t, "POST", p.url+"/api/1/eggs-count", map[string]string{"Proxy-Authorization": "Bearer open-sesame"}); a.status != 200 {
		t.Fatalf("with the secret: %d %s", a.status, a.body)
	}
	if n := len(f.em.APIRequests()); n != 1 {
		t.Fatalf("COOP saw %d requests, want 1", n)
	}
}

func TestSIGHUPPicksUpARotatedClientSecret(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	c := startChild(t, cfg)
	c.waitListening(t)
	if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	// The owner regenerates the secret on COOP: the old one and its tokens die.
	secret, _ := f.em.RegenerateSecret(f.app.ClientID)
	f.em.ExpireAllTokens()
	if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 503 || a.json["error"] != "invalid_client" {
		t.Fatalf("with the old secret: %d %s", a.status, a.body)
	}
	// A bad reload (empty secret file) is reported and changes nothing.
	_ = os.WriteFile(cfg.Route.ClientSecretFile, nil, 0o600)
	reloads := strings.Count(c.stderr.String(), "reload failed")
	_ = c.cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the failed reload", func() bool { return strings.Count(c.stderr.String(), "reload failed") > reloads })

	// The operator writes the new secret and sends SIGHUP.
	_ = os.WriteFile(cfg.Route.ClientSecretFile, []byte(secret), 0o600)
	before := f.em.CountTokenRequests("client_credentials")
	_ = c.cmd.Process.Signal(syscall.SIGHUP)
	waitUntilOr(t, c, "the reload", func() bool {
		return strings.Contains(c.stderr.String(), `"client_secret_changed":true`) || strings.Count(c.stderr.String(), "reload failed") > reloads+1
	})
	if !strings.Contains(c.stderr.String(), `"client_secret_changed":true`) {
		t.Fatalf("reload:\n%s", c.stderr.String())
	}
	if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("after the reload: %d %s", a.status, a.body)
	}
	if reqs := f.em.TokenRequests(); len(reqs) != before+1 || reqs[len(reqs)-1].Status != 200 {
		t.Fatalf("the next token request did not use the new secret: %+v", reqs[len(reqs)-1])
	}
	c.stop(t)
}

func TestSIGTERMLetsAnInFlightRequestFinish(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	release := make(chan struct{})
	var arrived atomic.Bool
	f.watchAPI(func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/eggs-collect") {
			arrived.Store(true)
			<-release
		}
	})
	c := startChild(t, cfg)
	c.waitListening(t)
	slow := make(chan answer, 1)
	go func() { slow <- call(t, "POST", c.url+"/api/1/eggs-collect", nil) }()
	waitUntil(t, "the slow request at COOP", arrived.Load)

	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the listener to close", func() bool {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(c.url, "http://"), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	close(release)
	if a := <-slow; a.status != 200 || a.json["success"] != true {
		t.Fatalf("the in-flight request: %d %s", a.status, a.body)
	}
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, c.stderr.String())
	}
}

func TestReadyzTurnsFalseWhileDraining(t *testing.T) {
	f := newFarm(t)
	release := make(chan struct{})
	var arrived atomic.Bool
	f.watchAPI(func(r *http.Request) {
		arrived.Store(true)
		<-release
	})
	p := f.start(t, f.config(t))
	slow := make(chan answer, 1)
	go func() { slow <- call(t, "POST", p.url+"/api/1/eggs-collect", nil) }()
	waitUntil(t, "the slow request at COOP", arrived.Load)
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop() }()
	waitUntil(t, "/readyz to say shutting down", func() bool {
		resp, err := http.Get(p.admin + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	close(release)
	if a := <-slow; a.status != 200 {
		t.Fatalf("in-flight request: %d", a.status)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
}

func waitUntilOr(t *testing.T, c *child, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s:\n%s", what, c.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAChangedSecretFileIsReloadedWithoutASignal(t *testing.T) {
	f := newFarm(t)
	cfg := f.config(t)
	// The client id changes too: that takes a restart, so the new secret
	// must be used with the client id in use.
	reread := func() (*config.Settings, error) {
		return config.Load("test", nil, f.environ("CLIENT_ID", "Another App"), config.Everything)
	}
	p := f.startWith(t, cfg, server.Options{Reread: reread, WatchEvery: 20 * time.Millisecond})
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 200 {
		t.Fatalf("%d %s", a.status, a.body)
	}
	secret, _ := f.em.RegenerateSecret(f.app.ClientID)
	f.em.ExpireAllTokens()
	if a := call(t, "POST", p.url+"/api/1/eggs-count", nil); a.status != 503 {
		t.Fatalf("with the old secret: %d %s", a.status, a.body)
	}
	// As a Kubernetes Secret volume would: the file changes in place.
	_ = os.WriteFile(cfg.Route.ClientSecretFile, []byte(secret), 0o600)
	waitUntil(t, "the reload", func() bool { return strings.Contains(p.logs.String(), "a secret file changed") })
	waitUntil(t, "a token with the new secret", func() bool { return call(t, "POST", p.url+"/api/1/eggs-count", nil).status == 200 })
	if !strings.Contains(p.logs.String(), "take effect only on restart") || !strings.Contains(p.logs.String(), config.EnvPrefix+"CLIENT_ID") {
		t.Fatal("the client id change is not reported as needing a restart")
	}
}

func TestASecondSignalExitsAtOnceWithTheLogFlushed(t *testing.T) {
	f := newFarm(t)
	release := make(chan struct{})
	defer close(release)
	var arrived atomic.Bool
	f.watchAPI(func(r *http.Request) {
		arrived.Store(true)
		<-release
	})
	c := startChild(t, f.config(t))
	c.waitListening(t)
	go func() { // held at COOP: the drain waits for it, and the exit cuts it
		if resp, err := http.Post(c.url+"/api/1/eggs-collect", "", nil); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, "the slow request at COOP", arrived.Load)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	waitUntil(t, "the drain", func() bool { return strings.Contains(c.stderr.String(), "shutting down") })
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- c.cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a second SIGTERM did not end the drain")
	}
	if !strings.Contains(c.stderr.String(), "second signal") {
		t.Fatalf("the last log line was lost:\n%s", c.stderr.String())
	}
}
