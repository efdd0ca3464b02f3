//go:build unix

package redisstore

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// deadAddr is an address of 127.0.0.1 where nothing listens (a Sentinel
// that is down).
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// A store on Sentinel's URL form reaches the master (past a Sentinel that
// is down), waits for the replica with WaitReplicas, and after the master
// dies (SIGKILL) and Sentinel promotes the replica, reaches the new master.
func TestSentinelFailover(t *testing.T) {
	primary := redistest.Start(t, redistest.Options{Password: "pw-test"})
	replica := primary.StartReplica(t)
	sentinel := primary.StartSentinel(t, "coop", "pw-test")
	url := "redis://" + deadAddr(t) + "/0?master_name=coop&addr=" + sentinel.Addr()
	durable := open(t, primary, Options{URL: url, Password: "pw-test", Plaintext: true, WaitReplicas: 1, WaitTimeout: 5 * time.Second})
	s := open(t, primary, Options{URL: url, Password: "pw-test", Plaintext: true})

	want := storetest.Put(t, durable, key, secretRecord)
	if n, err := replica.Client(t).Exists(t.Context(), nameOf(key).hash).Result(); err != nil || n != 1 {
		t.Fatalf("after a write that waited for the replica, the replica has the grant: EXISTS = %d, %v", n, err)
	}
	if r, ok := storetest.Load(t, s, key); !ok || r.RefreshToken != want.RefreshToken {
		t.Fatalf("Load through Sentinel = %v, %v", r, ok)
	}

	primary.Kill()
	var err error
	deadline := time.Now().Add(60 * time.Second) // DownAfter, then Sentinel's election and promotion
	for _, err = s.Update(t.Context(), key, increment); err != nil; _, err = s.Update(t.Context(), key, increment) {
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Fatalf("Update during the failover = %v; want ErrUnavailable until it is done", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the store did not reach the new master: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if role, err := replica.Client(t).Do(t.Context(), "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("the replica's ROLE after the failover = %v, %v; want master", role, err)
	}
	if r, ok := storetest.Load(t, open(t, replica, Options{Plaintext: true, Password: "pw-test"}), key); !ok || r.UserID != 1 || r.RefreshToken != want.RefreshToken {
		t.Errorf("the new master holds %v, %v; want the grant written before the failover, incremented once", r, ok)
	}
	// The other store reaches the new master too, and its writes wait for
	// a replica there is no longer.
	for _, err = durable.Update(t.Context(), key, increment); errors.Is(err, tokenstore.ErrUnavailable); _, err = durable.Update(t.Context(), key, increment) {
		if time.Now().After(deadline) {
			t.Fatalf("the store with WaitReplicas did not reach the new master: %v", err)
		}
	}
	var we *tokenstore.WriteError
	if !errors.As(err, &we) || !strings.Contains(err.Error(), "0 of the 1 replicas") {
		t.Errorf("Update with WaitReplicas after the failover = %v; want a *WriteError saying no replica acknowledged it", err)
	}
}

// With rediss://, the Sentinels and the master are checked each against
// its own name: here the URL names the Sentinel localhost, and the
// master's certificate is for 127.0.0.1 only, the address Sentinel gives.
func TestSentinelTLS(t *testing.T) {
	ca := redistest.NewCA(t)
	primary := redistest.Start(t, redistest.Options{TLS: ca, AuthClients: true, Password: "pw-test"})
	sentinel := primary.StartSentinel(t, "coop", "pw-test")
	_, port, _ := net.SplitHostPort(sentinel.Addr())
	o := tlsOptions(t, ca)
	o.URL, o.Password = "rediss://localhost:"+port+"/0?master_name=coop", "pw-test"
	s := open(t, primary, o)
	want := storetest.Put(t, s, key, secretRecord)
	direct := tlsOptions(t, ca)
	direct.Password, direct.SealKeys = "pw-test", o.SealKeys
	if r, ok := storetest.Load(t, open(t, primary, direct), key); !ok || r.RefreshToken != want.RefreshToken {
		t.Errorf("the master, read directly, holds %v, %v", r, ok)
	}
	if s.String() != o.URL {
		t.Errorf("the store describes itself as %s; want %s", s.String(), o.URL)
	}
}

// Sentinels that require no password serve a store that has the master's:
// go-redis authenticates with HELLO's AUTH default <password>, which a
// user without a password accepts.
func TestSentinelWithoutPassword(t *testing.T) {
	primary := redistest.Start(t, redistest.Options{Password: "pw-test"})
	sentinel := primary.StartSentinel(t, "coop", "")
	s := open(t, primary, Options{URL: "redis://" + sentinel.Addr() + "/0?master_name=coop", Password: "pw-test", Plaintext: true})
	storetest.Put(t, s, key, secretRecord)
}
