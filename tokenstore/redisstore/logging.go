package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// SetLogger routes go-redis's own log lines to log, at warn, under the
// name "redis", instead of the standard library's logger on stderr.
// go-redis logs through one global logger (redis.SetLogger): a failed dial
// (one line per attempt while Redis is down), a Sentinel's new master, a
// pub/sub reconnection. Lines of one kind (one format) come at most once
// every logEvery, the next one saying how many were suppressed meanwhile.
// None of the lines go-redis logs holds a password (they carry addresses,
// master names and errors; Redis's refusal of AUTH does not repeat it),
// and the passwords of this process's Stores are blanked out all the same.
func SetLogger(log *zap.Logger) {
	redis.SetLogger(&goRedisLog{log: log.Named("redis"), now: time.Now, last: map[string]time.Time{}, suppressed: map[string]int{}})
}

// logEvery bounds how often one kind of go-redis line is logged.
const logEvery = 10 * time.Second

// goRedisLog is go-redis's Logging interface (Printf(ctx, format, v...))
// on zap, rate-limited per format.
type goRedisLog struct {
	log *zap.Logger
	now func() time.Time

	mu         sync.Mutex
	last       map[string]time.Time // format → when it was last logged
	suppressed map[string]int       // format → lines not logged since
}

func (l *goRedisLog) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	t := l.now()
	if last, ok := l.last[format]; ok && t.Sub(last) < logEvery {
		l.suppressed[format]++
		l.mu.Unlock()
		return
	}
	n := l.suppressed[format]
	l.last[format], l.suppressed[format] = t, 0
	l.mu.Unlock()
	msg := strings.TrimPrefix(strings.TrimSpace(fmt.Sprintf(format, v...)), "redis: ")
	var fields []zap.Field
	if n > 0 {
		fields = append(fields, zap.Int("suppressed", n), zap.Duration("since", logEvery))
	}
	l.log.Warn(blankPasswords(msg), fields...)
}

// passwords are those the Stores of this process were given (Open,
// SetPassword): what blankPasswords removes from go-redis's lines.
var passwords sync.Map // string → struct{}

func addPassword(p string) {
	if p != "" {
		passwords.Store(p, struct{}{})
	}
}

func blankPasswords(msg string) string {
	passwords.Range(func(p, _ any) bool {
		msg = strings.ReplaceAll(msg, p.(string), "[password]")
		return true
	})
	return msg
}
