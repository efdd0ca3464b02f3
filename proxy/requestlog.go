package proxy

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RequestLog takes the one line the handler logs per request. The line is
// the handler's only until Request returns: it is reused after.
type RequestLog interface {
	Request(l *RequestLine)
}

// RequestLine is what is logged of a request: message "request" at info
// level, with these fields.
type RequestLine struct {
	End      time.Time // when the answer was complete (the line's time)
	Route    string    // the route of a configuration file; "" for a single route (not logged)
	Method   string
	Path     string
	Status   int           // 499: the caller went away before the answer
	Duration time.Duration // from the request's arrival to End
	Bytes    int64         // of the answer's body
	Retried  bool          // sent again with a new token after COOP rejected one
	Aborted  bool          // the answer was cut off mid-body
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (l *RequestLine) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	if l.Route != "" {
		enc.AddString("route", l.Route)
	}
	enc.AddString("method", l.Method)
	enc.AddString("path", l.Path)
	enc.AddInt("status", l.Status)
	enc.AddDuration("duration", l.Duration)
	enc.AddInt64("bytes", l.Bytes)
	enc.AddBool("retried", l.Retried)
	if l.Aborted {
		enc.AddBool("aborted", true)
	}
	return nil
}

// ZapRequestLog logs request lines with log, as one inline field (one small
// allocation per line, not a slice of every field): a copy of the line, as
// a core may keep the field to encode it later (zaptest's observer does).
func ZapRequestLog(log *zap.Logger) RequestLog { return zapRequests{log} }

type zapRequests struct{ log *zap.Logger }

func (z zapRequests) Request(l *RequestLine) {
	if ce := z.log.Check(zap.InfoLevel, "request"); ce != nil {
		ce.Time = l.End
		line := *l
		ce.Write(zap.Inline(&line))
	}
}
