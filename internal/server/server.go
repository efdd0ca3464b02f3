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
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/proxy"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// fetchGrace is how long shutdown lets a token fetch in flight finish
// before cancelling it.
const fetchGrace = 2 * time.Second

// adminPaths are served by the admin listener and never forwarded.
var adminPaths = []string{"/healthz", "/readyz", "/metrics"}

// Addrs are the addresses the server listens on: Proxy is the first
// route's, Routes each route's by name; Admin is "" without an admin
// listener.
type Addrs struct {
	Proxy, Admin string
	Routes       map[string]string
}

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

// Server is one coop-proxy process's serving state: its routes, the token
// stacks behind them (one per store key), and the listeners in front.
type Server struct {
	settings atomic.Pointer[config.Settings] // in effect; replaced whole by Reload
	opts     Options
	log      *zap.Logger
	reg      *prometheus.Registry // the process's metrics; each route has its own registry
	draining atomic.Bool
	// backend is the Redis store every stack shares, nil with token files
	// (a stack opens its file); storeMetrics observes it.
	backend      tokenstore.Backend
	storeMetrics *storeMetrics

	// mu guards what reloads change: the routes, the stacks and the
	// listeners. It is never held across network I/O or a drain.
	mu     sync.Mutex
	routes []*route          // in the order of the settings
	stacks map[string]*stack // by store key
	fronts map[string]*front // by config.Route.ListenKey
	run    *runState         // nil until Run starts, and after it ends
	// reloads counts the drains of what reloads removed, which Run's
	// shutdown waits for.
	reloads sync.WaitGroup
}

// New builds the server: it opens the token store and builds each route's
// token stack and handler; it neither listens nor fetches a token yet.
func New(s *config.Settings, o Options) (*Server, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	srv := &Server{opts: o, log: o.Log, reg: prometheus.NewRegistry(), stacks: map[string]*stack{}, fronts: map[string]*front{}}
	srv.settings.Store(s)
	srv.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if config.RedisStore(s.Store) {
		srv.storeMetrics = newStoreMetrics(srv.reg)
		b, err := OpenBackend(context.Background(), s, tokenstore.Key{}, o.Log, srv.storeMetrics)
		if err != nil {
			return nil, err
		}
		srv.backend = b
	}
	for _, r := range s.AllRoutes() {
		rt, err := srv.newRoute(&r, s.MaxHeaderBytes)
		if err != nil {
			srv.closeBackend()
			return nil, err
		}
		srv.routes = append(srv.routes, rt)
	}
	return srv, nil
}

// runState is what Run started: the background work of the stacks and
// listeners a reload adds is started under it.
type runState struct {
	bg    context.Context
	wg    *sync.WaitGroup
	fatal chan error
	errc  chan error
}

