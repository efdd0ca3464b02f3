package server

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/proxy"
)

// requestLineBoth writes l with NewLogger's request log and with zap's (as
// proxy.ZapRequestLog over the logger named "proxy"), and returns both.
func requestLineBoth(format config.LogFormat, level zapcore.Level, l proxy.RequestLine) (fast, viaZap string) {
	var a, z bytes.Buffer
	la := NewLogger(&a, format, config.LogLevel{Level: level})
	la.Requests.Request(&l)
	la.Flush()
	lz := NewLogger(&z, format, config.LogLevel{Level: level})
	proxy.ZapRequestLog(lz.Log.Named("proxy")).Request(&l)
	lz.Flush()
	return a.String(), z.String()
}

var requestLineCases = []proxy.RequestLine{
	{Method: "POST", Path: "/api/1/eggs-count", Status: 200, Duration: 1500 * time.Microsecond, Bytes: 102},
	{Route: "coop-eggs", Method: "POST", Path: "/api/1/eggs-count", Status: 200, Duration: 1500 * time.Microsecond, Bytes: 102},
	{Method: "GET", Path: "/api/me", Status: 499, Duration: 0, Bytes: 0, Retried: true, Aborted: true},
	{Method: "PUT", Path: "/a \"quoted\" \\ path\n\r\t\x00\x1f\x7f", Status: 503, Duration: 2*time.Hour + 3*time.Millisecond, Bytes: 1 << 40},
	{Method: "G\xffT", Path: "/caf\u00e9/\u2028/\U0001F414/\xe2\x82/\xc0\xaf", Status: 504, Duration: 999 * time.Microsecond},
	{Method: "", Path: "", Status: 0, Duration: 120 * time.Second, Bytes: -1},
}

// The request lines written by hand are the bytes zap writes, in both
// formats, at every time of day and zone.
func TestRequestLinesAreZaps(t *testing.T) {
	east := time.FixedZone("east", 5*3600+30*60)
	ends := []time.Time{
		time.Date(2026, 11, 29, 10, 16, 6, 123456789, time.UTC),
		time.Date(2026, 11, 29, 23, 59, 59, 999999999, east),
	}
	for _, format := range []config.LogFormat{"json", "console"} {
		for _, end := range ends {
			for _, l := range requestLineCases {
				l.End = end
				fast, viaZap := requestLineBoth(format, zapcore.InfoLevel, l)
				if fast != viaZap || fast == "" {
					t.Errorf("%s, %+v:\n by hand %q\n zap     %q", format, l, fast, viaZap)
				}
			}
		}
	}
}

// Above info level neither writes a request line.
func TestRequestLinesFollowTheLevel(t *testing.T) {
	l := requestLineCases[0]
	l.End = time.Now()
	if fast, viaZap := requestLineBoth("json", zapcore.WarnLevel, l); fast != "" || viaZap != "" {
		t.Fatalf("at warn level: %q and %q", fast, viaZap)
	}
}

// And for random methods and paths (any bytes), statuses, durations and sizes.
func TestRandomRequestLinesAreZaps(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	text := func() string {
		b := make([]byte, rnd.IntN(24))
		for i := range b {
			b[i] = byte(rnd.UintN(256))
		}
		return string(b)
	}
	end := time.Date(2026, 11, 29, 10, 16, 6, 123456789, time.UTC)
	for range 1000 {
		l := proxy.RequestLine{End: end, Route: text(), Method: text(), Path: text(), Status: rnd.IntN(1000), Duration: time.Duration(rnd.Int64N(1 << 45)),
			Bytes: rnd.Int64(), Retried: rnd.IntN(2) == 0, Aborted: rnd.IntN(2) == 0}
		for _, format := range []config.LogFormat{"json", "console"} {
			if fast, viaZap := requestLineBoth(format, zapcore.InfoLevel, l); fast != viaZap {
				t.Fatalf("%s:\n by hand %q\n zap     %q", format, fast, viaZap)
			}
		}
	}
}

// Request lines and zap's lines, written at once from many goroutines (error
// lines flushing the buffer, some lines larger than it), come out whole:
// never one inside another.
func TestLinesWrittenTogetherStayWhole(t *testing.T) {
	var out syncBuffer
	lg := NewLogger(&out, "json", config.LogLevel{Level: zapcore.InfoLevel})
	long := strings.Repeat("p", 300<<10) // over the buffer's 32 KiB
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				path := "/api/1/eggs-count"
				if i%50 == 0 {
					path = long
				}
				lg.Requests.Request(&proxy.RequestLine{End: time.Now(), Method: "GET", Path: path, Status: 200})
				if i%20 == g {
					lg.Log.Error("boom", zap.String("path", path))
				} else {
					lg.Log.Info("tick", zap.Int("i", i))
				}
			}
		})
	}
	wg.Wait()
	lg.Flush()
	counts := map[string]int{}
	for line := range strings.SplitSeq(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var l struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("not a whole line (%v): %.200q", err, line)
		}
		counts[l.Msg]++
	}
	if counts["request"] != 8*200 || counts["boom"]+counts["tick"] != 8*200 {
		t.Fatalf("lines: %v", counts)
	}
}

// syncCounter is an output with a Sync of its own, as *os.File has
// (fsync(2)): it counts the calls.
type syncCounter struct {
	bytes.Buffer
	syncs int
}

func (s *syncCounter) Sync() error { s.syncs++; return nil }

// An error line, and the flush of the buffer, write the lines to the output
// and never call its Sync: on a file that is fsync(2), which would hold the
// log's lock, and every request's line, for as long as the disk takes.
func TestFlushingTheLogDoesNotSyncItsOutput(t *testing.T) {
	var out syncCounter
	lg := NewLogger(&out, "json", config.LogLevel{Level: zapcore.InfoLevel})
	lg.Requests.Request(&proxy.RequestLine{End: time.Now(), Method: "GET", Path: "/api/me", Status: 200})
	lg.Log.Error("boom")
	if got := strings.Count(out.String(), "\n"); got != 2 {
		t.Fatalf("after an error line, %d lines are written, want 2: %q", got, out.String())
	}
	lg.Log.Info("tick")
	lg.Flush()
	if !strings.Contains(out.String(), `"msg":"tick"`) {
		t.Fatalf("the flush did not write the buffered line: %q", out.String())
	}
	if out.syncs != 0 {
		t.Fatalf("the output's Sync was called %d times, want 0", out.syncs)
	}
}
