package oidctest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Claims are what the API learnt from a valid access token.
type Claims struct {
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scope"`
	ID       string   `json:"jti"`
	Expiry   int64    `json:"exp"`
}

// APIRequest is one request the API answered.
type APIRequest struct {
	Method, Path string
	Status       int
	Subject      string // the token's, when it was valid
}

// api is the resource server (RFC 6750): every request needs a bearer
// access token, verified as a real API verifies a JWT access token
// (RFC 9068 §4), with go-jose against the keys the provider publishes at
// its jwks_uri, not with zitadel's code. On top, it asks the provider's
// storage whether the token is still active, as an API that introspects
// (RFC 7662) would, so that revocation is visible to tests.
type api struct {
	p     *Provider
	http  *http.Client
	scope string // required, when not empty

	mu   sync.Mutex
	keys *jose.JSONWebKeySet
	log  []APIRequest
}

func newAPI(p *Provider, scope string) *api {
	return &api{p: p, http: &http.Client{Timeout: 5 * time.Second}, scope: scope}
}

// APIRequests is every request the API has answered so far, in order.
func (p *Provider) APIRequests() []APIRequest {
	p.api.mu.Lock()
	defer p.api.mu.Unlock()
	return append([]APIRequest(nil), p.api.log...)
}

// API is the resource server's handler, also served at APIURL. It answers
// 200 with a JSON object: the token's claims, and the method and path it
// was called with.
func (p *Provider) API() http.Handler { return p.api }

// Verify checks the request's bearer access token as the API does.
func (p *Provider) Verify(r *http.Request) (*Claims, error) { return p.api.verify(r) }

// errNoToken is a request without credentials: RFC 6750 §3.1 wants no
// error code for it.
var errNoToken = errors.New("no bearer token")

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c, err := a.verify(r)
	rec := APIRequest{Method: r.Method, Path: r.URL.Path}
	switch {
	case errors.Is(err, errNoToken):
		// RFC 6750 §3: a challenge, without an error code.
		w.Header().Set("WWW-Authenticate", `Bearer realm="oidctest"`)
		rec.Status = http.StatusUnauthorized
	case err != nil:
		// RFC 6750 §3.1: invalid_token, which tells a client that getting
		// a new token may help. The reason is not for the client.
		w.Header().Set("WWW-Authenticate", `Bearer realm="oidctest", error="invalid_token"`)
		rec.Status = http.StatusUnauthorized
	case a.scope != "" && !slices.Contains(c.Scopes, a.scope):
		// RFC 6750 §3.1: the token is good, its scope is not enough.
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="oidctest", error="insufficient_scope", scope=%q`, a.scope))
		rec.Status, rec.Subject = http.StatusForbidden, c.Subject
	default:
		rec.Status, rec.Subject = http.StatusOK, c.Subject
	}
	a.mu.Lock()
	a.log = append(a.log, rec)
	a.mu.Unlock()
	if rec.Status != http.StatusOK {
		w.WriteHeader(rec.Status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(struct {
		*Claims
		Method string `json:"method"`
		Path   string `json:"path"`
	}{c, r.Method, r.URL.Path})
}

func (a *api) verify(r *http.Request) (*Claims, error) {
	// RFC 6750 §2.1: "Bearer" is case-insensitive (RFC 9110 §11.1).
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return nil, errNoToken
	}
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("not a JWT: %w", err)
	}
	if len(parsed.Headers) != 1 {
		return nil, errors.New("not one signature")
	}
	key, err := a.key(parsed.Headers[0].KeyID)
	if err != nil {
		return nil, err
	}
	var std jwt.Claims
	var extra struct {
		ClientID string `json:"client_id"`
		Scope    string `json:"scope"` // RFC 9068 §2.2.3: space separated
	}
	if err := parsed.Claims(key, &std, &extra); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	// RFC 9068 §4: the issuer, this API as audience, and the time.
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: a.p.Issuer, AnyAudience: jwt.Audience{a.p.APIURL}, Time: time.Now()}, 0); err != nil {
		return nil, err
	}
	if std.Expiry == nil {
		return nil, errors.New("no exp")
	}
	if _, ok := a.p.storage.active(std.ID); !ok {
		return nil, errors.New("token revoked")
	}
	return &Claims{Subject: std.Subject, ClientID: extra.ClientID, Scopes: strings.Fields(extra.Scope),
		ID: std.ID, Expiry: std.Expiry.Time().Unix()}, nil
}

// key is the provider's public key with this kid, from its jwks_uri,
// fetched again when the kid is not known yet (a key rotation).
func (a *api) key(kid string) (*jose.JSONWebKey, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for fetched := false; ; fetched = true {
		if a.keys != nil {
			if ks := a.keys.Key(kid); len(ks) > 0 {
				return &ks[0], nil
			}
		}
		if fetched {
			return nil, fmt.Errorf("no key %q at the jwks_uri", kid)
		}
		resp, err := a.http.Get(a.p.JWKSURL)
		if err != nil {
			return nil, err
		}
		var set jose.JSONWebKeySet
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		a.keys = &set
	}
}
