package server

import (
	"io"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// NewLogger builds the zap logger the settings ask for, writing to w (stderr)
// through a buffer (one write per second, not one per request); a line at
// error level or above is written at once, with everything before it, so
// that a crash or a kill loses none of them. Its level can be changed while
// it runs; the returned func flushes it.
func NewLogger(w io.Writer, format config.LogFormat, level config.LogLevel) (*zap.Logger, zap.AtomicLevel, func()) {
	lvl := zap.NewAtomicLevelAt(level.Level)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = encodeTime
	encCfg.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	if format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	ws := &zapcore.BufferedWriteSyncer{WS: out, Size: 256 << 10, FlushInterval: time.Second}
	core := syncOnError{zapcore.NewCore(enc, ws, lvl), ws}
	log := zap.New(core, zap.ErrorOutput(out))
	return log, lvl, func() { _ = ws.Stop() }
}

// encodeTime writes t as ISO 8601 with milliseconds and the zone offset
// ("2026-11-29T10:16:06.123Z", zap's ISO8601TimeEncoder), formatting the
// part up to the second once a second: it is on every request's log line.
func encodeTime(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
	sec := t.Unix()
	_, offset := t.Zone()
	c := timeCache.Load()
	if c == nil || c.sec != sec || c.offset != offset {
		c = &cachedSecond{sec: sec, offset: offset, prefix: t.Format("2006-01-02T15:04:05."), zone: t.Format("Z0700")}
		timeCache.Store(c)
	}
	var buf [40]byte
	b := append(buf[:0], c.prefix...)
	ms := t.Nanosecond() / int(time.Millisecond)
	b = append(b, byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	enc.AppendByteString(append(b, c.zone...))
}

// cachedSecond is encodeTime's formatting of one second.
type cachedSecond struct {
	sec          int64
	offset       int
	prefix, zone string
}

var timeCache atomic.Pointer[cachedSecond]

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
