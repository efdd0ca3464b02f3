//go:build unix

// Package redistest runs a real redis-server for tests: on a free port of
// 127.0.0.1, in a directory of t.TempDir(), stopped when the test ends. It
// can stop, kill, pause and restart the server (with or without its data),
// require a password, speak TLS with certificates made for the test, and
// start a replica and a Sentinel, so that tests can show what a store does
// when Redis fails.
//
// The redis-server program comes from Debian's redis-server package
// (scripts/test-deps.sh installs it); a test fails when it is missing.
package redistest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a Server.
type Options struct {
	// Password is required of clients (requirepass); "" for none.
	Password string
	// Persist keeps the data across a restart: append-only file, fsynced
	// on every write (--appendonly yes --appendfsync always). Without it
	// the server keeps nothing (--save "" --appendonly no).
	Persist bool
	// TLS, when set, makes the server speak TLS only (--port 0
	// --tls-port), with a certificate from this CA for 127.0.0.1, also
	// to its primary when it is a replica (--tls-replication yes).
	TLS *CA
	// AuthClients requires clients to show a certificate from TLS
	// (--tls-auth-clients yes); without it they need none.
	AuthClients bool
	// Args are further redis-server arguments ("--maxmemory", "1mb").
	Args []string
}

// Server is a running (or stopped, or paused) redis-server.
type Server struct {
	t       testing.TB
	opts    Options
	dir     string
	port    int
	replica string // the primary's address when this is a replica
	// sentinel is the configuration file's text when this is a Sentinel
	// (written once: Sentinel rewrites it).
	sentinel string
	cert     KeyPair     // the server's certificate, when opts.TLS is set
	tls      *tls.Config // a client's, with a certificate, when opts.TLS is set
	cmd      *exec.Cmd
	exited   chan struct{}
	paused   bool
}

// readyTimeout bounds the wait for a server to answer PING: generous, for
// a loaded machine.
const readyTimeout = 20 * time.Second

// Start starts a redis-server and stops it when t ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	return start(t, &Server{opts: o})
}

