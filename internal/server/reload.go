package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/signal"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/tokenstore/redisstore"
)

// secretWatchInterval is how often the secret files are looked at.
const secretWatchInterval = 5 * time.Second

// watchReloads reloads on SIGHUP and when a secret or key file or the
// configuration file has changed from how they were seen and stayed so for
// one look (Kubernetes updates a mounted Secret or ConfigMap in place, and
// nothing in a pod can send SIGHUP; Windows has no SIGHUP at all, so there
// the files' watcher is the only way), until ctx ends.
func (srv *Server) watchReloads(ctx context.Context, seen []fileState) {
	hup := make(chan os.Signal, 1)
	notifyReload(hup)
	defer signal.Stop(hup)
	every := srv.opts.WatchEvery
	if every == 0 {
		every = secretWatchInterval
	}
	watch := time.NewTicker(every)
	defer watch.Stop()
	var pending []fileState // the files changed as last looked at, not read yet
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-watch.C:
			now := srv.secretFiles()
			if unchanged(seen, now) {
				pending = nil
				continue
			}
			// A file seen while being written (a script appending its
			// routes one by one, an editor writing in place) can read as
			// valid settings with routes missing: a change is read once the
			// files stay as they were at the last look.
			if !unchanged(pending, now) {
				pending = now
				srv.log.Debug("a secret file changed (or the configuration file): reloading once it stays unchanged")
				continue
			}
			srv.log.Info("a secret file changed (or the configuration file): reloading")
		}
		// The files' state is taken before they are read: a file rewritten
		// while being read (truncated, then written) differs from it at the
		// next look, and is read again then.
		pending = nil
		seen = srv.secretFiles()
		srv.reread()
	}
}

// reread loads the settings again and applies them; a load with any
// problem (a secret file unreadable or empty, as it is for a moment while
// it is rewritten in place) changes nothing.
func (srv *Server) reread() {
	next, err := srv.opts.Reread()
	if err == nil {
		err = CheckSharedStacks(next.AllRoutes()) // what would stop the next start
	}
	if err != nil {
		srv.log.Error("reload failed: keeping the settings in use", zap.Error(err))
		return
	}
	srv.Reload(next)
}

// Reload applies the settings that can change live and keeps every other
// one as it is in effect, logging those that differ as taking effect on
// restart. Routes the new settings add are started and routes they remove
// are drained and stopped; for a route in both, what can change live is
// its client's credential (secret, key or certificate) and its inbound
// secret, and for the process the log level. It compares with the
// settings in effect, not with the last ones read, so a change that waits
// for a restart never slips in with a later reload.
func (srv *Server) Reload(next *config.Settings) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.draining.Load() {
		// The drain has listed the listeners and stacks to stop: a route
		// added now would outlive it, and one removed would race its wait.
		srv.log.Warn("reload ignored: shutting down")
		return
	}
	cur := srv.settings.Load()
	applied := *cur
	applied.LogLevel = next.LogLevel
	applied.Routes = nil
	var restart []string
	for _, f := range config.ChangedProcess(&applied, next) {
		restart = append(restart, config.SettingName(f.Name))
	}

	nextAll := next.AllRoutes()
	nextRoutes := map[string]*config.Route{}
	for i := range nextAll {
		nextRoutes[nextAll[i].Name] = &nextAll[i]
	}
	var routes []*route // a new slice: readers range over the old one without mu
	var removed []*route
	for _, rt := range srv.routes {
		nr, ok := nextRoutes[rt.name]
		if !ok {
			// Off its stack now, so that a route added with its store key
			// and settings of its own gets a stack of its own.
			srv.leaveStackLocked(rt)
			removed = append(removed, rt)
			continue
		}
		delete(nextRoutes, rt.name)
		for _, f := range srv.reloadRoute(rt, nr) {
			restart = append(restart, routeSettingName(cur, rt.name, f))
		}
		routes = append(routes, rt)
		applied.Routes = append(applied.Routes, *rt.cfg())
	}
	for _, nr := range nextAll {
		if _, added := nextRoutes[nr.Name]; !added {
			continue
		}
		rt, err := srv.addRouteLocked(&nr, nextAll, applied.MaxHeaderBytes)
		if err != nil {
			srv.log.Error("route added, but it cannot start: keeping the others as they are", zap.String("route", nr.Name), zap.Error(err))
			continue
		}
		srv.log.Info("route added", zap.String("route", nr.Name), zap.String("listen", nr.Listen), zap.String("path_prefix", nr.PathPrefix))
		routes = append(routes, rt)
		applied.Routes = append(applied.Routes, nr)
	}
	// Off their listeners after the additions: a route added at a removed
	// one's listen address (a route renamed) joins its listener rather than
	// failing to listen while it drains.
	for _, rt := range removed {
		srv.log.Info("route removed: draining it", zap.String("route", rt.name))
		srv.leaveFrontLocked(rt)
	}
	srv.routes = routes
	// Route stays the one it was, when it is still there.
	if i := slices.IndexFunc(applied.Routes, func(r config.Route) bool { return r.Name == cur.Route.Name }); i >= 0 {
		applied.Route = applied.Routes[i]
	} else if len(applied.Routes) > 0 {
		applied.Route = applied.Routes[0]
	}
	if applied.Config == "" {
		applied.Routes = nil // the environment's route is Route alone
	}
	if rs, ok := srv.backend.(*redisstore.Store); ok && next.StorePassword != applied.StorePassword {
		rs.SetPassword(next.StorePassword.Reveal())
		applied.StorePassword = next.StorePassword
		srv.log.Info("token store password reloaded", zap.String("file", applied.StorePasswordFile))
	}
	if srv.opts.Level != (zap.AtomicLevel{}) {
		srv.opts.Level.SetLevel(applied.LogLevel.Level)
	}
	srv.settings.Store(&applied)
	srv.log.Info("settings reloaded", zap.Stringer("log_level", applied.LogLevel.Level), zap.Int("routes", len(routes)))
	if len(restart) > 0 {
		srv.log.Warn("these settings changed and take effect only on restart", zap.Strings("settings", restart))
	}
}

