package server

import (
	"io"
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
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
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
