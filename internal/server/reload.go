package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// secretWatchInterval is how often the secret files are looked at.
const secretWatchInterval = 5 * time.Second

// watchReloads reloads on SIGHUP and when a secret or key file changes (Kubernetes
// updates a mounted Secret in place, and nothing in a pod can send SIGHUP),
// until ctx ends.
func (srv *Server) watchReloads(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	every := srv.opts.WatchEvery
	if every == 0 {
		every = secretWatchInterval
	}
	watch := time.NewTicker(every)
	defer watch.Stop()
	seen := srv.secretFiles()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-watch.C:
			if unchanged(seen, srv.secretFiles()) {
				continue
			}
			srv.log.Info("a secret file changed: reloading")
		}
		// The files' state is taken before they are read: a file rewritten
		// while being read (truncated, then written) differs from it at the
		// next look, and is read again then.
		seen = srv.secretFiles()
		srv.reread()
	}
}

// reread loads the settings again and applies them; a load with any
// problem (a secret file unreadable or empty, as it is for a moment while
// it is rewritten in place) changes nothing.
func (srv *Server) reread() {
	next, err := srv.opts.Reread()
	if err != nil {
		srv.log.Error("reload failed: keeping the settings in use", zap.Error(err))
		return
	}
	srv.Reload(next)
}

// Reload applies the settings that can change live (the client secret, the
// inbound secret, the log level) and keeps every other one as it is in
// effect, logging those that differ as taking effect on restart. It
// compares with the settings in effect, not with the last ones read, so a
// change that waits for a restart never slips in with a later reload.
func (srv *Server) Reload(next *config.Settings) {
	cur := srv.settings.Load()
	applied := *cur
	// The client's credential (secret, key or certificate) changes live;
	// a change of auth style waits for a restart, and when the new style
	// takes another kind of credential, that credential waits with it.
	if na, ca := next.Route.AuthStyle, cur.Route.AuthStyle; na.UsesSecret() == ca.UsesSecret() && na.UsesCertificate() == ca.UsesCertificate() {
		applied.Route.ClientSecret, applied.Route.ClientSecretFile = next.Route.ClientSecret, next.Route.ClientSecretFile
		applied.Route.ClientKey, applied.Route.ClientKeyFile = next.Route.ClientKey, next.Route.ClientKeyFile
		applied.Route.ClientCert, applied.Route.ClientCertFile = next.Route.ClientCert, next.Route.ClientCertFile
	}
	// An inbound secret in effect is never switched off by a reload: the
	// listener it guards is the one in effect. Settings without one (the
	// file setting gone) wait for a restart, and are reported so below.
	if next.Route.InboundSecret != "" || cur.Route.InboundSecret == "" {
		applied.Route.InboundSecret, applied.Route.InboundSecretFile = next.Route.InboundSecret, next.Route.InboundSecretFile
	}
	applied.LogLevel = next.LogLevel

	secretChanged := applied.Route.ClientSecret != cur.Route.ClientSecret
	// A key's String is its algorithm and public key thumbprint.
	keyChanged := applied.Route.ClientKey.String() != cur.Route.ClientKey.String() ||
		!sameCertificate(applied.Route.ClientCert, cur.Route.ClientCert)
	if secretChanged || keyChanged {
		// The grant keeps its client id, token URL and scopes (its store
		// key): only its credential changes.
		srv.tokens.Stored.SetGrant(routeGrant(&applied.Route, srv.tokens.Discovery, srv.opts.Now))
		srv.tokens.Cache.RetryNow()
	}
	inboundChanged := applied.Route.InboundSecret != cur.Route.InboundSecret
	if inboundChanged {
		srv.handler.SetInboundSecret(applied.Route.InboundSecret.Reveal())
	}
	if srv.opts.Level != (zap.AtomicLevel{}) {
		srv.opts.Level.SetLevel(applied.LogLevel.Level)
	}
	srv.settings.Store(&applied)

	srv.log.Info("settings reloaded", zap.Bool("client_secret_changed", secretChanged), zap.Bool("client_key_changed", keyChanged),
		zap.Bool("inbound_secret_changed", inboundChanged), zap.Stringer("log_level", applied.LogLevel.Level))
	var restart []string
	for _, f := range config.Changed(&applied, next) {
		restart = append(restart, config.SettingName(f.Name))
	}
	if len(restart) > 0 {
		srv.log.Warn("these settings changed and take effect only on restart", zap.Strings("settings", restart))
	}
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

// secretFiles returns the state of the client secret, client key, client
// certificate and inbound secret files.
func (srv *Server) secretFiles() [4]fileState {
	r := &srv.settings.Load().Route
	var st [4]fileState
	for i, path := range []string{r.ClientSecretFile, r.ClientKeyFile, r.ClientCertFile, r.InboundSecretFile} {
		if info, err := os.Stat(path); path != "" && err == nil {
			st[i] = fileState{info}
		}
	}
	return st
}

// unchanged reports whether the secret files are as they were seen.
func unchanged(seen, now [4]fileState) bool {
	for i := range seen {
		if !seen[i].same(now[i]) {
			return false
		}
	}
	return true
}
