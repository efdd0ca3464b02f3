// Package poll waits in tests for a condition that other goroutines or
// processes bring about. Tests assert behaviour, not speed: the limit is
// generous for a loaded machine and only bounds a test that would hang.
package poll

import (
	"testing"
	"time"
)

// Limit is how long Until waits.
const Limit = 20 * time.Second

// Until calls cond every few milliseconds until it holds, and fails the
// test, naming what it waited for, if it does not within Limit.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still no %s", Limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
