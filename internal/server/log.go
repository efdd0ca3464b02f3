package server

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/proxy"
)

// Logging is a process's logging, as NewLogger builds it.
type Logging struct {
	Log   *zap.Logger
	Level zap.AtomicLevel // Log's level; a reload changes it
	// Requests writes the proxy's request lines into Log's output, in Log's
	// format and at its info level, byte for byte as Log.Named("proxy")
	// would, at a fraction of zap's cost per line.
	Requests proxy.RequestLog
	Flush    func() // writes out what is buffered
}

// NewLogger builds the zap logger the settings ask for, writing to w (stderr)
// through a buffer (one write per second or per 32 KiB, not one per
// request); a line at error level or above is written at once, with
// everything before it, so that a crash or a kill loses none of them. The
// buffer is live heap, which the garbage collector's pace counts: at 256
// KiB it made a collection every 256 requests at full load, against 269 at
// 32 KiB, whose 40 writes a second cost less.
func NewLogger(w io.Writer, format config.LogFormat, level config.LogLevel) Logging {
	lvl := zap.NewAtomicLevelAt(level.Level)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = encodeTime
	encCfg.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	console := format == "console"
	if console {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	out := zapcore.Lock(flushOnly{w})
	ws := &zapcore.BufferedWriteSyncer{WS: out, Size: 32 << 10, FlushInterval: time.Second}
	core := syncOnError{zapcore.NewCore(enc, ws, lvl), ws}
	return Logging{
		Log:      zap.New(core, zap.ErrorOutput(out)),
		Level:    lvl,
		Requests: &requestLog{level: lvl, console: console, out: ws},
		Flush:    func() { _ = ws.Stop() },
	}
}

// encodeTime writes t as ISO 8601 with milliseconds and the zone offset
// ("2026-11-29T10:16:06.123Z", zap's ISO8601TimeEncoder).
func encodeTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	var buf [40]byte
	enc.AppendByteString(appendTime(buf[:0], t))
}

// appendTime appends encodeTime's text of t to b, formatting the part up
// to the second once a second: it is on every request's log line.
func appendTime(b []byte, t time.Time) []byte {
	c := timeCache.Load()
	if c == nil || c.sec != t.Unix() || c.loc != t.Location() {
		c = cacheSecond(t)
	}
	b = append(b, c.prefix...)
	ms := t.Nanosecond() / int(time.Millisecond)
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	return append(b, c.zone...)
}

// cachedSecond is appendTime's formatting of one second in one location
// (one zone offset: a zone changes its offset on a second's boundary).
type cachedSecond struct {
	sec          int64
	loc          *time.Location
	prefix, zone string
}

// cacheSecond formats t's second for appendTime, once a second.
func cacheSecond(t time.Time) *cachedSecond {
	c := &cachedSecond{sec: t.Unix(), loc: t.Location(), prefix: t.Format("2006-01-02T15:04:05."), zone: t.Format("Z0700")}
	timeCache.Store(c)
	return c
}

var timeCache atomic.Pointer[cachedSecond]

// flushOnly is the log's output: its Sync does nothing, so that flushing
// the buffer (every second, and after an error line) writes the lines to
// the file descriptor and no more. Written there, they outlive a crash or a
// kill of the process. *os.File's own Sync is fsync(2), which a log on a
// disk would do every second while the buffer's lock is held, and every
// request's line waits for that lock.
type flushOnly struct{ io.Writer }

func (flushOnly) Sync() error { return nil }

// syncOnError flushes the buffer after writing a line at error level or above.
type syncOnError struct {
	zapcore.Core
	ws zapcore.WriteSyncer
}

func (c syncOnError) With(fields []zapcore.Field) zapcore.Core {
	return syncOnError{c.Core.With(fields), c.ws}
}

func (c syncOnError) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c syncOnError) Write(e zapcore.Entry, fields []zapcore.Field) error {
	err := c.Core.Write(e, fields)
	if e.Level >= zapcore.ErrorLevel {
		_ = c.ws.Sync()
	}
	return err
}

