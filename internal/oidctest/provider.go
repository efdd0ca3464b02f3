package oidctest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/oauth2"
)

// Provider is a running OpenID provider and its API. Its methods are safe
// for concurrent use.
type Provider struct {
	// Issuer is the provider's URL (http://127.0.0.1:port), exactly the
	// issuer of its discovery document and tokens.
	Issuer string
	// Endpoints as the discovery document gives them.
	TokenURL, AuthURL, DeviceAuthURL, RevocationURL, IntrospectionURL, JWKSURL string
	// APIURL is the API's base URL, and the audience its tokens carry.
	APIURL string

	storage *storage
	api     *api
}

// Option changes a Provider made by New.
type Option func(*options)

type options struct {
	accessTTL, refreshTTL, pollInterval, deviceTTL time.Duration
	issuerPath                                     string
	apiScope                                       string
}

// WithAPIScope makes the API require this scope in the token: without
// it, 403 with error="insufficient_scope" (RFC 6750 §3.1).
func WithAPIScope(scope string) Option { return func(o *options) { o.apiScope = scope } }

// WithIssuerPath gives the issuer a path, as Keycloak's realms and
// multi-tenant providers have ("/realms/test": the issuer is
// http://127.0.0.1:port/realms/test, its endpoints under it, and its
// metadata at the well-known URLs of RFC 8414 §3 and §5 and OpenID
// Connect Discovery §4). It must start with a slash and not end with one.
func WithIssuerPath(path string) Option { return func(o *options) { o.issuerPath = path } }

// WithDeviceCodeLifetime sets how long a device code can be approved and
// polled for (RFC 8628 §3.2 expires_in; 5 minutes by default).
func WithDeviceCodeLifetime(d time.Duration) Option { return func(o *options) { o.deviceTTL = d } }

// WithAccessTokenLifetime sets how long access tokens last (5 minutes by
// default); see also SetAccessTokenLifetime.
func WithAccessTokenLifetime(d time.Duration) Option { return func(o *options) { o.accessTTL = d } }

// WithRefreshTokenLifetime sets how long refresh tokens last (1 hour).
func WithRefreshTokenLifetime(d time.Duration) Option { return func(o *options) { o.refreshTTL = d } }

// WithDevicePollInterval sets the device grant's interval (RFC 8628 §3.2),
// whole seconds, 1 s by default so that tests are quick. A client that
// polls again within half of it gets slow_down.
func WithDevicePollInterval(d time.Duration) Option { return func(o *options) { o.pollInterval = d } }

// Paths the harness adds beside zitadel's endpoints.
const (
	loginPath  = "/login"  // the login and consent page, approved at once
	devicePath = "/device" // RFC 8628 §3.3 verification_uri, approved at once
)

// New starts a provider and its API on loopback, stopped when the test
// ends.
func New(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	o := options{accessTTL: 5 * time.Minute, refreshTTL: time.Hour, pollInterval: time.Second, deviceTTL: 5 * time.Minute}
	for _, f := range opts {
		f(&o)
	}
	st, err := newStorage()
	if err != nil {
		t.Fatal(err)
	}
	st.accessTTL, st.refreshTTL, st.interval = o.accessTTL, o.refreshTTL, o.pollInterval

	// The issuer must be fixed before zitadel is made, so the listener
	// comes first and the handler after.
	srv := httptest.NewUnstartedServer(nil)
	if o.issuerPath != "" && !validIssuerPath(o.issuerPath) {
		srv.Listener.Close()
		t.Fatalf("oidctest: issuer path %q: want /a or /a/b, no trailing slash", o.issuerPath)
	}
	issuer := "http://" + srv.Listener.Addr().String() + o.issuerPath
	p := &Provider{Issuer: issuer, storage: st}
	p.api = newAPI(p, o.apiScope)
	apiSrv := httptest.NewServer(p.api)
	t.Cleanup(apiSrv.Close)
	p.APIURL = apiSrv.URL
	st.audience = p.APIURL

	h, err := p.handler(st, o)
	if err != nil {
		srv.Listener.Close()
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

func (p *Provider) handler(st *storage, o options) (http.Handler, error) {
	config := &op.Config{
		CodeMethodS256:          true,
		AuthMethodPost:          true,
		AuthMethodPrivateKeyJWT: true,
		GrantTypeRefreshToken:   true,
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime: o.deviceTTL, PollInterval: o.pollInterval,
			// zitadel puts this path on the issuer's host, in place of the
			// issuer's own path.
			UserFormPath: o.issuerPath + devicePath, UserCode: op.UserCodeBase20,
		},
	}
	// Authorization codes are sealed with this key: fresh per provider.
	if _, err := rand.Read(config.CryptoKey[:]); err != nil {
		return nil, err
	}
	provider, err := op.NewProvider(config, st, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, err
	}
	endpoints := provider.Endpoints()
	abs := func(e *op.Endpoint) string { return e.Absolute(p.Issuer) }
	p.TokenURL, p.AuthURL, p.DeviceAuthURL = abs(endpoints.Token), abs(endpoints.Authorization), abs(endpoints.DeviceAuthorization)
	p.RevocationURL, p.IntrospectionURL, p.JWKSURL = abs(endpoints.Revocation), abs(endpoints.Introspection), abs(endpoints.JwksURI)
	s := &server{LegacyServer: op.NewLegacyServer(provider, endpoints), provider: provider, storage: st,
		issuer: p.Issuer, tokenURL: p.TokenURL}
	// The harness's pages beside zitadel's router (whose middleware must
	// come before any route, so they cannot be added to it).
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, p.login)
	mux.HandleFunc("GET "+devicePath, p.deviceVerify)
	mux.Handle("/", op.RegisterLegacyServer(s, op.AuthorizeCallbackHandler(provider)))
	var h http.Handler = mux
	if o.issuerPath != "" {
		h = http.StripPrefix(o.issuerPath, mux) // anything not under the issuer: 404
	}
	meta := op.RegisterMetadataServer(&metadata{s: s, issuerPath: o.issuerPath})
	return meta.Intercept(h), nil
}

