package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/proxy"
)

// adminPaths are served by the admin listener and never forwarded.
var adminPaths = []string{"/healthz", "/readyz", "/metrics"}

// runServe runs the proxy until ctx ends (SIGINT or SIGTERM).
func runServe(ctx context.Context, cfg *Config, reread rereadFunc, _ io.Writer) error {
	log, level, flush := newLogger(cfg)
	defer flush()
	err := serve(ctx, cfg, log, level, serveOptions{reload: reread})
	if err != nil {
		log.Error("coop-proxy stopped", zap.Error(err))
	}
	return err
}

// server is a running proxy: its listeners and token stack.
type server struct {
	cfg      *Config          // replaced by a reload, in the reload goroutine only
	secrets  [2]redact.Secret // the client and inbound secrets in use
	hooks    serveOptions
	log      *zap.Logger
	level    zap.AtomicLevel
	tokens   *tokens
	draining atomic.Bool
}

// serveOptions carry the reload and let the demo and the tests watch and
// steer a running proxy.
type serveOptions struct {
	reload     func() (*Config, error)                   // reads the settings again on SIGHUP; nil: no reload
	ready      chan<- [2]string                          // receives the proxy's and admin listener's addresses once both listen
	now        func() time.Time                          // the token cache's clock; nil: time.Now
	wrapStore  func(tokensource.Store) tokensource.Store // lets a test make the store fail
	watchEvery time.Duration                             // how often secret files are looked at; 0: secretWatchInterval
}

// serve listens, serves until ctx ends, then drains.
func serve(ctx context.Context, cfg *Config, log *zap.Logger, level zap.AtomicLevel, hooks serveOptions) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var metrics *proxy.Metrics
	tokenLog := log.Named("tokens")
	tk, err := newTokens(cfg, log, hooks, func(err error) {
		metrics.TokenFetched(fetchOutcome(err))
		var te *tokensource.Error
		if errors.As(err, &te) {
			tokenLog.Warn("no token", zap.String("error", string(te.Code)), zap.String("reason", te.Description), zap.Duration("retry_in", te.RetryAfter))
		}
	})
	if err != nil {
		return err
	}
	s := &server{cfg: cfg, hooks: hooks, log: log, level: level, tokens: tk}
	metrics = proxy.NewMetrics(reg, s.expiresIn, tk.stored.Durable)
	upstream, _ := url.Parse(cfg.Upstream)
	base := proxy.NewTransport(cfg.UpstreamTimeout)
	base.MaxConnsPerHost = cfg.MaxUpstreamConns
	handler := proxy.New(proxy.Options{
		Upstream:       upstream,
		Tokens:         tk.cache,
		Base:           base,
		RetryBodyLimit: cfg.RetryBodyLimit,
		LoopbackOnly:   isLoopbackListen(cfg.Listen),
		AdminPaths:     adminPaths,
		MaxHeaderBytes: cfg.MaxHeaderBytes,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		RequestTimeout: cfg.RequestTimeout,
		Log:            log.Named("proxy"),
		Metrics:        metrics,
	})
	secret, _ := cfg.secret() // both checked before serve
	inbound, _ := cfg.inboundSecret()
	s.secrets = [2]redact.Secret{secret, inbound}
	handler.SetInboundSecret(inbound.Reveal())
	if cfg.AllowUnauthenticatedCallers && inbound == "" && !isLoopbackListen(cfg.Listen) {
		log.Warn("listening beyond loopback without an inbound secret: anyone who reaches coop-proxy acts as the farmer", zap.String("listen", cfg.Listen))
	}

	ln, err := listen(cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", cfg.Listen, err)
	}
	// http.Server's own limit (with a plain-text 431) is a backstop; the
	// handler answers MaxHeaderBytes with JSON.
	main := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 2 * cfg.MaxHeaderBytes, ErrorLog: zap.NewStdLog(log.Named("http"))}
	servers := []*http.Server{main}
	lns := []net.Listener{ln}
	addrs := [2]string{ln.Addr().String()}
	if cfg.adminEnabled() {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("cannot listen on %s (admin): %w", cfg.AdminListen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "alive"}) })
		mux.HandleFunc("GET /readyz", s.readyz)
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		servers = append(servers, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second})
		lns = append(lns, aln)
		addrs[1] = aln.Addr().String()
	}

	bg, stopBg := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { tk.maintain(bg, log.Named("tokens")) })
	if hooks.reload != nil {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		wg.Go(func() {
			// Secret files are also watched, as Kubernetes updates a mounted
			// Secret in place and nothing in a pod can send SIGHUP.
			every := hooks.watchEvery
			if every == 0 {
				every = secretWatchInterval
			}
			watch := time.NewTicker(every)
			defer watch.Stop()
			seen := s.secretFiles()
			for {
				select {
				case <-bg.Done():
					return
				case <-hup:
				case <-watch.C:
					if now := s.secretFiles(); now == seen {
						continue
					}
					s.log.Info("a secret file changed: reloading")
				}
				s.reload(hooks.reload, handler)
				seen = s.secretFiles()
			}
		})
	}
	defer func() {
		stopBg()
		tk.cache.Close()
		wg.Wait()
		// Tokens still only in memory are the farmer's grant: one more try.
		if err := tk.stored.Flush(context.Background()); err != nil {
			log.Error("EXITING WITH NEW TOKENS NOT WRITTEN TO THE TOKEN STORE: the grant may be lost; run `coop-proxy login` if the next start says login_required", zap.Error(err))
		}
	}()

	// A token at start, so that /readyz is true as soon as can be; a failure
	// is logged and retried, not fatal.
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if _, err := tk.cache.Token(startCtx); err != nil {
		log.Warn("no token yet; requests get 503 until one is obtained", zap.Error(err))
	}
	cancel()

	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	log.Info("coop-proxy listening", zap.String("listen", addrs[0]), zap.String("admin", addrs[1]),
		zap.String("upstream", cfg.Upstream), zap.String("grant", cfg.Grant), zap.String("client_id", cfg.ClientID),
		zap.String("store", tk.store.Path()))
	if hooks.ready != nil {
		hooks.ready <- addrs
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	// Draining: readiness goes false at once, the proxy's listener closes
	// and its in-flight requests finish within the shutdown timeout; the
	// admin listener stays up meanwhile to say so. A second signal kills at
	// once.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	s.draining.Store(true)
	log.Info("shutting down: finishing in-flight requests", zap.Duration("timeout", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			shutErr = fmt.Errorf("requests still in flight after %s: %w", cfg.ShutdownTimeout, err)
		}
	}
	log.Info("coop-proxy stopped")
	return shutErr
}