// requestLog writes request lines as NewLogger's zap logger named "proxy"
// writes proxy.ZapRequestLog's, with the text appended by hand: zap's
// entry, encoder and field machinery cost more than the rest of the
// handler's own work per request. TestRequestLinesAreZaps holds the two to
// the same bytes.
type requestLog struct {
	level   zap.AtomicLevel
	console bool
	out     io.Writer // one Write per line, as zap's core does
	bufs    sync.Pool // of *[]byte
}

func (l *requestLog) Request(r *proxy.RequestLine) {
	if !l.level.Enabled(zapcore.InfoLevel) {
		return
	}
	bp, _ := l.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := (*bp)[:0]
	if l.console {
		b = appendConsoleLine(b, r)
	} else {
		b = appendJSONLine(b, r)
	}
	_, _ = l.out.Write(b)
	*bp = b
	l.bufs.Put(bp)
}

// appendJSONLine is zap's JSON encoder's line, with the production
// encoder config NewLogger sets.
func appendJSONLine(b []byte, r *proxy.RequestLine) []byte {
	b = append(b, `{"level":"info","time":"`...)
	b = appendTime(b, r.End)
	b = append(b, `","logger":"proxy","msg":"request",`...)
	if r.Route != "" {
		b = append(b, `"route":"`...)
		b = appendEscaped(b, r.Route)
		b = append(b, `",`...)
	}
	b = append(b, `"method":"`...)
	b = appendEscaped(b, r.Method)
	b = append(b, `","path":"`...)
	b = appendEscaped(b, r.Path)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"duration":`...)
	b = strconv.AppendInt(b, r.Duration.Nanoseconds()/1e6, 10) // zapcore.MillisDurationEncoder
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `,"retried":`...)
	b = strconv.AppendBool(b, r.Retried)
	if r.Aborted {
		b = append(b, `,"aborted":true`...)
	}
	return append(b, "}\n"...)
}

// appendConsoleLine is zap's console encoder's line: tab-separated time,
// level, logger and message, then the fields as spaced JSON.
func appendConsoleLine(b []byte, r *proxy.RequestLine) []byte {
	b = appendTime(b, r.End)
	b = append(b, "\tINFO\tproxy\trequest\t{"...)
	if r.Route != "" {
		b = append(b, `"route": "`...)
		b = appendEscaped(b, r.Route)
		b = append(b, `", `...)
	}
	b = append(b, `"method": "`...)
	b = appendEscaped(b, r.Method)
	b = append(b, `", "path": "`...)
	b = appendEscaped(b, r.Path)
	b = append(b, `", "status": `...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `, "duration": "`...)
	b = append(b, r.Duration.String()...) // zapcore.StringDurationEncoder
	b = append(b, `", "bytes": `...)
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = append(b, `, "retried": `...)
	b = strconv.AppendBool(b, r.Retried)
	if r.Aborted {
		b = append(b, `, "aborted": true`...)
	}
	return append(b, "}\n"...)
}

// appendEscaped appends s as the inside of a JSON string, as zap escapes it:
// '"', '\\' and control characters escaped (\n, \r, \t by name), and each
// byte of invalid UTF-8 replaced by \ufffd. A method or path is most often
// ASCII from the space up without '"' or '\\' throughout: that is appended
// at once.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	i := 0
	for i < len(s) && asIs[s[i]] {
		i++
	}
	if i == len(s) {
		return append(b, s...)
	}
	last := 0
	for i < len(s) {
		c := s[i]
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRuneInString(s[i:]); r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			b = append(append(b, s[last:i]...), `\ufffd`...)
			i++
			last = i
			continue
		}
		if c >= 0x20 && c != '\\' && c != '"' {
			i++
			continue
		}
		b = append(b, s[last:i]...)
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, `\n`...)
		case '\r':
			b = append(b, `\r`...)
		case '\t':
			b = append(b, `\t`...)
		default:
			b = append(b, `\u00`...)
			b = append(b, hex[c>>4], hex[c&0xF])
		}
		i++
		last = i
	}
	return append(b, s[last:]...)
}

// asIs marks the bytes appendEscaped appends unchanged by themselves:
// ASCII from the space up, but '"' and '\\'.
var asIs = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()
