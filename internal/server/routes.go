package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/proxy"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// route is one upstream API: its handler, its metrics and the token stack
// it takes tokens from.
type route struct {
	name     string
	settings atomic.Pointer[config.Route] // in effect; replaced whole by Reload
	tokens   *stack
	handler  *proxy.Handler
	metrics  *proxy.Metrics
	reg      *prometheus.Registry // its series, labelled route="name"
	upstream *http.Transport      // its connections to the upstream, closed when a reload removes it
}

func (rt *route) cfg() *config.Route { return rt.settings.Load() }

// stack is a token stack shared by the routes whose grants have one store
// key: two caches on one key would both refresh it, and with a rotating
// refresh token one of them would lose the grant.
type stack struct {
	key    string
	tokens *Tokens
	users  []*route                         // guarded by Server.mu
	counts atomic.Pointer[[]*proxy.Metrics] // the users' metrics, for token fetches counted outside mu
	stop   func()                           // ends its background work; nil until started
}

// newRoute builds the route's handler and metrics, and finds or builds
// the token stack for its store key.
func (srv *Server) newRoute(r *config.Route, maxHeaderBytes int) (*route, error) {
	upstream, err := url.Parse(r.Upstream)
	if err != nil {
		return nil, err
	}
	rt := &route{name: r.Name, reg: prometheus.NewRegistry()}
	rt.settings.Store(r)
	st, err := srv.stackFor(r)
	if err != nil {
		return nil, err
	}
	rt.tokens = st
	rt.metrics = proxy.NewMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"route": r.Name}, rt.reg),
		func() float64 { return expiresIn(st.tokens) }, st.tokens.Stored.Durable)
	// A whole request takes at most RequestTimeout (the server's deadlines,
	// see openFront), so the upstream's answer is awaited no longer than that either.
	rt.upstream = proxy.NewTransport(min(r.UpstreamTimeout, r.RequestTimeout))
	rt.upstream.MaxConnsPerHost = r.MaxUpstreamConns
	requests := srv.opts.Requests
	if requests == nil {
		// Not the handler's Log below: its route field would come twice
		// (the line names its route itself), or, for the environment's
		// route, where routeLabel wants none.
		requests = proxy.ZapRequestLog(srv.log.Named("proxy"))
	}
	rt.handler = proxy.New(proxy.Options{
		Upstream:       upstream,
		Tokens:         st.tokens.Cache,
		Base:           rt.upstream,
		RetryBodyLimit: r.RetryBodyLimit,
		LoopbackOnly:   config.IsLoopback(r.Listen),
		AdminPaths:     adminPaths,
		MaxHeaderBytes: maxHeaderBytes,
		MaxBodyBytes:   r.MaxBodyBytes,
		RequestTimeout: r.RequestTimeout,
		Log:            srv.log.Named("proxy").With(zap.String("route", r.Name)),
		Requests:       requests,
		Route:          routeLabel(srv.settings.Load(), r.Name),
		Metrics:        rt.metrics,
	})
	rt.handler.SetInboundSecret(r.InboundSecret.Reveal())
	st.users = append(st.users, rt)
	st.publishCounts()
	return rt, nil
}

// routeLabel names a route in its request lines: with a configuration
// file, by its name; without, not at all (a single route's lines are as
// they always were).
func routeLabel(s *config.Settings, name string) string {
	if s.Config == "" {
		return ""
	}
	return name
}

