package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// newLogger builds the zap logger the settings ask for, writing to stderr
// through a buffer (one write per second, not one per request). Its level
// can be changed while it runs; the returned func flushes it.
func newLogger(cfg *Config) (*zap.Logger, zap.AtomicLevel, func()) {
	lvl, _ := zapcore.ParseLevel(cfg.LogLevel)
	level := zap.NewAtomicLevelAt(lvl)
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.MillisDurationEncoder
	var enc zapcore.Encoder
	if cfg.LogFormat == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		encCfg.EncodeDuration = zapcore.StringDurationEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.Lock(os.Stderr), Size: 256 << 10, FlushInterval: time.Second}
	log := zap.New(zapcore.NewCore(enc, ws, level), zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return log, level, func() { _ = ws.Stop() }
}

// tokens is the token stack of one configuration: store, persisting layer
// and cache.
type tokens struct {
	store  *tokenstore.Store
	stored *tokensource.Stored
	cache  *tokensource.Cache
	key    tokenstore.Key
	farmer bool // the grant is a farmer's (authorization code), which logout can remove
}

// authStyle maps the auth-style setting to x/oauth2's. COOP does not
// URL-decode Basic credentials (coop-api.md), so "body" is the default.
func authStyle(s string) oauth2.AuthStyle {
	switch s {
	case "basic":
		return oauth2.AuthStyleInHeader
	case "auto":
		return oauth2.AuthStyleAutoDetect
	}
	return oauth2.AuthStyleInParams
}

// oauthConfig is the authorization-code configuration used by login and by
// the refresh of the farmer's grant.
func oauthConfig(cfg *Config) (*oauth2.Config, error) {
	secret, err := cfg.secret()
	if err != nil {
		return nil, err
	}
	scopes := cfg.scopeList()
	if len(scopes) == 0 {
		scopes = allScopes
	}
	return &oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: secret.Reveal(),
		Endpoint:     oauth2.Endpoint{AuthURL: cfg.authorizeURL(), TokenURL: cfg.tokenURL(), AuthStyle: authStyle(cfg.AuthStyle)},
		RedirectURL:  cfg.RedirectURI,
		Scopes:       scopes,
	}, nil
}

// allScopes are COOP's six scopes: what login asks for unless told.
var allScopes = []string{"barn-unlock", "toiletseat-down", "chickens-feed", "eggs-collect", "eggs-count", "profile"}

// tokenHTTPClient talks to the token endpoint.
func tokenHTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second}
}

// openStore opens the token store named by the settings; a corrupt file is
// reported with its path and moved aside.
func openStore(cfg *Config, log *zap.Logger) (*tokenstore.Store, error) {
	path, err := cfg.storePath()
	if err != nil {
		return nil, err
	}
	st, err := tokenstore.Open(path, tokenstore.WithCorruptHandler(func(path, movedTo string, err error) {
		log.Error("token store file is corrupt: moved aside, starting afresh",
			zap.String("path", path), zap.String("moved_to", movedTo), zap.Error(err))
	}))
	if err != nil {
		return nil, fmt.Errorf("token store %s: %w", path, err)
	}
	return st, nil
}

// newTokens builds the token stack for the configured grant.
func newTokens(cfg *Config, log *zap.Logger, hooks serveOptions, onFetch func(error)) (*tokens, error) {
	st, err := openStore(cfg, log)
	if err != nil {
		return nil, err
	}
	grant, err := newGrant(cfg, hooks)
	if err != nil {
		return nil, err
	}
	var store tokensource.Store = st
	if hooks.wrapStore != nil {
		store = hooks.wrapStore(st)
	}
	stored := &tokensource.Stored{Grant: grant, Store: store, Margin: cfg.RefreshMargin, Now: hooks.now, Log: log.Named("tokens")}
	cache := &tokensource.Cache{
		Source:  stored,
		Margin:  cfg.RefreshMargin,
		Backoff: tokensource.Backoff{Min: time.Second, Max: time.Minute},
		Now:     hooks.now,
		OnFetch: onFetch,
	}
	return &tokens{store: st, stored: stored, cache: cache, key: grant.Key(), farmer: cfg.Grant == "authorization_code"}, nil
}

// newGrant builds the configured grant.
func newGrant(cfg *Config, hooks serveOptions) (tokensource.Grant, error) {
	client := tokenHTTPClient()
	if cfg.Grant == "authorization_code" {
		oc, err := oauthConfig(cfg)
		if err != nil {
			return nil, err
		}
		return &tokensource.Refresh{Config: oc, Client: client, Now: hooks.now}, nil
	}
	secret, err := cfg.secret()
	if err != nil {
		return nil, err
	}
	return &tokensource.ClientCredentials{Client: client, Now: hooks.now, Config: &clientcredentials.Config{
		ClientID: cfg.ClientID, ClientSecret: secret.Reveal(), TokenURL: cfg.tokenURL(),
		Scopes: cfg.scopeList(), AuthStyle: authStyle(cfg.AuthStyle),
	}}, nil
}

// maintain renews the token ahead of expiry, writes pending tokens to the
// store, and notices a logout, once a second, until ctx ends.
func (t *tokens) maintain(ctx context.Context, log *zap.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.cache.Prefetch()
		if !t.stored.Durable() {
			if err := t.stored.Flush(ctx); err != nil {
				log.Error("still cannot write tokens to the token store", zap.Error(err))
			}
			continue
		}
		if t.farmer && t.cache.Current() != nil {
			if _, ok, err := t.store.Load(ctx, t.key); err == nil && !ok {
				log.Warn("the farmer's grant was removed from the token store (logout): no longer acting for the farmer")
				t.cache.Forget()
			}
		}
	}
}
