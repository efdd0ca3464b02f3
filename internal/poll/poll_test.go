package poll

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			time.Sleep(10 * time.Millisecond)
			n.Add(1)
		}
	}()
	Until(t, "three steps", func() bool { return n.Load() == 3 })
	if n.Load() != 3 {
		t.Fatalf("Until returned at %d steps", n.Load())
	}
}
