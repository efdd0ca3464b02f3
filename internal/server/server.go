// Package server is a running coop-proxy: the proxy listener and the admin
// listener, the token stack behind them, reloads of the settings, and the
// drain on shutdown. Build one with New from a checked config.Settings and
// run it with Run.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/proxy"
)

// fetchGrace is how long shutdown lets a token fetch in flight finish
// before cancelling it.
const fetchGrace = 2 * time.Second

// adminPaths are served by the admin listener and never forwarded.
var adminPaths = []string{"/healthz", "/readyz", "/metrics"}

// Addrs are the addresses the server listens on; Admin is "" without an
// admin listener.
type Addrs struct{ Proxy, Admin string }

// Options carry what the server needs beside its settings.
type Options struct {
	Log   *zap.Logger     // nil: no log
	Level zap.AtomicLevel // the logger's level, changed by a reload
	// Requests takes the proxy's request lines; nil: Log.Named("proxy").
	Requests proxy.RequestLog
	// Reread reads the settings again, for a reload on SIGHUP or when a
	// secret file changes; nil: no reload.
	Reread func() (*config.Settings, error)
	// Ready, when set, receives the addresses once the listeners accept.
	Ready chan<- Addrs
	// WatchEvery is how often secret files are looked at; 0: every 5 s.
	WatchEvery time.Duration
	TokenOptions
}

// Server is one coop-proxy process's serving state.
type Server struct {
	settings atomic.Pointer[config.Settings] // in effect; replaced whole by Reload
	opts     Options
	log      *zap.Logger
	tokens   *Tokens
	handler  *proxy.Handler
	reg      *prometheus.Registry
	draining atomic.Bool
}

// New builds the server: it opens the token store and builds the token
// stack and the handler; it neither listens nor fetches a token yet.
func New(s *config.Settings, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	srv := &Server{opts: o, log: o.Log, reg: prometheus.NewRegistry()}
	srv.settings.Store(s)
	srv.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var metrics *proxy.Metrics
	tokenLog := o.Log.Named("tokens")
	tk, err := NewTokens(&s.Route, s.Store, o.Log, o.TokenOptions, func(err error) {
		metrics.TokenFetched(fetchOutcome(err))
		var te *tokensource.Error
		if errors.As(err, &te) {
			tokenLog.Warn("no token", zap.String("error", string(te.Code)), zap.String("reason", te.Description), zap.Duration("retry_in", te.RetryAfter))
		}
	})
	if err != nil {
		return nil, err
	}
	srv.tokens = tk
	metrics = proxy.NewMetrics(srv.reg, srv.expiresIn, tk.Stored.Durable)
	r := &s.Route
	upstream, err := url.Parse(r.Upstream)
	if err != nil {
		return nil, err
	}
	// A whole request takes at most RequestTimeout (the server's deadlines,
	// see Run), so COOP's answer is awaited no longer than that either.
	base := proxy.NewTransport(min(r.UpstreamTimeout, r.RequestTimeout))
	base.MaxConnsPerHost = r.MaxUpstreamConns
	srv.handler = proxy.New(proxy.Options{
		Upstream:       upstream,
		Tokens:         tk.Cache,
		Base:           base,
		RetryBodyLimit: r.RetryBodyLimit,
		LoopbackOnly:   config.IsLoopback(r.Listen),
		AdminPaths:     adminPaths,
		MaxHeaderBytes: s.MaxHeaderBytes,
		MaxBodyBytes:   r.MaxBodyBytes,
		RequestTimeout: r.RequestTimeout,
		Log:            o.Log.Named("proxy"),
		Requests:       o.Requests,
		Metrics:        metrics,
	})
	srv.handler.SetInboundSecret(r.InboundSecret.Reveal())
	return srv, nil
}

