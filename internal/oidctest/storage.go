package oidctest

// The storage zitadel's op needs, in memory. It follows zitadel's example
// storage (example/server/storage), cut down to what the harness uses and
// with the example's fixed keys and secrets removed: every key and secret
// here is made fresh for the provider it belongs to.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

var (
	_ op.Storage                        = (*storage)(nil)
	_ op.ClientCredentialsStorage       = (*storage)(nil)
	_ op.DeviceAuthorizationStorage     = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*storage)(nil)
)

var errUnknownClient = errors.New("unknown client or wrong credentials") // never says which

type storage struct {
	key      *rsa.PrivateKey
	keyID    string
	audience string // every access token's aud, beside the client: the API's URL

	mu         sync.Mutex
	clients    map[string]*opClient
	authReqs   map[string]*authRequest
	codes      map[string]string // authorization code -> auth request id
	tokens     map[string]*token // access token id (the JWT's jti) -> token
	refresh    map[string]*token // refresh token -> the grant it carries
	devices    map[string]*op.DeviceAuthorizationState
	userCodes  map[string]string    // user code -> device code
	lastPoll   map[string]time.Time // device code -> its last token request
	interval   time.Duration        // the device grant's poll interval
	seenJTI    map[string]time.Time // private_key_jwt assertion jti -> its exp
	accessTTL  time.Duration
	refreshTTL time.Duration
	user       string // the subject a login or device approval is for
	deny       bool   // logins and device approvals are refused
}

func newStorage() (*storage, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &storage{
		key: key, keyID: randomString(8),
		clients: map[string]*opClient{}, authReqs: map[string]*authRequest{}, codes: map[string]string{},
		tokens: map[string]*token{}, refresh: map[string]*token{},
		devices: map[string]*op.DeviceAuthorizationState{}, userCodes: map[string]string{}, lastPoll: map[string]time.Time{}, seenJTI: map[string]time.Time{},
		accessTTL: 5 * time.Minute, refreshTTL: time.Hour, user: "alice",
	}, nil
}

// token is an access token, or the grant a refresh token carries.
type token struct {
	ID       string
	ClientID string
	Subject  string
	Audience []string
	Scopes   []string
	AuthTime time.Time
	Expiry   time.Time
}

// The refresh token's grant, as zitadel's op.RefreshTokenRequest.
func (t *token) GetAMR() []string            { return []string{"pwd"} }
func (t *token) GetAudience() []string       { return t.Audience }
func (t *token) GetAuthTime() time.Time      { return t.AuthTime }
func (t *token) GetClientID() string         { return t.ClientID }
func (t *token) GetScopes() []string         { return t.Scopes }
func (t *token) GetSubject() string          { return t.Subject }
func (t *token) SetCurrentScopes(s []string) { t.Scopes = s }

// ccRequest is a client credentials grant: the client acts for itself.
type ccRequest struct {
	clientID string
	scopes   []string
	audience []string
}

func (r *ccRequest) GetSubject() string    { return r.clientID }
func (r *ccRequest) GetAudience() []string { return r.audience }
func (r *ccRequest) GetScopes() []string   { return r.scopes }

// grantOf is who a token request is from and for.
func grantOf(req op.TokenRequest) (clientID string, authTime time.Time) {
	switch r := req.(type) {
	case *authRequest:
		return r.ClientID, r.authTime
	case *token:
		return r.ClientID, r.AuthTime
	case *op.DeviceAuthorizationState:
		return r.ClientID, r.AuthTime
	case *ccRequest:
		return r.clientID, time.Time{}
	}
	return "", time.Time{}
}

func (s *storage) client(id string) (*opClient, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	return c, ok
}

// GetClientByClientID answers a plain error for an unknown client: zitadel
// makes that invalid_client.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.client(id); ok {
		return c, nil
	}
	return nil, errUnknownClient
}

// AuthorizeClientIDSecret compares in constant time.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.client(id)
	if !ok || c.Secret == "" || subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return errUnknownClient
	}
	return nil
}

// ClientCredentials is zitadel's check for the client_credentials grant;
// the harness's VerifyClient (server.go) authenticates before it is asked.
func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return s.GetClientByClientID(ctx, id)
}

// ClientCredentialsTokenRequest: RFC 6749 §4.4.2, a scope the client may
// not have is invalid_scope (§5.2), not silently dropped.
func (s *storage) ClientCredentialsTokenRequest(_ context.Context, id string, scopes []string) (op.TokenRequest, error) {
	c, ok := s.client(id)
	if !ok {
		return nil, errUnknownClient
	}
	if !c.scopesAllowed(scopes) {
		return nil, oidc.ErrInvalidScope()
	}
	return &ccRequest{clientID: id, scopes: scopes, audience: []string{id, s.audience}}, nil
}

func (s *storage) CreateAuthRequest(_ context.Context, r *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if slices.Contains(r.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired() // no session to reuse
	}
	// RFC 9700 §2.1.1: PKCE for every client, and S256 only (RFC 7636 §4.2).
	if r.CodeChallenge == "" || r.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method S256 is required")
	}
	a := &authRequest{AuthRequest: *r, id: randomString(12), created: time.Now(), audience: []string{r.ClientID, s.audience}}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authReqs[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.authReqs[id]; ok {
		return a, nil
	}
	return nil, errors.New("auth request not found")
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or used")
	}
	return s.AuthRequestByID(ctx, id)
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once the code is exchanged: a code is
// single-use (RFC 6749 §4.1.2).
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authReqs, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// login marks an auth request as done for the current user, or reports
// that logins are refused.
func (s *storage) login(id string) (*authRequest, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authReqs[id]
	if !ok {
		return nil, false, errors.New("auth request not found")
	}
	if s.deny {
		return a, false, nil
	}
	a.subject, a.done, a.authTime = s.user, true, time.Now()
	return a, true, nil
}

