package proxy_test

// Benchmarks of the handler (run by `make bench`, not by `go test`):
//
//	go test -run '^$' -bench . -benchmem ./proxy/
//
// Each has a baseline, a bare httputil.ReverseProxy that sets a fixed token
// (bench/bareproxy's), so that what the handler costs beyond it shows.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/proxy"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// eggsBody is COOP's answer to POST /api/{id}/eggs-count.
var eggsBody = []byte(`{"action":"eggs-count","success":true,"message":"You have collected a total of 3 eggs today","data":3}`)

const (
	benchToken = "0123456789abcdef0123456789abcdef01234567" // 40 hex, as COOP's
	eggsPath   = "/api/1/eggs-count"
	// benchConns is how many requests are in flight at once over HTTP, as
	// wrk's -c32 in bench/run.sh.
	benchConns = 32
)

// oneToken is a token source that always has the same long-lived token.
type oneToken struct{}

func (oneToken) Token(context.Context, string) (tokenstore.Record, error) {
	return tokenstore.Record{AccessToken: benchToken, TokenType: "Bearer", Expiry: time.Now().Add(24 * time.Hour)}, nil
}

// newHandler wires proxy.New as `coop-proxy serve` does: a token cache,
// metrics on a registry, and serve's JSON logging at info level (to
// io.Discard, so that writing the request line is counted but no I/O is).
func newHandler(b *testing.B, upstream *url.URL, base http.RoundTripper) http.Handler {
	return newHandlerWith(b, upstream, base, oneToken{}, nil)
}

// oneDPoPToken is oneToken bound to a generated ES256 key, as DPoP=true
// has it.
type oneDPoPToken struct{ rec tokenstore.Record }

func newOneDPoPToken() oneDPoPToken {
	t := oneDPoPToken{tokenstore.Record{AccessToken: benchToken, TokenType: "DPoP", Expiry: time.Now().Add(24 * time.Hour)}}
	(&dpop.Keys{}).Bind(&t.rec, dpop.Generate())
	return t
}

func (t oneDPoPToken) Token(context.Context, string) (tokenstore.Record, error) { return t.rec, nil }

// newHandlerWith is newHandler with tokens from src, bound to keys' keys
// (nil: bearer tokens).
func newHandlerWith(b *testing.B, upstream *url.URL, base http.RoundTripper, src tokensource.Source, keys *dpop.Keys) http.Handler {
	b.Helper()
	cache := &tokensource.Cache{Source: src, Margin: 5 * time.Minute, DPoP: keys}
	b.Cleanup(cache.Close)
	if _, err := cache.Token(context.Background()); err != nil {
		b.Fatal(err)
	}
	lg := server.NewLogger(io.Discard, "json", config.LogLevel{Level: zap.InfoLevel})
	b.Cleanup(lg.Flush)
	metrics := proxy.NewMetrics(prometheus.NewRegistry(), func() float64 { return 3600 }, func() bool { return true })
	return proxy.New(proxy.Options{
		Upstream:       upstream,
		Tokens:         cache,
		Base:           base,
		RetryBodyLimit: 1 << 20, // COOP_PROXY_RETRY_BODY_LIMIT's default
		Log:            lg.Log.Named("proxy"),
		Requests:       lg.Requests,
		Metrics:        metrics,
		LoopbackOnly:   true,
		AdminPaths:     []string{"/healthz", "/readyz", "/metrics"},
	})
}

// newBare is the baseline: bench/bareproxy's reverse proxy, with a pool of
// copy buffers as coop-proxy has.
func newBare(upstream *url.URL, base http.RoundTripper) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			pr.Out.Header.Set("Authorization", "Bearer "+benchToken)
		},
		Transport:  base,
		BufferPool: barePool{&sync.Pool{New: func() any { return new([32 << 10]byte) }}},
	}
}

// barePool is bench/bareproxy's httputil.BufferPool.
type barePool struct{ p *sync.Pool }

