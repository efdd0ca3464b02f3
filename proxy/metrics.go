package proxy

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the proxy's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	requests     *prometheus.CounterVec
	byStatus     [600]atomic.Pointer[prometheus.Counter] // resolved label values, so the hot path does no lookup
	upstreamTime prometheus.Histogram
	retries      prometheus.Counter
	fetches      *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg. expiresIn reports the seconds
// until the current token expires (negative when there is none).
func NewMetrics(reg prometheus.Registerer, expiresIn func() float64, durable func() bool) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coop_proxy_requests_total", Help: "Requests answered, by HTTP status.",
		}, []string{"code"}),
		upstreamTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coop_proxy_upstream_duration_seconds",
			Help:    "Time from sending a request to COOP to its response headers.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coop_proxy_retries_total", Help: "Requests sent again with a new token after COOP rejected the token.",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coop_proxy_token_fetches_total", Help: "Token fetches, by outcome (ok or the error code).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.upstreamTime, m.retries, m.fetches,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coop_proxy_token_expiry_seconds", Help: "Seconds until the current access token expires; -1 with no token.",
		}, expiresIn),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coop_proxy_token_store_durable", Help: "1 when every token in use is written to the token store, 0 while a write is pending.",
		}, func() float64 {
			if durable() {
				return 1
			}
			return 0
		}))
	return m
}

func (m *Metrics) request(status int) {
	if m == nil {
		return
	}
	if status < 0 || status >= len(m.byStatus) {
		m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
		return
	}
	c := m.byStatus[status].Load()
	if c == nil {
		cv := m.requests.WithLabelValues(strconv.Itoa(status))
		m.byStatus[status].Store(&cv)
		c = &cv
	}
	(*c).Inc()
}

func (m *Metrics) upstream(d time.Duration) {
	if m != nil {
		m.upstreamTime.Observe(d.Seconds())
	}
}

func (m *Metrics) retry() {
	if m != nil {
		m.retries.Inc()
	}
}

// TokenFetched counts a fetch by its outcome: "ok", or the error code.
func (m *Metrics) TokenFetched(outcome string) {
	if m != nil {
		m.fetches.WithLabelValues(outcome).Inc()
	}
}