// start starts s, whose opts, replica and sentinel are set.
func start(t testing.TB, s *Server) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redistest: redis-server is not on PATH: run scripts/test-deps.sh (it installs Debian's redis-server package)")
	}
	s.t, s.dir = t, t.TempDir()
	if s.opts.TLS != nil {
		s.cert, s.tls = s.opts.TLS.Issue(t, s.certNames()...), s.opts.TLS.ClientConfig(t)
	}
	t.Cleanup(s.cleanup)
	// A free port can be taken by another process between its discovery and
	// redis-server's bind: try a few.
	var err error
	for range 5 {
		if s.port, err = freePort(); err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		if err = s.run(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

// StartReplica starts a replica of s (--replicaof), with s's password,
// and waits until s counts it among its connected replicas.
func (s *Server) StartReplica(t testing.TB) *Server {
	t.Helper()
	r := start(t, &Server{opts: Options{Password: s.opts.Password, TLS: s.opts.TLS, AuthClients: s.opts.AuthClients}, replica: s.Addr()})
	c := s.Client(t)
	deadline := time.Now().Add(readyTimeout)
	for {
		info, err := c.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the replica on port %d did not come online: %v\n%s", r.port, err, r.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// run starts redis-server on s.port and waits until it answers.
func (s *Server) run() error {
	var args []string
	if s.sentinel != "" {
		conf := filepath.Join(s.dir, "sentinel.conf")
		if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(conf, []byte(s.sentinel), 0o600); err != nil {
				return err
			}
		}
		args = append(args, conf, "--sentinel")
	}
	if o := s.opts; o.TLS != nil {
		authClients := "no"
		if o.AuthClients {
			authClients = "yes"
		}
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.cert.CertFile, "--tls-key-file", s.cert.KeyFile, "--tls-ca-cert-file", o.TLS.File,
			"--tls-auth-clients", authClients, "--tls-replication", "yes")
	} else {
		args = append(args, "--port", strconv.Itoa(s.port))
	}
	args = append(args,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", filepath.Join(s.dir, "redis.log"),
		"--daemonize", "no",
		"--save", "",
		// A replica is served at once, not after the 5s Redis waits
		// for more replicas to share a transfer.
		"--repl-diskless-sync-delay", "0",
	)
	if s.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if s.opts.Password != "" {
		args = append(args, "--requirepass", s.opts.Password)
	}
	if s.replica != "" {
		host, port, _ := net.SplitHostPort(s.replica)
		args = append(args, "--replicaof", host, port)
		if s.opts.Password != "" {
			args = append(args, "--masterauth", s.opts.Password)
		}
	}
	args = append(args, s.opts.Args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	s.cmd, s.exited, s.paused = cmd, make(chan struct{}), false
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	o := s.clientOptions()
	o.MaxRetries, o.ContextTimeoutEnabled = -1, false
	c := redis.NewClient(o)
	defer c.Close()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.signal(syscall.SIGKILL)
			<-s.exited
			return fmt.Errorf("redis-server on port %d did not answer PING: %v\n%s", s.port, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is the server's "redis://127.0.0.1:port/0", "rediss://..." with TLS
// (never with the password).
func (s *Server) URL() string {
	if s.opts.TLS != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Dir is the server's working directory (its log, its append-only file).
func (s *Server) Dir() string { return s.dir }

// Client returns a client of the server (with its password), closed when
// t ends: to look at what a store wrote, or to change it behind its back.
func (s *Server) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(s.clientOptions())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// clientOptions are those of a client of the server: its password, and
// TLS with a client certificate when it speaks TLS.
func (s *Server) clientOptions() *redis.Options {
	return &redis.Options{Addr: s.Addr(), Password: s.opts.Password, TLSConfig: s.tls, ContextTimeoutEnabled: true}
}

// Stop stops the server with SIGTERM and waits for it to exit.
func (s *Server) Stop() { s.end(syscall.SIGTERM) }

// Kill kills the server with SIGKILL and waits for it to exit.
func (s *Server) Kill() { s.end(syscall.SIGKILL) }

// Pause stops the server with SIGSTOP: connections stay open and nothing
// answers, as on a host that hangs.
func (s *Server) Pause() {
	s.signal(syscall.SIGSTOP)
	s.paused = true
}

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() {
	s.signal(syscall.SIGCONT)
	s.paused = false
}

// Restart stops the server (SIGTERM) if it runs and starts it again on the
// same port: with the data it had when keepData (which needs
// Options.Persist), with none otherwise.
func (s *Server) Restart(keepData bool) {
	s.t.Helper()
	if keepData && !s.opts.Persist {
		s.t.Fatal("redistest: Restart(keepData) needs Options.Persist")
	}
	s.Stop()
	if !keepData {
		entries, err := os.ReadDir(s.dir)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != "redis.log" {
				if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
					s.t.Fatal(err)
				}
			}
		}
	}
	// The port was ours a moment ago; another process taking it meanwhile
	// fails the test, which is better than a server on another port.
	if err := s.run(); err != nil {
		s.t.Fatalf("redistest: restarting: %v", err)
	}
}

// end sends sig (resuming a paused server first) and waits for the exit.
func (s *Server) end(sig syscall.Signal) {
	s.t.Helper()
	select {
	case <-s.exited:
		return
	default:
	}
	if s.paused {
		s.Resume()
	}
	s.signal(sig)
	select {
	case <-s.exited:
	case <-time.After(readyTimeout):
		s.signal(syscall.SIGKILL)
		<-s.exited
		s.t.Errorf("redistest: redis-server on port %d did not exit on %v", s.port, sig)
	}
}

func (s *Server) signal(sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("redistest: signalling redis-server: %v", err)
	}
}

func (s *Server) cleanup() {
	if s.cmd != nil {
		s.Kill()
	}
}

// logTail is the end of the server's log, for a failure message.
func (s *Server) logTail() string {
	data, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return string(data)
}