func (b barePool) Get() []byte  { return b.p.Get().(*[32 << 10]byte)[:] }
func (b barePool) Put(s []byte) { b.p.Put((*[32 << 10]byte)(s[:32<<10])) }

// startUpstream starts a stand-in for COOP that answers eggsBody.
func startUpstream(b *testing.B) *url.URL {
	b.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(eggsBody)
	}))
	b.Cleanup(up.Close)
	u, err := url.Parse(up.URL)
	if err != nil {
		b.Fatal(err)
	}
	return u
}

// benchOverHTTP serves h on a loopback listener and POSTs to it from
// benchConns goroutines, each connection kept alive.
func benchOverHTTP(b *testing.B, h http.Handler) {
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * benchConns}}
	b.Cleanup(client.CloseIdleConnections)
	target := srv.URL + eggsPath

	b.ReportAllocs()
	// RunParallel starts parallelism × GOMAXPROCS goroutines.
	b.SetParallelism((benchConns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(target, "", nil)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkHandler is coop-proxy's handler over real loopback HTTP, in
// front of an httptest upstream: client, proxy and upstream in one process.
func BenchmarkHandler(b *testing.B) {
	benchOverHTTP(b, newHandler(b, startUpstream(b), proxy.NewTransport(30*time.Second)))
}

// BenchmarkBareReverseProxy is BenchmarkHandler's baseline.
func BenchmarkBareReverseProxy(b *testing.B) {
	benchOverHTTP(b, newBare(startUpstream(b), proxy.NewTransport(30*time.Second)))
}

// canned is a RoundTripper that answers eggsBody without a network.
type canned struct{}

var cannedLength = []string{strconv.Itoa(len(eggsBody))}

func (canned) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		// A new map each time: ReverseProxy deletes hop-by-hop headers from it.
		Header:        http.Header{"Content-Type": {"application/json"}, "Content-Length": cannedLength},
		Body:          io.NopCloser(bytes.NewReader(eggsBody)),
		ContentLength: int64(len(eggsBody)),
		Request:       req,
	}, nil
}

// benchServeHTTP calls h.ServeHTTP directly with the same request each time
// (the handlers do not change it) and a new recorder.
func benchServeHTTP(b *testing.B, h http.Handler) {
	req := httptest.NewRequest(http.MethodPost, eggsPath, nil)
	req.Host = "127.0.0.1:8080" // as a caller of coop-proxy on loopback sends it
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkHandlerServeHTTP is the handler's own per-request cost, with the
// transport to COOP stubbed out.
func BenchmarkHandlerServeHTTP(b *testing.B) {
	benchServeHTTP(b, newHandler(b, &url.URL{Scheme: "http", Host: "coop.invalid"}, canned{}))
}

// BenchmarkHandlerServeHTTPDPoP is BenchmarkHandlerServeHTTP with a
// DPoP-bound token (ES256): a proof signed per request (RFC 9449 §7).
func BenchmarkHandlerServeHTTPDPoP(b *testing.B) {
	benchServeHTTP(b, newHandlerWith(b, &url.URL{Scheme: "http", Host: "coop.invalid"}, canned{}, newOneDPoPToken(), &dpop.Keys{}))
}

// BenchmarkHandlerDPoP is BenchmarkHandler with a DPoP-bound token.
func BenchmarkHandlerDPoP(b *testing.B) {
	benchOverHTTP(b, newHandlerWith(b, startUpstream(b), proxy.NewTransport(30*time.Second), newOneDPoPToken(), &dpop.Keys{}))
}

// BenchmarkBareReverseProxyServeHTTP is BenchmarkHandlerServeHTTP's baseline.
func BenchmarkBareReverseProxyServeHTTP(b *testing.B) {
	benchServeHTTP(b, newBare(&url.URL{Scheme: "http", Host: "coop.invalid"}, canned{}))
}
