//go:build unix

package redistest

import (
	"context"
	"errors"
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
