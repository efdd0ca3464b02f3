//go:build unix

package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// behindProxy opens a Store on srv through a proxy that can lose Redis's
// answers, with the scripts already loaded (so that the first call of
// each is the EVALSHA the proxy looks for, not a NOSCRIPT answer).
func behindProxy(t *testing.T, srv *redistest.Server, o Options) (*Store, *redistest.Proxy) {
	t.Helper()
	raw := srv.Client(t)
	for _, err := range []error{lockScript.Load(t.Context(), raw).Err(), releaseScript.Load(t.Context(), raw).Err(),
		extendScript.Load(t.Context(), raw).Err(), writeScript.Load(t.Context(), raw).Err()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	p := srv.Proxy(t)
	o.URL = p.URL()
	return open(t, srv, o), p
}

// A lock whose answer was lost (the connection cut as Redis answered;
// go-redis sends the script again on a new one) is taken all the same:
// the holder does not wait a grace for the marker it set itself.
func TestLockAnswerLost(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s, p := behindProxy(t, srv, Options{Plaintext: true, LockTTL: 20 * time.Second, Replica: "a"})
	storetest.Put(t, s, key, tokenstore.Record{RefreshToken: "rt-0"})
	p.LoseAnswers(lockScript.Hash(), 1)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.Update(ctx, key, increment); err != nil {
		t.Fatalf("Update after its lock's answer was lost: %v", err)
	}
	if r, _ := storetest.Load(t, s, key); r.UserID != 1 {
		t.Errorf("counter = %d, want 1", r.UserID)
	}
}

// A lock whose answer never came (lost on every try, or late beyond the
// caller's ctx) may have been taken: the Store releases it, and its
// marker, rather than leave the grant to the lock's TTL and the next
// holder's grace.
func TestLockAnswerNeverCame(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func(p *redistest.Proxy)
		ctx  time.Duration
	}{
		{"lost", func(p *redistest.Proxy) { p.LoseAnswers(lockScript.Hash(), 2) }, 5 * time.Second},
		{"late", func(p *redistest.Proxy) { p.DelayAnswers(lockScript.Hash(), 1, time.Second) }, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			s, p := behindProxy(t, srv, Options{Plaintext: true, LockTTL: 20 * time.Second, Replica: "a"})
			storetest.Put(t, s, key, tokenstore.Record{RefreshToken: "rt-0"})
			tc.fail(p)
			ctx, cancel := context.WithTimeout(t.Context(), tc.ctx)
			_, err := s.Update(ctx, key, increment)
			cancel()
			if err == nil {
				t.Fatal("Update whose lock answer never came succeeded")
			}
			ctx, cancel = context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if _, err := s.Update(ctx, key, increment); err != nil {
				t.Fatalf("the next Update: %v; want the lock free", err)
			}
			if r, _ := storetest.Load(t, s, key); r.UserID != 1 {
				t.Errorf("counter = %d, want 1", r.UserID)
			}
		})
	}
}

// notRedis listens on a free port of 127.0.0.1 and answers every read with
// answer, well-formed RESP that is not what Redis would say; its URL.
func notRedis(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if _, err := c.Write([]byte(answer)); err != nil {
						return
					}
				}
			})
		}
	})
	return "redis://" + ln.Addr().String() + "/0"
}

// A server that is not Redis, or a Redis that answers wrongly, makes the
// Store's operations fail with ErrUnavailable; it never panics (a reply of
// the wrong length made read index beyond it: a crash loop of every
// replica, since each looks at the grant once a second).
func TestServerAnsweringJunk(t *testing.T) {
	for _, answer := range []string{
		"*2\r\n$2\r\nok\r\n:5\r\n", // an array of the wrong length
		"*0\r\n",
		"+OK\r\n",
		"HTTP/1.1 400 Bad Request\r\n\r\n",
	} {
		t.Run(strings.TrimSpace(answer), func(t *testing.T) {
			s, err := Open(t.Context(), Options{URL: notRedis(t, answer), Plaintext: true, LockTTL: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for op, call := range map[string]func() error{
				"Load":   func() error { _, _, err := s.Load(ctx, key); return err },
				"Update": func() error { _, err := s.Update(ctx, key, increment); return err },
				"Delete": func() error { _, err := s.Delete(ctx, key); return err },
			} {
				if err := call(); !errors.Is(err, tokenstore.ErrUnavailable) {
					t.Errorf("%s = %v; want ErrUnavailable", op, err)
				}
			}
			_, _ = s.Keys(ctx) // an array may be a list of grants: no panic is all it can show
			_, _ = s.Info(ctx, key)
		})
	}
}