// Run listens at once, fetches a token in the background (callers get 503
// with Retry-After until one is held), serves until ctx ends, then drains:
// readiness goes false, a token fetch in flight is cancelled, the proxy
// listener closes and in-flight requests get ShutdownTimeout to finish,
// while the admin listener keeps answering. With an issuer, its metadata
// is read meanwhile; a provider that cannot serve the settings ends Run
// the same way, with that problem as its error.
func (srv *Server) Run(ctx context.Context) error {
	s := srv.settings.Load()
	r := &s.Route
	if r.AllowUnauthenticatedCallers && r.InboundSecret == "" && !config.IsLoopback(r.Listen) {
		srv.log.Warn("listening beyond loopback without an inbound secret: anyone who reaches coop-proxy acts as the farmer", zap.String("listen", r.Listen))
	}
	ln, err := listen(r.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", r.Listen, err)
	}
	ln = newLimitListener(ln, s.MaxConns)
	// Every caller connection has deadlines: its request (body included)
	// must arrive within RequestTimeout, its answer be taken within
	// RequestTimeout and a little more (a 504 for COOP's silence comes first),
	// and an idle keep-alive connection is closed. http.Server's header
	// limit (a plain-text 431) is a backstop; the handler answers
	// MaxHeaderBytes with JSON.
	main := &http.Server{Handler: srv.handler, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: r.RequestTimeout, WriteTimeout: r.RequestTimeout + 5*time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 2 * s.MaxHeaderBytes, ErrorLog: zap.NewStdLog(srv.log.Named("http"))}
	servers := []*http.Server{main}
	lns := []net.Listener{ln}
	addrs := Addrs{Proxy: ln.Addr().String()}
	if s.AdminEnabled() {
		aln, err := net.Listen("tcp", s.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s (admin): %w", s.AdminListen, err)
		}
		servers = append(servers, &http.Server{Handler: srv.adminHandler(), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second})
		lns = append(lns, aln)
		addrs.Admin = aln.Addr().String()
	}

	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.tokens.maintain(bg, srv.log.Named("tokens")) })
	if srv.opts.Reread != nil {
		wg.Go(func() { srv.watchReloads(bg) })
	}
	fatal := make(chan error, 1)
	if srv.tokens.Discovery != nil {
		wg.Go(func() { srv.watchProvider(bg, fatal) })
	}
	defer func() {
		stopBg()
		srv.tokens.Cache.Close()
		wg.Wait()
		// Tokens still only in memory are the farmer's grant: one more try,
		// bounded, as another process may hold the store's lock.
		fctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
		defer cancel()
		if err := srv.tokens.Stored.Flush(fctx); err != nil {
			srv.log.Error("EXITING WITH NEW TOKENS NOT WRITTEN TO THE TOKEN STORE: the grant may be lost; run `coop-proxy login` if the next start says login_required", zap.Error(err))
		}
	}()

	errc := make(chan error, len(servers))
	for i, hs := range servers {
		go func() { errc <- hs.Serve(lns[i]) }()
	}
	srv.log.Info("coop-proxy listening", zap.String("listen", addrs.Proxy), zap.String("admin", addrs.Admin),
		zap.String("upstream", r.Upstream), zap.String("grant", string(r.Grant)), zap.String("client_id", r.ClientID),
		zap.String("store", srv.tokens.Store.Path()))
	_ = srv.log.Sync() // the line operators and scripts wait for, at once
	if srv.opts.Ready != nil {
		srv.opts.Ready <- addrs
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	case runErr = <-fatal: // the provider cannot serve these settings: drain, then say so
	}
	srv.draining.Store(true)
	srv.log.Info("shutting down: finishing in-flight requests", zap.Duration("timeout", s.ShutdownTimeout))
	// A fetch in flight would hold up callers waiting for a token, and
	// with them the drain: it gets a moment to finish (a refresh COOP is
	// answering carries the rotated refresh token), then it is cancelled.
	srv.tokens.Cache.CloseAfter(fetchGrace)
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, hs := range servers {
		if err := hs.Shutdown(sctx); err != nil {
			shutErr = fmt.Errorf("requests still in flight after %s: %w", s.ShutdownTimeout, err)
		}
	}
	srv.log.Info("coop-proxy stopped")
	return cmp.Or(runErr, shutErr)
}

func fetchOutcome(err error) string {
	if err == nil {
		return "ok"
	}
	var te *tokensource.Error
	if errors.As(err, &te) {
		return string(te.Code)
	}
	return "error"
}