func (s *storage) newAccessToken(req op.TokenRequest) *token {
	clientID, authTime := grantOf(req)
	t := &token{ID: randomString(12), ClientID: clientID, Subject: req.GetSubject(), Audience: req.GetAudience(),
		Scopes: slices.Clone(req.GetScopes()), AuthTime: authTime}
	s.mu.Lock()
	defer s.mu.Unlock()
	t.Expiry = time.Now().Add(s.accessTTL)
	s.tokens[t.ID] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	t := s.newAccessToken(req)
	return t.ID, t.Expiry, nil
}

// CreateAccessAndRefreshTokens rotates the refresh token on every use
// (RFC 9700 §4.14.2): the one presented stops working.
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	if current != "" {
		s.mu.Lock()
		_, ok := s.refresh[current]
		delete(s.refresh, current)
		s.mu.Unlock()
		if !ok {
			return "", "", time.Time{}, oidc.ErrInvalidGrant()
		}
	}
	at := s.newAccessToken(req)
	grant := *at
	rt := randomString(24)
	s.mu.Lock()
	defer s.mu.Unlock()
	grant.Expiry = time.Now().Add(s.refreshTTL)
	s.refresh[rt] = &grant
	return at.ID, rt, at.Expiry, nil
}

// TokenRequestByRefreshToken hands zitadel a copy: it may narrow the
// scopes (RFC 6749 §6) on what it gets.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, rt string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[rt]
	if !ok || time.Now().After(g.Expiry) {
		return nil, oidc.ErrInvalidGrant().WithDescription("refresh token invalid or expired")
	}
	c := *g
	c.Scopes = slices.Clone(g.Scopes)
	return &c, nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, rt string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[rt]
	if !ok || g.ClientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.Subject, rt, nil
}

// RevokeToken: RFC 7009 §2.1. tokenOrID is an access token's id (the
// JWT's jti) or a refresh token; revoking a refresh token also drops the
// access tokens of its grant. An unknown token is not an error (§2.2).
func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tokens[tokenOrID]; ok {
		if t.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.tokens, tokenOrID)
		return nil
	}
	if g, ok := s.refresh[tokenOrID]; ok {
		if g.ClientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refresh, tokenOrID)
		for id, t := range s.tokens {
			if t.ClientID == g.ClientID && t.Subject == g.Subject {
				delete(s.tokens, id)
			}
		}
	}
	return nil
}

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.tokens {
		if t.ClientID == clientID && t.Subject == userID {
			delete(s.tokens, id)
		}
	}
	for rt, g := range s.refresh {
		if g.ClientID == clientID && g.Subject == userID {
			delete(s.refresh, rt)
		}
	}
	return nil
}

// active is the stored access token with this id, if it is neither
// revoked nor expired.
func (s *storage) active(id string) (*token, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tokens[id]
	if !ok || time.Now().After(t.Expiry) {
		return nil, false
	}
	return t, true
}

// GetPrivateClaimsFromRequest puts the granted scopes in the JWT access
// token's scope claim (RFC 9068 §2.2.3), which the API checks.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	if len(req.GetScopes()) == 0 {
		return nil, nil
	}
	return map[string]any{"scope": strings.Join(req.GetScopes(), " ")}, nil
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil // deprecated in zitadel; SetUserinfoFromToken does it
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	if _, ok := s.active(tokenID); !ok {
		return errors.New("token is not active")
	}
	info.Subject = subject
	return nil
}

// SetIntrospectionFromToken: RFC 7662 §2.2. zitadel answers active=false
// when this fails.
func (s *storage) SetIntrospectionFromToken(_ context.Context, r *oidc.IntrospectionResponse, tokenID, subject, _ string) error {
	t, ok := s.active(tokenID)
	if !ok {
		return errors.New("token is not active")
	}
	r.Subject, r.ClientID, r.Scope = subject, t.ClientID, t.Scopes
	r.Expiration = oidc.FromTime(t.Expiry)
	return nil
}

// GetKeyByIDAndClientID is the public key a client registered for its
// private_key_jwt assertions (RFC 7523 §3: the signature is the client's).
func (s *storage) GetKeyByIDAndClientID(_ context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	c, ok := s.client(clientID)
	if !ok || c.PublicKey == nil || (c.PublicKey.KeyID != "" && c.PublicKey.KeyID != keyID) {
		return nil, fmt.Errorf("no key %q registered for the client", keyID)
	}
	return c.PublicKey, nil
}

func (s *storage) ValidateJWTProfileScopes(_ context.Context, clientID string, scopes []string) ([]string, error) {
	c, ok := s.client(clientID)
	if !ok || !c.scopesAllowed(scopes) {
		return nil, oidc.ErrInvalidScope()
	}
	return scopes, nil
}

// useJTI records an assertion's jti until its exp and reports whether it
// was new: RFC 7523 §3 item 7 lets a server refuse a replayed assertion,
// and a client that reuses one is wrong against the providers that do.
func (s *storage) useJTI(jti string, exp time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for j, e := range s.seenJTI {
		if now.After(e) {
			delete(s.seenJTI, j)
		}
	}
	if _, seen := s.seenJTI[jti]; seen || jti == "" {
		return false
	}
	s.seenJTI[jti] = exp
	return true
}
