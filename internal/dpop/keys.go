package dpop

import (
	"context"
	"errors"
	"strings"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Keys says which key a grant's tokens are bound to. A nil *Keys is DPoP
// off: bearer tokens only, and a token bound to a key is never used.
//
// A token bound to a key is only ever sent with that key (RFC 9449 §7.1:
// the server checks the proof's key against the token's cnf.jkt): the
// store record names the key (DPoPJKT) and, for a generated key, holds it.
type Keys struct {
	// File is the key read from DPOP_KEY_FILE; nil: a key is generated for
	// each new grant and kept with it in the token store.
	File *Key
}

// errBound, errUnbound, errOtherKey and errNoKey say why a stored record cannot be
// used as it is; its tokens are fetched again (a refresh token is tried
// with the key in effect, and may be refused: then login is required).
var (
	errBound    = errors.New("the stored tokens are DPoP-bound and DPoP is off")
	errUnbound  = errors.New("the stored tokens are bearer tokens and DPoP is on")
	errOtherKey = errors.New("the stored tokens are bound to another DPoP key than the key file's")
	errNoKey    = errors.New("the stored tokens' DPoP key is missing or unreadable")
)

// Of returns the key rec's tokens are bound to: nil for bearer tokens
// with DPoP off. It fails when the tokens cannot be sent as the settings
// ask (see Keys).
func (k *Keys) Of(rec tokenstore.Record) (*Key, error) {
	bound := rec.DPoPJKT != "" || strings.EqualFold(rec.TokenType, "DPoP")
	switch {
	case k == nil && bound:
		return nil, errBound
	case k == nil:
		return nil, nil
	case !bound:
		return nil, errUnbound
	case k.File != nil && rec.DPoPJKT != k.File.JKT():
		return nil, errOtherKey
	case k.File != nil:
		return k.File, nil
	}
	key, err := clientauth.ParsePKCS8(rec.DPoPKey)
	if err != nil || key.Thumbprint() != rec.DPoPJKT {
		// an older binary's rewrite drops the key (see tokenstore's format)
		return nil, errNoKey
	}
	return NewKey(key), nil
}

// For returns the key for a token request that replaces cur (ok: the store
// held it): the key file's; else cur's own key, so that a grant keeps its
// key for its life (RFC 9449 §5: a public client's refresh token is bound
// to it); else a new one. nil with DPoP off.
func (k *Keys) For(cur tokenstore.Record, ok bool) *Key {
	switch {
	case k == nil:
		return nil
	case k.File != nil:
		return k.File
	}
	if ok {
		if key, err := k.Of(cur); err == nil {
			return key
		}
	}
	return Generate()
}

// Bind records in rec that its tokens are bound to key (nil: bearer
// tokens), and keeps a generated key with them.
func (k *Keys) Bind(rec *tokenstore.Record, key *Key) {
	rec.DPoPJKT, rec.DPoPKey = "", nil
	if key == nil {
		return
	}
	rec.DPoPJKT = key.JKT()
	if k.File == nil {
		der, err := key.key.MarshalPKCS8()
		if err != nil {
			panic(err) // the keys clientauth accepts all marshal
		}
		rec.DPoPKey = der
	}
}

type keyContext struct{}

// WithKey returns ctx carrying key: a token request made with ctx carries
// a proof of it (TokenTransport), and its answer must be a DPoP token.
func WithKey(ctx context.Context, key *Key) context.Context {
	if key == nil {
		return ctx
	}
	return context.WithValue(ctx, keyContext{}, key)
}

// KeyFrom returns the key ctx carries, or nil.
func KeyFrom(ctx context.Context) *Key {
	key, _ := ctx.Value(keyContext{}).(*Key)
	return key
}
