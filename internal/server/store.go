package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/redisstore"
)

// OpenBackend opens the token store holding the grant under k: with a
// Redis URL in STORE, Redis (every route's grant in it); otherwise the
// token file (StorePath). obs, when not nil, is told of Redis's
// operations; go-redis's own log lines go to log (redisstore.SetLogger).
// The caller closes it.
func OpenBackend(ctx context.Context, s *config.Settings, k tokenstore.Key, log *zap.Logger, obs redisstore.Observer) (tokenstore.Backend, error) {
	if !config.RedisStore(s.Store) {
		return OpenStore(StorePath(s, k), log)
	}
	redisstore.SetLogger(log)
	var keys [][]byte
	if s.StoreKeys != "" {
		var err error
		if keys, err = redisstore.ParseKeys([]byte(s.StoreKeys.Reveal())); err != nil {
			return nil, fmt.Errorf("%s %s: %w", config.SettingName("StoreKeyFile"), s.StoreKeyFile, err)
		}
	}
	return redisstore.Open(ctx, redisstore.Options{
		URL: s.Store, Password: s.StorePassword.Reveal(),
		CAFile: s.StoreCAFile, CertFile: s.StoreCertFile, KeyFile: s.StoreCertKeyFile,
		SealKeys: keys, Plaintext: s.StorePlaintext,
		LockTTL: s.StoreLockTTL, Grace: s.StoreLockGrace, WaitReplicas: s.StoreWaitReplicas, WaitTimeout: s.StoreWaitTimeout,
		Replica: s.Replica, Log: log.Named("store"), Observer: obs,
	})
}

// StoreName names a store for a person: the token file's path, or the
// Redis server (never its password).
func StoreName(b tokenstore.Backend) string {
	switch b := b.(type) {
	case *tokenstore.Store:
		return b.Path()
	case fmt.Stringer:
		return b.String()
	}
	return "the token store"
}

// storeMetrics is the Redis store's redisstore.Observer: operation
// latency, lock waits and errors by kind on /metrics, and what /readyz
// says of the store.
type storeMetrics struct {
	ops       *prometheus.HistogramVec
	lockWait  prometheus.Histogram
	errs      *prometheus.CounterVec
	ownFetch  prometheus.Counter
	mu        sync.Mutex
	downSince time.Time // zero while Redis answers
	lastErr   string
}

func newStoreMetrics(reg prometheus.Registerer) *storeMetrics {
	m := &storeMetrics{
		ops: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "coop_proxy_store_operation_seconds",
			Help: "Token store (Redis) operations by op, including the wait for the grant's lock.", Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9)}, []string{"op"}),
		lockWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coop_proxy_store_lock_wait_seconds",
			Help: "Time spent waiting for a grant's lock in the token store (Redis).", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coop_proxy_store_errors_total",
			Help: "Token store (Redis) failures by kind: unreachable, timeout, lock_lost, conflict, unseal, corrupt, wait."}, []string{"kind"}),
		ownFetch: prometheus.NewCounter(prometheus.CounterOpts{Name: "coop_proxy_store_own_token_fetches_total",
			Help: "Client-credentials tokens fetched without the lock of a token store (Redis) out of reach, not shared with the other replicas."}),
	}
	reg.MustRegister(m.ops, m.lockWait, m.errs, m.ownFetch)
	return m
}

// Op implements redisstore.Observer; an operation that reached Redis
// ends an outage, one that could not starts it.
func (m *storeMetrics) Op(op string, d time.Duration, err error) {
	m.ops.WithLabelValues(op).Observe(d.Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case errors.Is(err, tokenstore.ErrUnavailable):
		if m.downSince.IsZero() {
			m.downSince = time.Now()
		}
		m.lastErr = err.Error()
	case err == nil:
		m.downSince, m.lastErr = time.Time{}, ""
	}
}

// LockWait implements redisstore.Observer.
func (m *storeMetrics) LockWait(d time.Duration) { m.lockWait.Observe(d.Seconds()) }

// Error implements redisstore.Observer.
func (m *storeMetrics) Error(kind string) { m.errs.WithLabelValues(kind).Inc() }

// unavailable is what /readyz says of the store: "" while it answers.
func (m *storeMetrics) unavailable() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.downSince.IsZero() {
		return ""
	}
	return fmt.Sprintf("unavailable for %s: %s; serving with the tokens held", time.Since(m.downSince).Round(time.Second), m.lastErr)
}
