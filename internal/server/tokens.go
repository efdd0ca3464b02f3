package server

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/provider"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Tokens is the token stack of one route: store, persisting layer and cache.
type Tokens struct {
	Store  tokenstore.Backend
	Stored *tokensource.Stored
	Cache  *tokensource.Cache
	// Discovery holds the issuer's metadata; nil without an issuer.
	Discovery *provider.Discovery
	key       tokenstore.Key
	route     *config.Route // the settings it was built with (the first of the routes sharing it)
	farmer    bool          // the grant is a farmer's (authorization code), which logout can remove
}

// tokenWait is the longest a caller waits for a token when none is held
// (at start, or after the last one expired): then it gets 503 with
// Retry-After while the fetch goes on.
const tokenWait = 10 * time.Second

// TokenOptions let tests steer the token stack.
type TokenOptions struct {
	Now       func() time.Time                          // the cache's clock; nil: time.Now
	WrapStore func(tokensource.Store) tokensource.Store // lets a test make the store fail
}

// NewTokens builds the token stack for the route r of the settings s over
// the store they name (OpenBackend); the caller closes Tokens.Store.
func NewTokens(ctx context.Context, s *config.Settings, r *config.Route, log *zap.Logger, o TokenOptions, onFetch func(error)) (*Tokens, error) {
	st, err := OpenBackend(ctx, s, StoreKey(r), log, nil)
	if err != nil {
		return nil, err
	}
	return newTokens(r, st, log, o, onFetch)
}

// newTokens builds the token stack for the route's grant over the store st
// (one per process, shared by the routes' stacks).
func newTokens(r *config.Route, st tokenstore.Backend, log *zap.Logger, o TokenOptions, onFetch func(error)) (*Tokens, error) {
	disc := newDiscovery(r)
	grant := routeGrant(r, disc, o.Now)
	var store tokensource.Store = st
	if o.WrapStore != nil {
		store = o.WrapStore(st)
	}
	keys := DPoPKeys(r)
	stored := &tokensource.Stored{Grant: grant, Store: store, Margin: r.RefreshMargin, Now: o.Now, Log: log.Named("tokens"), DPoP: keys}
	cache := &tokensource.Cache{
		DPoP:    keys,
		Source:  stored,
		Margin:  r.RefreshMargin,
		Backoff: tokensource.Backoff{Min: time.Second, Max: time.Minute},
		MaxWait: min(tokenWait, r.RequestTimeout),
		// the wait for the store's lock (at most half, see Stored), then
		// the token request
		FetchTimeout: 2 * tokenTimeout(r),
		Now:          o.Now,
		OnFetch:      onFetch,
	}
	return &Tokens{Store: st, Stored: stored, Cache: cache, Discovery: disc, key: grant.Key(), route: r, farmer: r.Grant == config.AuthorizationCode}, nil
}

// OpenStore opens the token store file; a corrupt file is logged with its
// path and moved aside, and tokens recovered from a write that a crash cut
// short are logged. A store that other users own or can write is refused
// with one line naming the path and the fix.
func OpenStore(path string, log *zap.Logger) (*tokenstore.Store, error) {
	st, err := tokenstore.Open(path,
		tokenstore.WithCorruptHandler(func(path, movedTo string, err error) {
			log.Error("token store file is corrupt: moved aside, starting afresh",
				zap.String("path", path), zap.String("moved_to", movedTo), zap.Error(err))
		}),
		tokenstore.WithRecoverHandler(func(path, from string) {
			log.Warn("token store: recovered the tokens of a write cut short by a crash", zap.String("path", path), zap.String("from", from))
		}))
	if _, ok := errors.AsType[*tokenstore.UnsafeError](err); ok {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", path, err)
	}
	return st, nil
}

// StorePath is the token store file holding the grant under key k: STORE
// itself without a configuration file; with one, a file per store key
// beside it (tokens-1a2b3c4d5e6f7a8b.json). A refresh holds its file's lock
// while the token endpoint answers, so with one file a route whose token
// endpoint hangs would hold up every other route's refresh; status, token,
// login and logout find the file the same way.
func StorePath(s *config.Settings, k tokenstore.Key) string {
	if s.Config == "" {
		return s.Store
	}
	sum := sha256.Sum256([]byte(k.String()))
	ext := filepath.Ext(s.Store)
	return fmt.Sprintf("%s-%x%s", strings.TrimSuffix(s.Store, ext), sum[:8], ext)
}