// stackFor returns the stack of the route's store key, building it when
// no route uses that key yet. Callers hold mu, or own srv alone (New).
func (srv *Server) stackFor(r *config.Route) (*stack, error) {
	k := StoreKey(r)
	key := k.String()
	if st, ok := srv.stacks[key]; ok {
		// Compared with a user's settings in effect: a reload may have
		// changed its credential files live.
		if err := sameStack(st.users[0].cfg(), r); err != nil {
			return nil, err
		}
		return st, nil
	}
	var store tokenstore.Backend = srv.backend
	if store == nil {
		file, err := OpenStore(StorePath(srv.settings.Load(), k), srv.log)
		if err != nil {
			return nil, err
		}
		store = file
	}
	st := &stack{key: key}
	log := srv.log.With(zap.String("route", r.Name))
	tokenLog := log.Named("tokens")
	tk, err := newTokens(r, store, log, srv.opts.TokenOptions, func(err error) {
		for _, m := range *st.counts.Load() {
			m.TokenFetched(fetchOutcome(err))
		}
		var te *tokensource.Error
		if errors.As(err, &te) {
			tokenLog.Warn("no token", zap.String("error", string(te.Code)), zap.String("reason", te.Description), zap.Duration("retry_in", te.RetryAfter))
		}
	})
	if err != nil {
		return nil, err
	}
	if srv.storeMetrics != nil {
		tk.Stored.OnOwnFetch = srv.storeMetrics.ownFetch.Inc
	}
	st.tokens = tk
	st.counts.Store(&[]*proxy.Metrics{})
	srv.stacks[key] = st
	return st, nil
}

// stackSettings are the route settings, beside its store key, that a
// token stack is built with.
var stackSettings = []string{"Issuer", "Provider", "TokenURL", "Scopes", "AuthStyle", "ClientSecretFile", "ClientKeyFile",
	"ClientKeyID", "ClientAssertionAudience", "ClientCertFile", "DPoP", "DPoPKeyFile", "RefreshMargin"}

// sameStack refuses a route r that would share the token stack of the
// route first (the same store key) with other stack settings: it would
// silently get first's tokens, credential and DPoP choice, not its own.
func sameStack(first, r *config.Route) error {
	for _, f := range config.ChangedRoute(first, r) {
		if slices.Contains(stackSettings, f.Name) {
			return &config.Problem{Setting: "route " + r.Name + ": " + config.FileKey(f),
				Msg: fmt.Sprintf("differs from the route %s's, whose store key (token endpoint, client id, grant, scopes, parameters) it has: routes with one store key share their tokens, so they must agree on it", first.Name)}
		}
	}
	return nil
}