// reload reads the settings again (SIGHUP) and applies those that can
// change live: the client secret, the inbound secret and the log level. A
// reload with any problem changes nothing.
func (s *server) reload(read func() (*Config, error), handler *proxy.Handler) {
	next, err := read()
	if err == nil {
		if errs := next.check(needs{client: true, listen: true, store: true}); len(errs) > 0 {
			err = errors.Join(errs...)
		}
	}
	if err != nil {
		s.log.Error("reload failed: keeping the settings in use", zap.Error(err))
		return
	}
	oldSecret, oldInbound := s.secrets[0], s.secrets[1]
	newSecret, _ := next.secret() // checked above
	newInbound, _ := next.inboundSecret()
	if newSecret != oldSecret {
		// Only the secret changes live: the grant keeps its client id, token
		// URL and scopes (its store key) until a restart.
		c := *s.cfg
		c.ClientSecret, c.ClientSecretFile = next.ClientSecret, next.ClientSecretFile
		g, err := newGrant(&c, s.hooks)
		if err != nil {
			s.log.Error("reload failed: keeping the settings in use", zap.Error(err))
			return
		}
		s.tokens.stored.SetGrant(g)
		s.tokens.cache.RetryNow()
	}
	if newInbound != oldInbound {
		handler.SetInboundSecret(newInbound.Reveal())
	}
	if lvl, err := zapcore.ParseLevel(next.LogLevel); err == nil {
		s.level.SetLevel(lvl)
	}
	var restart []string
	for _, name := range changedSettings(s.cfg, next) {
		switch name {
		case "ClientSecret", "ClientSecretFile", "InboundSecret", "InboundSecretFile", "LogLevel":
		default:
			restart = append(restart, settingName(name))
		}
	}
	s.log.Info("settings reloaded", zap.Bool("client_secret_changed", newSecret != oldSecret),
		zap.Bool("inbound_secret_changed", newInbound != oldInbound), zap.String("log_level", next.LogLevel))
	if len(restart) > 0 {
		s.log.Warn("these settings changed and take effect only on restart", zap.Strings("settings", restart))
	}
	s.cfg, s.secrets = next, [2]redact.Secret{newSecret, newInbound}
}

// secretWatchInterval is how often the secret files are looked at.
const secretWatchInterval = 5 * time.Second

// fileState is what tells that a file changed: its size and time.
type fileState struct {
	size    int64
	modTime time.Time
}

// secretFiles returns the state of the client and inbound secret files.
func (s *server) secretFiles() [2]fileState {
	var st [2]fileState
	for i, path := range []string{s.cfg.ClientSecretFile, s.cfg.InboundSecretFile} {
		if info, err := os.Stat(path); path != "" && err == nil {
			st[i] = fileState{info.Size(), info.ModTime()}
		}
	}
	return st
}

// changedSettings names the Config fields that differ.
func changedSettings(a, b *Config) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var names []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			names = append(names, va.Type().Field(i).Name)
		}
	}
	return names
}

func (s *server) expiresIn() float64 {
	t := s.tokens.cache.Current()
	if t == nil {
		return -1
	}
	return time.Until(t.Expiry).Seconds()
}

// readyz is ready when a valid token is held, every token in use is on disk,
// and the proxy is not draining.
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	reason := ""
	t := s.tokens.cache.Current()
	switch {
	case s.draining.Load():
		reason = "shutting down"
	case t == nil || (!t.Expiry.IsZero() && time.Now().After(t.Expiry)):
		reason = "no valid token"
		if e := s.tokens.cache.LastError(); e != nil {
			reason += ": " + e.Error()
		}
	case !s.tokens.stored.Durable():
		reason = "new tokens are not yet written to the token store"
	}
	if reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
		return
	}
	ready := map[string]any{"status": "ready"}
	if !t.Expiry.IsZero() {
		ready["token_expires_in_seconds"] = int(time.Until(t.Expiry).Seconds())
	}
	writeJSON(w, http.StatusOK, ready)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
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

func isLoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
