//go:build unix

package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DownAfter is how long a Sentinel started by StartSentinel waits for a
// master that does not answer before it fails over: short, for tests, yet
// far beyond what an idle server takes to answer on a loaded machine.
const DownAfter = 2 * time.Second

// StartSentinel starts a Sentinel (redis-server --sentinel, Redis doc
// "High availability with Redis Sentinel") that monitors s as master
// name. Its quorum is 1, so that it alone decides a failover, DownAfter
// after s stops answering. It knows s's password (auth-pass), requires
// password of its own clients unless "" (requirepass), and speaks TLS when
// s does, with a certificate for localhost and 127.0.0.1. It returns once
// it sees s and, able to take over (linked to s), as many replicas as s
// has connected.
func (s *Server) StartSentinel(t testing.TB, name, password string) *Server {
	t.Helper()
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s %[3]d\n"+
		"sentinel failover-timeout %[1]s 10000\n", name, s.port, DownAfter.Milliseconds())
	if s.opts.Password != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", name, s.opts.Password)
	}
	sen := start(t, &Server{opts: Options{Password: password, TLS: s.opts.TLS, AuthClients: s.opts.AuthClients}, sentinel: conf})
	replicas := s.connectedReplicas(t)
	c := sen.SentinelClient(t)
	deadline := time.Now().Add(readyTimeout)
	for {
		m, err := c.Master(context.Background(), name).Result()
		if err == nil && m["flags"] == "master" && m["num-slaves"] == replicas && linked(c, name) {
			return sen
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: the Sentinel on port %d does not see its master and %s replicas: %v, %v\n%s", sen.port, replicas, m, err, sen.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// linked says whether every replica of name that the Sentinel c knows
// of is one it could promote: connected, and linked to its master.
func linked(c *redis.SentinelClient, name string) bool {
	rs, err := c.Replicas(context.Background(), name).Result()
	if err != nil {
		return false
	}
	for _, r := range rs {
		if r["flags"] != "slave" || r["master-link-status"] != "ok" {
			return false
		}
	}
	return true
}

// SentinelClient returns a client of s, a Sentinel, closed when t ends.
func (s *Server) SentinelClient(t testing.TB) *redis.SentinelClient {
	c := redis.NewSentinelClient(s.clientOptions())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// connectedReplicas is the number of replicas connected to s, as INFO
// says it.
func (s *Server) connectedReplicas(t testing.TB) string {
	t.Helper()
	info, err := s.Client(t).Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatalf("redistest: INFO replication: %v", err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if n, ok := strings.CutPrefix(line, "connected_slaves:"); ok {
			return n
		}
	}
	t.Fatalf("redistest: INFO replication says no connected_slaves: %s", info)
	return ""
}

// certNames are the names of s's certificate: what its clients dial.
func (s *Server) certNames() []string {
	if s.sentinel != "" {
		return []string{"localhost", "127.0.0.1"}
	}
	return []string{"127.0.0.1"}
}