// CheckSharedStacks checks that routes sharing a store key agree on their
// stack's settings (see sameStack), as serve would at start: for
// check-config, and for a reload.
func CheckSharedStacks(routes []config.Route) error {
	var p config.Problems
	first := map[string]*config.Route{}
	for i := range routes {
		key := StoreKey(&routes[i]).String()
		if f, ok := first[key]; ok {
			p.Add(sameStack(f, &routes[i]))
		} else {
			first[key] = &routes[i]
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

func (st *stack) publishCounts() {
	ms := make([]*proxy.Metrics, len(st.users))
	for i, u := range st.users {
		ms[i] = u.metrics
	}
	st.counts.Store(&ms)
}

// attachLocked starts serving the route: its stack's background work (once
// per stack) and its place on the listener of its listen address (opened
// when it is the first route there; peers are the routes being started
// with it). Callers hold mu.
func (srv *Server) attachLocked(rt *route, peers []config.Route, rs *runState) error {
	r := rt.cfg()
	f, ok := srv.fronts[r.ListenKey()]
	if !ok {
		var err error
		if f, err = srv.openFront(r, peers, rs); err != nil {
			return err
		}
		srv.fronts[r.ListenKey()] = f
	} else if other := f.taken(r.PathPrefix, peers); other != "" {
		return fmt.Errorf("the path prefix %q on %s is the route %s's until a restart (a route's prefix and listen address change on restart only): its requests would go to that route", r.PathPrefix, r.Listen, other)
	}
	f.add(rt)
	if st := rt.tokens; st.stop == nil {
		// Settings a provider cannot serve stop the process at start, as
		// check-config would have said; added by a reload, they stop no
		// other route (srv.run is set once Run has started its routes).
		fatal := rs.fatal
		if srv.run != nil {
			fatal = nil
		}
		srv.startStack(st, rs, fatal)
	}
	return nil
}

// startStack runs the stack's maintenance (and the watch of its issuer's
// metadata) until the run ends or the stack's last route is removed.
func (srv *Server) startStack(st *stack, rs *runState, fatal chan<- error) {
	ctx, stop := context.WithCancel(rs.bg)
	log := srv.log.Named("tokens").With(zap.String("route", st.users[0].name))
	rs.wg.Go(func() { st.tokens.maintain(ctx, log) })
	if st.tokens.Discovery != nil {
		rs.wg.Go(func() { srv.watchProvider(ctx, st, fatal) })
	}
	st.stop = stop
}

// detachLocked stops serving the route (removed by a reload): it leaves its
// listener and its stack. Callers hold mu.
func (srv *Server) detachLocked(rt *route) {
	srv.leaveFrontLocked(rt)
	srv.leaveStackLocked(rt)
}

// leaveFrontLocked takes the route off its listener, which is drained and
// closed in the background (counted by srv.reloads) when it was the last
// route there. Callers hold mu.
func (srv *Server) leaveFrontLocked(rt *route) {
	r := rt.cfg()
	timeout := srv.settings.Load().ShutdownTimeout
	if f := srv.fronts[r.ListenKey()]; f != nil && f.remove(rt) == 0 {
		delete(srv.fronts, r.ListenKey())
		srv.reloads.Go(func() {
			f.drain(timeout, srv.log)
			rt.upstream.CloseIdleConnections()
		})
	} else {
		// Its requests in flight keep their connections; idle ones go now.
		rt.upstream.CloseIdleConnections()
	}
}

// leaveStackLocked takes the route off its token stack, which is stopped
// and flushed in the background (counted by srv.reloads) when it was the
// last user. Callers hold mu.
func (srv *Server) leaveStackLocked(rt *route) {
	st := rt.tokens
	st.users = slices.DeleteFunc(st.users, func(u *route) bool { return u == rt })
	st.publishCounts()
	if len(st.users) == 0 {
		delete(srv.stacks, st.key)
		timeout := srv.settings.Load().ShutdownTimeout
		srv.reloads.Go(func() {
			st.tokens.Cache.CloseAfter(fetchGrace)
			if st.stop != nil {
				st.stop()
			}
			fctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			if err := st.tokens.Stored.Flush(fctx); err != nil {
				srv.log.Error("a removed route's new tokens are not written to the token store: the grant may be lost", zap.String("route", rt.name), zap.Error(err))
			}
		})
	}
}

// front is one listener and the routes reached through it: by path
// prefix, the longest that matches winning; a route without a prefix
// alone on its listener gets every request, as a single route always has.
type front struct {
	listen  string
	ln      net.Listener
	hs      *http.Server
	timeout time.Duration            // the longest RequestTimeout at its opening, which its deadlines allow
	routes  atomic.Pointer[[]*route] // longest prefix first; read by every request without a lock
}

// answerGrace is how long past its RequestTimeout a caller has to take an
// answer: the 504 for the upstream's silence comes first.
const answerGrace = 5 * time.Second

// openFront listens on the address and serves it. Every caller connection
// has deadlines: its request (body included) must arrive within
// RequestTimeout, its answer be taken within RequestTimeout and a little
// more (a 504 for the upstream's silence comes first), and an idle
// keep-alive connection is closed. http.Server's header limit (a plain-text
// 431) is a backstop; the handler answers MaxHeaderBytes with JSON. A
// listener shared by routes takes the longest RequestTimeout among them
// (first and its peers) at its opening: each handler still bounds its own
// requests, and a route added later with a longer one has its requests'
// deadlines extended (allow).
func (srv *Server) openFront(first *config.Route, peers []config.Route, rs *runState) (*front, error) {
	s := srv.settings.Load()
	addr, timeout := first.Listen, first.RequestTimeout
	for _, r := range peers {
		if r.ListenKey() == first.ListenKey() {
			timeout = max(timeout, r.RequestTimeout)
		}
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	limited := newLimitListener(ln, s.MaxConns)
	f := &front{listen: addr, ln: limited, timeout: timeout}
	f.routes.Store(&[]*route{})
	f.hs = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: timeout, WriteTimeout: timeout + answerGrace, IdleTimeout: 120 * time.Second,
		MaxHeaderBytes: 2 * s.MaxHeaderBytes, ErrorLog: zap.NewStdLog(srv.log.Named("http")), ConnState: limited.release}
	go func() { rs.serveError(f.hs.Serve(f.ln)) }()
	return f, nil
}

func (f *front) add(rt *route) {
	rs := append(slices.Clone(*f.routes.Load()), rt)
	// Longest prefix first: the first that matches is the longest.
	slices.SortStableFunc(rs, func(a, b *route) int { return len(b.cfg().PathPrefix) - len(a.cfg().PathPrefix) })
	f.routes.Store(&rs)
}

// taken names the route on the listener that would get the requests of a
// route added with prefix, among those staying (named in peers, the new
// settings): one with that prefix, or without one, or any when prefix is
// "". A route a reload removes takes none: it leaves in the same reload.
func (f *front) taken(prefix string, peers []config.Route) string {
	for _, rt := range *f.routes.Load() {
		p := rt.cfg().PathPrefix
		stays := slices.ContainsFunc(peers, func(r config.Route) bool { return r.Name == rt.name })
		if stays && (p == prefix || p == "" || prefix == "") {
			return rt.name
		}
	}
	return ""
}

// remove takes the route off the listener and returns how many are left.
func (f *front) remove(rt *route) int {
	rs := slices.DeleteFunc(slices.Clone(*f.routes.Load()), func(u *route) bool { return u == rt })
	f.routes.Store(&rs)
	return len(rs)
}

// allow extends the connection's deadlines for a request of a route whose
// RequestTimeout is longer than the listener's deadlines allow (a route a
// reload added to a listener open already): its request and answer would
// be cut off at them.
func (f *front) allow(w http.ResponseWriter, timeout time.Duration) {
	if timeout <= f.timeout {
		return
	}
	rc := http.NewResponseController(w)
	now := time.Now()
	_ = rc.SetReadDeadline(now.Add(timeout))
	_ = rc.SetWriteDeadline(now.Add(timeout + answerGrace))
}

// drain stops accepting and lets the requests in flight finish.
func (f *front) drain(timeout time.Duration, log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := f.hs.Shutdown(ctx); err != nil {
		log.Warn("a removed route's requests were still in flight when its listener closed", zap.String("listen", f.listen), zap.Error(err))
	}
}

// ServeHTTP hands the request to the route whose prefix it is under, the
// prefix removed: /coop/api/me under /coop is forwarded as /api/me.
func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rs := *f.routes.Load()
	for _, rt := range rs {
		prefix := rt.cfg().PathPrefix
		if prefix == "" {
			f.allow(w, rt.cfg().RequestTimeout)
			rt.handler.ServeHTTP(w, r)
			return
		}
		// Matched as sent: an encoded slash (/coop%2Fx) is within a
		// segment, not a boundary, and no other spelling of the prefix
		// (/co%6Fp) is it. The decoded path then starts with it too.
		raw, ok := strings.CutPrefix(r.URL.EscapedPath(), (&url.URL{Path: prefix}).EscapedPath())
		if !ok || raw != "" && raw[0] != '/' {
			continue // /coopers is not under /coop
		}
		f.allow(w, rt.cfg().RequestTimeout)
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = cmp.Or(strings.TrimPrefix(r.URL.Path, prefix), "/")
		u.RawPath = ""
		if r.URL.RawPath != "" {
			u.RawPath = cmp.Or(raw, "/")
		}
		r2.URL = &u
		rt.handler.ServeHTTP(w, r2)
		return
	}
	desc := "no route serves this path"
	var prefixes []string
	for _, rt := range rs {
		if rt.cfg().InboundSecret != "" {
			// the caller may not be one: it learns no route's prefix
			prefixes = nil
			break
		}
		prefixes = append(prefixes, rt.cfg().PathPrefix)
	}
	if len(prefixes) > 0 {
		desc += "; the path prefixes here are " + strings.Join(prefixes, ", ")
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": desc})
}
