//go:build unix

package redistest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestRestartKeepsDataOnlyWhenAsked(t *testing.T) {
	s := Start(t, Options{Persist: true, Password: "pw-test"})
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart(true)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after a restart with data: %q, %v", v, err)
	}
	s.Restart(false)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("after a restart without data: %v, want redis.Nil", err)
	}
}

func TestPauseHangsUntilResumed(t *testing.T) {
	s := Start(t, Options{})
	c := s.Client(t)
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("a paused server answered")
	}
	s.Resume()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("after Resume: %v", err)
	}
}

func TestReplica(t *testing.T) {
	s := Start(t, Options{Password: "pw-test"})
	s.StartReplica(t)
	n, err := s.Client(t).Wait(t.Context(), 1, 5000).Result()
	if err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
}

// A TLS server requires its clients' certificates when asked, and
// replicates over TLS.
func TestTLS(t *testing.T) {
	ca := NewCA(t)
	s := Start(t, Options{TLS: ca, AuthClients: true, Password: "pw-test"})
	if s.URL() != "rediss://"+s.Addr()+"/0" {
		t.Errorf("URL = %s", s.URL())
	}
	s.StartReplica(t)
	if n, err := s.Client(t).Wait(t.Context(), 1, 5000).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
	noCert := ca.ClientConfig(t)
	noCert.Certificates = nil
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), Password: "pw-test", TLSConfig: noCert, MaxRetries: -1})
	defer c.Close()
	if err := c.Ping(t.Context()).Err(); err == nil {
		t.Error("a client without a certificate was served")
	}
}

// A Sentinel names its master, and after SENTINEL FAILOVER the replica.
func TestSentinel(t *testing.T) {
	s := Start(t, Options{Password: "pw-test"})
	r := s.StartReplica(t)
	c := s.StartSentinel(t, "coop", "pw-sentinel").SentinelClient(t)
	if addr, err := c.GetMasterAddrByName(t.Context(), "coop").Result(); err != nil || net.JoinHostPort(addr[0], addr[1]) != s.Addr() {
		t.Fatalf("the master's address = %v, %v; want %s", addr, err, s.Addr())
	}
	if err := c.Failover(t.Context(), "coop").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		addr, err := c.GetMasterAddrByName(t.Context(), "coop").Result()
		if err == nil && net.JoinHostPort(addr[0], addr[1]) == r.Addr() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after SENTINEL FAILOVER the master's address = %v, %v; want %s", addr, err, r.Addr())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
