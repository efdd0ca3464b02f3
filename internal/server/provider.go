package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/provider"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// newDiscovery returns the Discovery of the route's issuer; nil without one.
func newDiscovery(r *config.Route) *provider.Discovery {
	if r.Issuer == "" {
		return nil
	}
	return provider.NewDiscovery(r.Issuer, nil)
}

// routeGrant builds the route's grant: at the endpoints the settings name,
// or, with an issuer, at those of its metadata, read through disc.
func routeGrant(r *config.Route, disc *provider.Discovery, now func() time.Time) tokensource.Grant {
	if disc == nil {
		ep, _ := r.Endpoints(nil) // no metadata: nothing to check
		return newGrant(r, ep, now)
	}
	return &discoveredGrant{route: r, disc: disc, now: now, key: StoreKey(r)}
}

// discoveredGrant is the route's grant at the endpoints of the issuer's
// metadata. Until the metadata is fetched, each fetch of a token tries to
// fetch it and fails as the token endpoint being unavailable does: callers
// get 503 with Retry-After, and the cache retries with its backoff.
type discoveredGrant struct {
	route *config.Route
	disc  *provider.Discovery
	now   func() time.Time
	key   tokenstore.Key // from the settings: the grant is found without the network

	mu    sync.Mutex        // held across the metadata fetch: Stored fetches one at a time anyway
	inner tokensource.Grant // built once the metadata is read: its client and x/oauth2's auth-style cache are kept
}

// Key implements tokensource.Grant.
func (g *discoveredGrant) Key() tokenstore.Key { return g.key }

// Fetch implements tokensource.Grant.
func (g *discoveredGrant) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	inner, err := g.grant(ctx)
	if err != nil {
		return tokenstore.Record{}, err
	}
	return inner.Fetch(ctx, cur, ok)
}

func (g *discoveredGrant) grant(ctx context.Context) (tokensource.Grant, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.inner != nil {
		return g.inner, nil
	}
	md, err := g.disc.Metadata(ctx)
	if err != nil {
		return nil, &tokensource.Error{Code: tokensource.Unavailable, Err: err,
			Description: fmt.Sprintf("the issuer's metadata could not be read (%v)", err)}
	}
	ep, err := g.route.Endpoints(md)
	if err != nil {
		return nil, &tokensource.Error{Code: tokensource.Unavailable, Err: err, Description: err.Error()}
	}
	g.inner = newGrant(g.route, ep, g.now)
	return g.inner, nil
}

// Endpoints resolves the route's endpoints for a command that needs them
// once (login, status, check-config): with an issuer, its metadata is
// fetched, once, within 30 s.
func Endpoints(ctx context.Context, r *config.Route) (config.Endpoints, error) {
	if r.Issuer == "" {
		return r.Endpoints(nil)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	md, err := provider.Fetch(ctx, provider.NewHTTPClient(), r.Issuer)
	if err != nil {
		return config.Endpoints{}, config.IssuerProblem("cannot read the issuer's metadata: " + err.Error())
	}
	return r.Endpoints(md)
}

// watchProvider fetches the issuer's metadata at start, retrying with
// backoff while it cannot be had (the proxy listens meanwhile, answering
// 503), and checks that the provider offers what the settings ask for.
// What cannot work (the metadata of another issuer, no token endpoint, an
// auth style the provider refuses) is sent on fatal: the process stops
// with that one line rather than serve 503s forever.
//
// A route a reload adds has no fatal channel (nil): the process goes on
// serving the other routes, and the route answers 503 naming the problem.
func (srv *Server) watchProvider(ctx context.Context, st *stack, fatal chan<- error) {
	disc := st.tokens.Discovery
	r := st.tokens.route
	md, err := disc.Wait(ctx, func(err error, wait time.Duration) {
		srv.log.Warn("cannot read the issuer's metadata: retrying", zap.String("issuer", disc.Issuer()), zap.Error(err), zap.Duration("retry_in", wait))
	})
	if errors.Is(err, context.Canceled) {
		return
	}
	if err == nil {
		var ep config.Endpoints
		if ep, err = r.Endpoints(md); err == nil {
			srv.log.Info("issuer's metadata read", zap.String("route", r.Name), zap.String("issuer", md.Issuer), zap.String("token_endpoint", ep.TokenURL),
				zap.String("authorization_endpoint", ep.AuthorizeURL))
			return
		}
	} else {
		err = config.IssuerProblem(err.Error())
	}
	err = srv.settings.Load().InRoute(r.Name, err)
	if fatal == nil {
		srv.log.Error("the provider cannot serve the route's settings: the route answers 503 until they are fixed (reload) and the process restarted", zap.String("route", r.Name), zap.Error(err))
		return
	}
	select {
	case fatal <- err:
	default: // another provider has already stopped the process
	}
}