// StoreKey is the key the route's grant is stored under; it needs no
// network (see config.Route.KeyURL).
func StoreKey(r *config.Route) tokenstore.Key {
	k := tokensource.ClientCredentialsKey(r.KeyURL(), r.ClientID, r.Scopes)
	if r.Grant == config.AuthorizationCode {
		k = tokensource.AuthorizationCodeKey(r.KeyURL(), r.ClientID)
	}
	k.Params = tokensource.ParamsKey(r.TokenRequestParams())
	return k
}

// AllScopes are COOP's six scopes: what login asks for unless told.
var AllScopes = []string{"barn-unlock", "toiletseat-down", "chickens-feed", "eggs-collect", "eggs-count", "profile"}

// OAuthConfig is the authorization-code configuration used by login and by
// the refresh of the farmer's grant, at the endpoints ep.
func OAuthConfig(r *config.Route, ep config.Endpoints) *oauth2.Config {
	scopes := []string(r.Scopes)
	if len(scopes) == 0 && r.Issuer == "" && r.Provider == "" {
		scopes = AllScopes // COOP's; another provider has its own default
	}
	return &oauth2.Config{
		ClientID:     r.ClientID,
		ClientSecret: r.ClientSecret.Reveal(),
		Endpoint:     oauth2.Endpoint{AuthURL: ep.AuthorizeURL, TokenURL: ep.TokenURL, AuthStyle: authStyle(r.AuthStyle)},
		RedirectURL:  r.RedirectURI,
		Scopes:       scopes,
	}
}

// authStyle maps the auth-style setting to x/oauth2's. COOP does not
// URL-decode Basic credentials (coop-api.md), so "body" is the default.
// private_key_jwt and the TLS styles send the client id in the form too,
// with no secret (the route has none): TokenHTTPClient adds the assertion
// or presents the certificate.
func authStyle(s config.AuthStyle) oauth2.AuthStyle {
	switch s {
	case config.AuthBasic, config.AuthClientSecretBasic:
		// x/oauth2 form-encodes id and secret before Basic, as RFC 6749
		// §2.3.1 requires.
		return oauth2.AuthStyleInHeader
	case config.AuthAuto:
		return oauth2.AuthStyleAutoDetect
	}
	return oauth2.AuthStyleInParams
}

// TokenHTTPClient talks to the token endpoint, authenticating the client as
// the route says, and adding a DPoP proof to the token requests made with a
// key in their context (dpop.WithKey); it never follows a redirect, which
// would re-send the client's credentials or the refresh token to wherever
// the Location names.
func TokenHTTPClient(r *config.Route) *http.Client {
	return tokensource.NewAuthHTTPClient(tokenTimeout(r), withDPoP(clientAuth(r)))
}

// tokenTimeout bounds a request to the route's token endpoint: the
// setting, or its default for a Route built by hand.
func tokenTimeout(r *config.Route) time.Duration {
	return cmp.Or(r.TokenTimeout, 30*time.Second)
}

// DPoPKeys is the route's DPoP key policy: nil with DPoP off.
func DPoPKeys(r *config.Route) *dpop.Keys {
	if !r.DPoP {
		return nil
	}
	if r.DPoPKey != nil {
		return &dpop.Keys{File: dpop.NewKey(r.DPoPKey)}
	}
	return &dpop.Keys{}
}

// withDPoP puts dpop.TokenTransport above the client authentication, so
// that a request it sends again (with the nonce the server asked for)
// carries a fresh client assertion too.
func withDPoP(auth func(*http.Transport) http.RoundTripper) func(*http.Transport) http.RoundTripper {
	return func(tr *http.Transport) http.RoundTripper {
		var base http.RoundTripper = tr
		if auth != nil {
			base = auth(tr)
		}
		return &dpop.TokenTransport{Base: base}
	}
}

