package tokensource

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Grant obtains a new token from the authorization server. cur is what the
// store holds for the grant's key (ok is false when it holds nothing).
type Grant interface {
	Key() tokenstore.Key
	Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error)
}

// ClientCredentials is the client-credentials grant (RFC 6749 §4.4): the
// application asks for a token with its own id and secret. COOP's token acts
// for the application's owner. No refresh token is issued (§4.4.3).
type ClientCredentials struct {
	Config *clientcredentials.Config
	Client *http.Client     // nil: http.DefaultClient
	Now    func() time.Time // the clock expiry is counted from; nil: time.Now
}

// Key implements Grant.
func (g *ClientCredentials) Key() tokenstore.Key {
	return ClientCredentialsKey(g.Config.TokenURL, g.Config.ClientID, g.Config.Scopes)
}

// ClientCredentialsKey is the store key of an application's own token: one
// per application, token endpoint and requested scopes.
func ClientCredentialsKey(tokenURL, clientID string, scopes []string) tokenstore.Key {
	return tokenstore.Key{TokenURL: tokenURL, ClientID: clientID, GrantType: "client_credentials", Scopes: scopes}
}

// Fetch implements Grant.
func (g *ClientCredentials) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	tok, err := g.Config.Token(withClient(ctx, g.Client))
	if err != nil {
		return tokenstore.Record{}, classify(err, g.Config.ClientID)
	}
	return RecordFromToken(tok, g.Config.Scopes, now(g.Now)), nil
}

// Refresh renews a farmer's authorization-code grant with its refresh token
// (RFC 6749 §6). COOP rotates refresh tokens: the answer carries a new one
// and the old one is dead, so the caller must store the result before use.
type Refresh struct {
	Config *oauth2.Config
	Client *http.Client     // nil: http.DefaultClient
	Now    func() time.Time // the clock expiry is counted from; nil: time.Now
}

// Key implements Grant.
func (g *Refresh) Key() tokenstore.Key {
	return AuthorizationCodeKey(g.Config.Endpoint.TokenURL, g.Config.ClientID)
}

// AuthorizationCodeKey is the store key of a farmer's grant: one grant
// per application and token endpoint, whatever scopes it has; `login`
// writes under it and `serve` reads it.
func AuthorizationCodeKey(tokenURL, clientID string) tokenstore.Key {
	return tokenstore.Key{TokenURL: tokenURL, ClientID: clientID, GrantType: "authorization_code"}
}

// Fetch implements Grant.
func (g *Refresh) Fetch(ctx context.Context, cur tokenstore.Record, ok bool) (tokenstore.Record, error) {
	if !ok || cur.RefreshToken == "" {
		return tokenstore.Record{}, &Error{Code: LoginRequired, Description: "no farmer has logged in for this application: run `coop-proxy login`"}
	}
	// x/oauth2 refreshes a token that has a refresh token and no access token.
	tok, err := g.Config.TokenSource(withClient(ctx, g.Client), &oauth2.Token{RefreshToken: cur.RefreshToken}).Token()
	if err != nil {
		return tokenstore.Record{}, classify(err, g.Config.ClientID)
	}
	// §6: the server MAY issue a new refresh token; x/oauth2 keeps the old
	// one when it does not.
	return RecordFromToken(tok, cur.Scopes, now(g.Now)), nil
}

// RecordFromToken turns a token response into a store record; fallback is
// used when the response carries no "scope" (RFC 6749 §5.1: the scope is
// then the one requested). The expiry is counted from now (expires_in is
// relative to the answer), so that an injected clock governs it too.
func RecordFromToken(tok *oauth2.Token, fallback []string, now time.Time) tokenstore.Record {
	scopes := fallback
	if s, ok := tok.Extra("scope").(string); ok && s != "" {
		scopes = strings.Fields(s)
	}
	expiry := tok.Expiry
	if secs := expiresIn(tok); secs > 0 {
		expiry = now.Add(time.Duration(secs) * time.Second)
	}
	return tokenstore.Record{
		AccessToken:  tok.AccessToken,
		TokenType:    tok.TokenType,
		RefreshToken: tok.RefreshToken,
		Expiry:       expiry,
		Scopes:       scopes,
	}
}

// expiresIn reads expires_in (RFC 6749 §5.1) from the raw answer, as a
// JSON number or, as some servers send it, a string.
func expiresIn(tok *oauth2.Token) int64 {
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		return int64(v)
	case string:
		n, _ := strconv.ParseInt(v, 10, 64)
		return n
	}
	return tok.ExpiresIn
}

func withClient(ctx context.Context, c *http.Client) context.Context {
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c)
}

func now(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}
