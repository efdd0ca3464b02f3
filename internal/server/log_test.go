package server

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

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