// Endpoint is the provider's endpoints for golang.org/x/oauth2.
func (p *Provider) Endpoint() oauth2.Endpoint {
	return oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, DeviceAuthURL: p.DeviceAuthURL}
}

// AddClient registers c (see Client for the defaults) and returns it as
// registered, with its ID and Secret.
func (p *Provider) AddClient(c Client) Client {
	c = c.withDefaults()
	oc := &opClient{Client: c, loginURL: func(id string) string {
		return p.Issuer + loginPath + "?id=" + url.QueryEscape(id)
	}}
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	p.storage.clients[c.ID] = oc
	return c
}

// SetUser sets the subject that logins and device approvals are for
// ("alice" at first).
func (p *Provider) SetUser(subject string) {
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	p.storage.user = subject
}

// DenyConsent makes later logins and device approvals refused (true) or
// approved (false): the client gets access_denied (RFC 6749 §4.1.2.1,
// RFC 8628 §3.5).
func (p *Provider) DenyConsent(deny bool) {
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	p.storage.deny = deny
}

// SetAccessTokenLifetime changes the lifetime of access tokens issued
// from now on.
func (p *Provider) SetAccessTokenLifetime(d time.Duration) {
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	p.storage.accessTTL = d
}

// RevokeAccessTokens revokes every access token issued so far, as an
// administrator would: the API refuses them from now on (invalid_token),
// while refresh tokens keep working.
func (p *Provider) RevokeAccessTokens() {
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	clear(p.storage.tokens)
}

// RevokeRefreshTokens revokes every refresh token issued so far.
func (p *Provider) RevokeRefreshTokens() {
	p.storage.mu.Lock()
	defer p.storage.mu.Unlock()
	clear(p.storage.refresh)
}

// login is the login and consent page a client's authorization request is
// sent to: it approves at once, as the current user, and sends the
// browser on to zitadel's callback, which redirects to the client with the
// code. When consent is denied it redirects to the client with
// access_denied itself (RFC 6749 §4.1.2.1).
func (p *Provider) login(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	a, ok, err := p.storage.login(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !ok {
		to, err := url.Parse(a.RedirectURI)
		if err != nil {
			http.Error(w, "bad redirect_uri", http.StatusBadRequest)
			return
		}
		q := to.Query()
		q.Set("error", "access_denied")
		if a.State != "" {
			q.Set("state", a.State)
		}
		to.RawQuery = q.Encode()
		http.Redirect(w, r, to.String(), http.StatusFound)
		return
	}
	http.Redirect(w, r, p.AuthURL+"/callback?id="+url.QueryEscape(id), http.StatusFound)
}

// deviceVerify is the device grant's verification page (RFC 8628 §3.3):
// opening verification_uri_complete approves the user code at once.
func (p *Provider) deviceVerify(w http.ResponseWriter, r *http.Request) {
	if err := p.storage.decideDevice(r.URL.Query().Get("user_code"), true); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = io.WriteString(w, "device decided\n")
}

// ApproveDevice approves a device grant's user code as the current user
// (or denies it, under DenyConsent(true)).
func (p *Provider) ApproveDevice(userCode string) error {
	return p.storage.decideDevice(userCode, true)
}

// DenyDevice denies a device grant's user code.
func (p *Provider) DenyDevice(userCode string) error { return p.storage.decideDevice(userCode, false) }

// Authorize does what a browser does with an authorization URL (RFC 6749
// §4.1.1): it follows the provider's redirects through the login, which
// approves at once, and returns the redirect to the client (with code and
// state, or error) without following it. To deliver it to a client that
// listens, GET the returned URL.
func (p *Provider) Authorize(ctx context.Context, authURL string) (*url.URL, error) {
	c := &http.Client{
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	issuer, _ := url.Parse(p.Issuer)
	next := authURL
	for range 10 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, next, nil)
		if err != nil {
			return nil, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		loc, err := resp.Location()
		if err != nil {
			return nil, fmt.Errorf("authorization stopped at %s with %s: %s", req.URL.Path, resp.Status, strings.TrimSpace(string(body)))
		}
		if loc.Host != issuer.Host {
			return loc, nil
		}
		next = loc.String()
	}
	return nil, errors.New("authorization: too many redirects")
}

// validIssuerPath: "/a" or "/a/b", with no empty, dot or trailing segment.
func validIssuerPath(p string) bool {
	return p != "/" && strings.HasPrefix(p, "/") && path.Clean(p) == p
}