// addRouteLocked builds a route a reload adds and, when the server runs,
// starts serving it; peers are the routes of the new settings. Callers
// hold mu.
func (srv *Server) addRouteLocked(r *config.Route, peers []config.Route, maxHeaderBytes int) (*route, error) {
	rt, err := srv.newRoute(r, maxHeaderBytes)
	if err != nil {
		return nil, err
	}
	if srv.run != nil {
		if err := srv.attachLocked(rt, peers, srv.run); err != nil {
			srv.detachLocked(rt)
			return nil, err
		}
	}
	return rt, nil
}

// routeSettingName names a route setting as the user wrote it: its
// environment variable, or its key in the configuration file.
func routeSettingName(s *config.Settings, route string, f config.Field) string {
	if s.Config == "" {
		return config.SettingName(f.Name)
	}
	return "route " + route + ": " + config.FileKey(f)
}

// reloadRoute applies to a route in effect what can change live of its new
// settings next, and returns the settings that differ still (on restart).
func (srv *Server) reloadRoute(rt *route, next *config.Route) []config.Field {
	cur := rt.cfg()
	applied := *cur
	// The client's credential (secret, key or certificate) changes live;
	// a change of auth style waits for a restart, and when the new style
	// takes another kind of credential, that credential waits with it.
	if na, ca := next.AuthStyle, cur.AuthStyle; na.UsesSecret() == ca.UsesSecret() && na.UsesCertificate() == ca.UsesCertificate() {
		applied.ClientSecret, applied.ClientSecretFile = next.ClientSecret, next.ClientSecretFile
		applied.ClientKey, applied.ClientKeyFile = next.ClientKey, next.ClientKeyFile
		applied.ClientCert, applied.ClientCertFile = next.ClientCert, next.ClientCertFile
	}
	// An inbound secret in effect is never switched off by a reload: the
	// listener it guards is the one in effect. Settings without one (the
	// file setting gone) wait for a restart, and are reported so.
	if next.InboundSecret != "" || cur.InboundSecret == "" {
		applied.InboundSecret, applied.InboundSecretFile = next.InboundSecret, next.InboundSecretFile
	}

	secretChanged := applied.ClientSecret != cur.ClientSecret
	// A key's String is its algorithm and public key thumbprint.
	keyChanged := applied.ClientKey.String() != cur.ClientKey.String() || !sameCertificate(applied.ClientCert, cur.ClientCert)
	if secretChanged || keyChanged {
		// The grant keeps its client id, token URL and scopes (its store
		// key): only its credential changes.
		tk := rt.tokens.tokens
		tk.Stored.SetGrant(routeGrant(&applied, tk.Discovery, srv.opts.Now))
		tk.Cache.RetryNow()
	}
	inboundChanged := applied.InboundSecret != cur.InboundSecret
	if inboundChanged {
		rt.handler.SetInboundSecret(applied.InboundSecret.Reveal())
	}
	rt.settings.Store(&applied)
	srv.log.Info("route settings reloaded", zap.String("route", rt.name), zap.Bool("client_secret_changed", secretChanged),
		zap.Bool("client_key_changed", keyChanged), zap.Bool("inbound_secret_changed", inboundChanged))
	changed := config.ChangedRoute(&applied, next)
	// The DPoP key is the stack's, kept until a restart: a key file
	// rewritten in place (its setting unchanged) waits for it too, and is
	// reported so.
	if applied.DPoPKey.String() != next.DPoPKey.String() && !slices.ContainsFunc(changed, func(f config.Field) bool { return f.Name == "DPoPKeyFile" }) {
		if i := slices.IndexFunc(config.Fields(), func(f config.Field) bool { return f.Name == "DPoPKeyFile" }); i >= 0 {
			changed = append(changed, config.Fields()[i])
		}
	}
	return changed
}

// sameCertificate reports whether a and b are the same chain. Their keys
// need no comparing: the load checks that a key is its certificate's.
func sameCertificate(a, b *tls.Certificate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.EqualFunc(a.Certificate, b.Certificate, bytes.Equal)
}

// fileState is what tells that a file changed: its size, time and identity
// (a file put in its place, as Kubernetes swaps a Secret volume's link, or
// `cp -p` keeping the time, is another file).
type fileState struct {
	info os.FileInfo
}

func (a fileState) same(b fileState) bool {
	if a.info == nil || b.info == nil {
		return a.info == b.info
	}
	return a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime()) && os.SameFile(a.info, b.info)
}

// secretFiles returns the state of every route's client secret, client
// key, client certificate and inbound secret files, and of the
// configuration file.
func (srv *Server) secretFiles() []fileState {
	s := srv.settings.Load()
	paths := []string{s.Config, s.StorePasswordFile}
	for _, r := range s.AllRoutes() {
		paths = append(paths, r.ClientSecretFile, r.ClientKeyFile, r.ClientCertFile, r.InboundSecretFile)
	}
	st := make([]fileState, len(paths))
	for i, path := range paths {
		if info, err := os.Stat(path); path != "" && err == nil {
			st[i] = fileState{info}
		}
	}
	return st
}

// unchanged reports whether the files are as they were seen.
func unchanged(seen, now []fileState) bool {
	return slices.EqualFunc(seen, now, fileState.same)
}
