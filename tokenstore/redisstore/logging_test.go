//go:build unix

package redisstore

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// go-redis's lines of one kind come once per logEvery, the next one
// counting those suppressed; other kinds are not held back; a password
// of this process's never shows.
func TestGoRedisLogRateLimitedAndBlanked(t *testing.T) {
	core, logged := observer.New(zap.DebugLevel)
	clock := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := &goRedisLog{log: zap.New(core).Named("redis"), now: func() time.Time { return clock }, last: map[string]time.Time{}, suppressed: map[string]int{}}
	addPassword("pw-SECRET-redis")
	const dial = "redis: connection pool: failed to dial after %d attempts: %v"
	for range 5 {
		l.Printf(t.Context(), dial, 1, "dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	l.Printf(t.Context(), "sentinel: new master=%q addr=%q", "coop", "10.0.0.2:6379 pw-SECRET-redis")
	clock = clock.Add(logEvery)
	l.Printf(t.Context(), dial, 1, "dial tcp 127.0.0.1:6379: connect: connection refused")
	all := logged.All()
	if len(all) != 3 {
		t.Fatalf("logged %d lines, want 3 (a dial failure, the master, the dial failure after %v): %v", len(all), logEvery, all)
	}
	for _, e := range all {
		if e.Level != zapcore.WarnLevel || e.LoggerName != "redis" || strings.Contains(e.Message, "pw-SECRET") || strings.HasPrefix(e.Message, "redis:") {
			t.Errorf("logged %s %q %q", e.Level, e.LoggerName, e.Message)
		}
	}
	if all[1].Message != `sentinel: new master="coop" addr="10.0.0.2:6379 [password]"` {
		t.Errorf("the Sentinel line reads %q", all[1].Message)
	}
	if n, ok := all[2].ContextMap()["suppressed"]; !ok || n != int64(4) {
		t.Errorf("the dial failure after %v says %v suppressed, want 4", logEvery, all[2].ContextMap())
	}
}

// With Redis down, go-redis's dial failures reach the process's logger, not
// stderr, and one line stands for many attempts.
func TestGoRedisDialFailuresLogged(t *testing.T) {
	core, logged := observer.New(zap.DebugLevel)
	SetLogger(zap.New(core))
	t.Cleanup(func() { SetLogger(zap.NewNop()) })
	srv := redistest.Start(t, redistest.Options{})
	s := open(t, srv, Options{Plaintext: true})
	storetest.Put(t, s, key, secretRecord)
	srv.Kill()
	for range 5 {
		if _, _, err := s.Load(t.Context(), key); err == nil {
			t.Fatal("Load with Redis down succeeded")
		}
	}
	dials := logged.FilterLoggerName("redis").FilterMessageSnippet("failed to dial").All()
	if len(dials) != 1 || dials[0].Level != zapcore.WarnLevel {
		t.Errorf("go-redis's dial failures logged as %v; want one line at warn", logged.All())
	}
}