// clientAuth is what the route's auth style adds to the transport to the
// token endpoint: with private_key_jwt, a fresh client assertion on every
// request (RFC 7523 §2.2); with the TLS styles, the client certificate on
// every connection (RFC 8705 §2). The secret styles are x/oauth2's
// (authStyle).
func clientAuth(r *config.Route) func(*http.Transport) http.RoundTripper {
	switch {
	case r.AuthStyle == config.AuthPrivateKeyJWT:
		return func(tr *http.Transport) http.RoundTripper {
			return &clientauth.AssertionTransport{Base: tr, Key: r.ClientKey, KeyID: r.ClientKeyID, ClientID: r.ClientID, Audience: r.ClientAssertionAudience}
		}
	case r.AuthStyle.UsesCertificate():
		return func(tr *http.Transport) http.RoundTripper {
			clientauth.PresentCertificate(tr, r.ClientCert)
			return tr
		}
	}
	return nil
}

// newGrant builds the route's grant at the endpoints ep.
func newGrant(r *config.Route, ep config.Endpoints, now func() time.Time) tokensource.Grant {
	client := TokenHTTPClient(r)
	params := r.TokenRequestParams()
	if r.Grant == config.AuthorizationCode {
		return &tokensource.Refresh{Config: OAuthConfig(r, ep), Client: client, Now: now, Params: params}
	}
	return &tokensource.ClientCredentials{Client: client, Now: now, Params: params, Config: &clientcredentials.Config{
		ClientID: r.ClientID, ClientSecret: r.ClientSecret.Reveal(), TokenURL: ep.TokenURL,
		Scopes: r.Scopes, AuthStyle: authStyle(r.AuthStyle),
	}}
}

// maintain renews the token ahead of expiry, writes pending tokens to the
// store, and learns of changes other processes or replicas made to the
// grant: at once when the store signals them (Backend.Changes), and by a
// look once a second otherwise, until ctx ends.
func (t *Tokens) maintain(ctx context.Context, log *zap.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	changes := t.Store.Changes(ctx)
	var seen time.Time // UpdatedAt of the grant as last looked at
	for {
		t.Cache.Prefetch()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case _, open := <-changes:
			if !open {
				changes = nil // ctx ended; the next select says so
			}
		}
		if !t.Stored.Durable() {
			// bounded: another process may hold the store's lock a long time
			fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := t.Stored.Flush(fctx)
			cancel()
			if err != nil {
				log.Error("still cannot write tokens to the token store", zap.Error(err))
			}
			continue
		}
		seen = t.look(ctx, log, seen)
	}
}

// look reads the grant and acts on what another process or replica did to
// it: a logout (absent) → stop acting for the farmer; a token fetched
// elsewhere → adopt it without a request to the token endpoint; a grant
// written while the last fetch found none (a login) → fetch now rather
// than at the next recheck. It returns the grant's UpdatedAt, so that a
// grant looked at already is not acted on again.
func (t *Tokens) look(ctx context.Context, log *zap.Logger, seen time.Time) time.Time {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rec, ok, err := t.Store.Load(lctx, t.key)
	if err != nil {
		return seen
	}
	held := t.Cache.Current()
	switch {
	case !ok:
		// A shared store that lost its data (Redis restarted without it)
		// writes back the grant it last saw before it answers a Load
		// (redisstore), and so does Flush with pending tokens: a grant
		// absent here was removed.
		if t.farmer && held != nil {
			log.Warn("the farmer's grant was removed from the token store (logout): no longer acting for the farmer")
			t.Cache.Forget()
		}
		return time.Time{}
	case rec.UpdatedAt.Equal(seen):
	case held == nil:
		// A grant written while the last fetch found none, or a dead one
		// (a login elsewhere): fetch now. Other failures keep their backoff.
		if e := t.Cache.LastError(); e != nil && e.Code == tokensource.LoginRequired {
			t.Cache.RetryNow()
			t.Cache.Prefetch()
		}
	case held.Access() != rec.AccessToken && t.Cache.Adopt(rec):
		log.Info("adopted the token another process or replica fetched", zap.String("token", redact.Fingerprint(rec.AccessToken)))
	}
	return rec.UpdatedAt
}