// Run listens at once, fetches tokens in the background (callers get 503
// with Retry-After until one is held), serves until ctx ends, then drains:
// readiness goes false, token fetches in flight are cancelled, the proxy
// listeners close and in-flight requests get ShutdownTimeout to finish,
// while the admin listener keeps answering. With an issuer, its metadata
// is read meanwhile; a provider that cannot serve the settings ends Run
// the same way, with that problem as its error.
func (srv *Server) Run(ctx context.Context) error {
	s := srv.settings.Load()
	for _, r := range s.AllRoutes() {
		if r.AllowUnauthenticatedCallers && r.InboundSecret == "" && !config.IsLoopback(r.Listen) {
			srv.log.Warn("listening beyond loopback without an inbound secret: anyone who reaches coop-proxy acts as the farmer", zap.String("route", r.Name), zap.String("listen", r.Listen))
		}
	}
	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	rs := &runState{bg: bg, wg: &wg, fatal: make(chan error, 1), errc: make(chan error, 1)}
	fail := func(err error) error {
		stopBg()
		srv.closeFronts()
		wg.Wait()
		return err
	}
	srv.mu.Lock()
	for _, rt := range srv.routes {
		if err := srv.attachLocked(rt, s.AllRoutes(), rs); err != nil {
			srv.mu.Unlock()
			return fail(err)
		}
	}
	srv.run = rs
	srv.mu.Unlock()

	var admin *http.Server
	var aln net.Listener
	// closeAdmin closes the admin listener itself too: its Serve goroutine
	// may not have started yet, and Close reaches only listeners Serve holds.
	closeAdmin := func(shut func() error) {
		if admin != nil {
			_ = shut()
			_ = aln.Close()
		}
	}
	addrs := srv.addrs()
	if s.AdminEnabled() {
		var err error
		aln, err = net.Listen("tcp", s.AdminListen)
		if err != nil {
			return fail(fmt.Errorf("cannot listen on %s (admin): %w", s.AdminListen, err))
		}
		admin = &http.Server{Handler: srv.adminHandler(), ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}
		go func() { rs.serveError(admin.Serve(aln)) }()
		addrs.Admin = aln.Addr().String()
	}
	if srv.opts.Reread != nil {
		seen := srv.secretFiles() // now: a change made once Ready is sent is a change
		wg.Go(func() { srv.watchReloads(bg, seen) })
	}
	defer func() {
		stopBg()
		srv.mu.Lock()
		srv.run = nil
		stacks := slices.Collect(maps.Values(srv.stacks))
		srv.mu.Unlock()
		for _, st := range stacks {
			st.tokens.Cache.Close()
		}
		wg.Wait()
		// Tokens still only in memory are the farmer's grant: one more try,
		// bounded, as another process may hold the store's lock.
		fctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
		defer cancel()
		for _, st := range stacks {
			if err := st.tokens.Stored.Flush(fctx); err != nil {
				srv.log.Error("EXITING WITH NEW TOKENS NOT WRITTEN TO THE TOKEN STORE: the grant may be lost; run `coop-proxy login` if the next start says login_required", zap.Error(err))
			}
		}
		srv.closeBackend()
	}()

	for _, r := range s.AllRoutes() {
		srv.log.Info("coop-proxy listening", zap.String("route", r.Name), zap.String("listen", addrs.Routes[r.Name]), zap.String("path_prefix", r.PathPrefix),
			zap.String("admin", addrs.Admin), zap.String("upstream", r.Upstream), zap.String("grant", string(r.Grant)), zap.String("client_id", r.ClientID),
			zap.String("store", srv.storeName(s, &r)))
	}
	_ = srv.log.Sync() // the line operators and scripts wait for, at once
	if srv.opts.Ready != nil {
		srv.opts.Ready <- addrs
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-rs.errc:
		srv.closeFronts()
		closeAdmin(func() error { return admin.Close() })
		return err
	case runErr = <-rs.fatal: // a provider cannot serve these settings: drain, then say so
	}
	srv.draining.Store(true)
	srv.log.Info("shutting down: finishing in-flight requests", zap.Duration("timeout", s.ShutdownTimeout))
	// A fetch in flight would hold up callers waiting for a token, and
	// with them the drain: it gets a moment to finish (a refresh COOP is
	// answering carries the rotated refresh token), then it is cancelled.
	srv.mu.Lock()
	stacks := slices.Collect(maps.Values(srv.stacks))
	fronts := slices.Collect(maps.Values(srv.fronts))
	srv.mu.Unlock()
	var cwg sync.WaitGroup
	for _, st := range stacks {
		cwg.Go(func() { st.tokens.Cache.CloseAfter(fetchGrace) })
	}
	cwg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, f := range fronts {
		if err := f.hs.Shutdown(sctx); err != nil {
			shutErr = fmt.Errorf("requests still in flight after %s: %w", s.ShutdownTimeout, err)
		}
	}
	srv.reloads.Wait() // fronts a reload is draining
	closeAdmin(func() error { return admin.Shutdown(sctx) })
	srv.log.Info("coop-proxy stopped")
	return cmp.Or(runErr, shutErr)
}

// closeBackend closes the shared store, if there is one.
func (srv *Server) closeBackend() {
	if srv.backend != nil {
		if err := srv.backend.Close(); err != nil {
			srv.log.Warn("closing the token store", zap.Error(err))
		}
	}
}

// storeName names the store of the route's grant.
func (srv *Server) storeName(s *config.Settings, r *config.Route) string {
	if srv.backend != nil {
		return StoreName(srv.backend)
	}
	return StorePath(s, StoreKey(r))
}

// serveError reports a listener's end other than a shutdown: Run stops.
func (rs *runState) serveError(err error) {
	if errors.Is(err, http.ErrServerClosed) {
		return
	}
	select {
	case rs.errc <- err:
	default: // Run is stopping for another listener already
	}
}

// addrs are the addresses the routes listen on.
func (srv *Server) addrs() Addrs {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	a := Addrs{Routes: map[string]string{}}
	for i, rt := range srv.routes {
		addr := srv.fronts[rt.cfg().ListenKey()].ln.Addr().String()
		a.Routes[rt.name] = addr
		if i == 0 {
			a.Proxy = addr
		}
	}
	return a
}

// closeFronts closes every listener at once (Run failed to start). The
// listener is closed by hand as well: a Serve goroutine not yet started
// would otherwise leave it open past Run's return.
func (srv *Server) closeFronts() {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, f := range srv.fronts {
		_ = f.hs.Close()
		_ = f.ln.Close()
	}
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
