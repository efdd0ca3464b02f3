// Package coop is a faithful emulator of COOP, the OAuth2 farm site of the
// "OAuth2 in 8 steps" tutorial: its authorization server (/authorize, /token),
// its login and consent pages, and its resource server (the farm API under
// /api/), quirks included, as coop-api.md describes them.
//
// The real COOP ran bshaffer/oauth2-server-php. Where it departs from RFC 6749
// or RFC 6750, the emulator departs the same way, and a comment beside the code
// says so, because the proxy in front of it must cope with the real thing.
package coop

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// Defaults of Options, as COOP was configured.
const (
	defaultAccessTokenLifetime  = 86400 * time.Second
	defaultRefreshTokenLifetime = 14 * 24 * time.Hour
	defaultCodeLifetime         = 30 * time.Second
)

// Options configures a Server. The zero value is COOP as it was served.
type Options struct {
	// AccessTokenLifetime is how long an access token lives (default 86400 s).
	AccessTokenLifetime time.Duration
	// RefreshTokenLifetime is how long a refresh token lives (default 14 days).
	RefreshTokenLifetime time.Duration
	// CodeLifetime is how long an authorization code lives (default 30 s).
	CodeLifetime time.Duration
	// IntendedStatuses makes the farm API answer bearer errors with the
	// status the PHP library intended (400 invalid_request, 403
	// insufficient_scope) instead of the 401 COOP actually served.
	IntendedStatuses bool
	// Now is the clock (default time.Now). Every expiry, the 20-second rule
	// and the egg-counting day use it.
	Now func() time.Time
	// Logf, when set, receives a line per token request, login and test hook.
	// It never receives a secret or a token.
	Logf func(format string, args ...any)
}

// User is a farmer with an account on COOP; the email is the username, the ID
// is the farm's id in /api/{id}/... .
type User struct {
	ID                                   int64
	Email, Password, FirstName, LastName string
}

// App is an OAuth client registered on COOP by its owner: its name is its
// client id, COOP generated its secret, the owner ticked its scopes and may
// have registered one redirect URI.
type App struct {
	ClientID, ClientSecret string
	OwnerID                int64
	Scopes                 []string
	RedirectURI            string
}

// scopes lists COOP's six scopes and their meanings, in the order of
// coop-api.md; the consent page shows the meanings.
var scopes = [...]struct{ name, meaning string }{
	{"barn-unlock", "Unlock the Barn"},
	{"toiletseat-down", "Put the Toilet Seat Down"},
	{"chickens-feed", "Feed Your Chickens"},
	{"eggs-collect", "Collect Eggs from Your Chickens"},
	{"eggs-count", "Get the Number of Eggs Collected Today"},
	{"profile", "Access Your Profile Data"},
}

// AllScopes returns COOP's six scopes in the order of coop-api.md.
func AllScopes() []string {
	all := make([]string, len(scopes))
	for i, sc := range scopes {
		all[i] = sc.name
	}
	return all
}

// Server is an emulated COOP. It implements http.Handler and is safe for
// concurrent use.
type Server struct {
	accessLifetime  time.Duration
	refreshLifetime time.Duration
	codeLifetime    time.Duration
	intended        bool
	now             func() time.Time
	logf            func(format string, args ...any)

	mu          sync.Mutex
	users       map[int64]*User
	userByEmail map[string]int64 // lower-cased email
	apps        map[string]*App
	access      map[string]*accessToken
	refresh     map[string]*refreshToken
	codes       map[string]*authCode
	sessions    map[string]int64 // session cookie value → user id
	farms       map[int64]*farm
	fault       Fault
	tokenLog    []TokenRequest
	apiLog      apiRing
}

// accessToken is a stored access token. Its scope is the granted scope string
// as COOP stored it, "" for none (JSON null).
type accessToken struct {
	clientID    string
	userID      int64
	scope       string
	expires     time.Time
	fingerprint string
}

// refreshToken is a stored refresh token (RFC 6749 §1.5, §6).
type refreshToken struct {
	clientID string
	userID   int64
	scope    string
	expires  time.Time
}

// authCode is a stored authorization code (RFC 6749 §4.1.2). redirectURI is
// the one sent to /authorize, "" when none was.
type authCode struct {
	clientID    string
	userID      int64
	scope       string
	redirectURI string
	issued      time.Time
}

// New returns an emulated COOP with no users and no applications.
func New(opts Options) *Server {
	s := &Server{
		accessLifetime:  opts.AccessTokenLifetime,
		refreshLifetime: opts.RefreshTokenLifetime,
		codeLifetime:    opts.CodeLifetime,
		intended:        opts.IntendedStatuses,
		now:             opts.Now,
		logf:            opts.Logf,
		users:           make(map[int64]*User),
		userByEmail:     make(map[string]int64),
		apps:            make(map[string]*App),
		access:          make(map[string]*accessToken),
		refresh:         make(map[string]*refreshToken),
		codes:           make(map[string]*authCode),
		sessions:        make(map[string]int64),
		farms:           make(map[int64]*farm),
	}
	if s.accessLifetime <= 0 {
		s.accessLifetime = defaultAccessTokenLifetime
	}
	if s.refreshLifetime <= 0 {
		s.refreshLifetime = defaultRefreshTokenLifetime
	}
	if s.codeLifetime <= 0 {
		s.codeLifetime = defaultCodeLifetime
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.logf == nil {
		s.logf = func(string, ...any) {}
	}
	return s
}

// AddUser registers a farmer and returns it; ids are 1, 2, 3... in order.
func (s *Server) AddUser(email, password, firstName, lastName string) User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := &User{
		ID:        int64(len(s.users) + 1),
		Email:     email,
		Password:  password,
		FirstName: firstName,
		LastName:  lastName,
	}
	s.users[u.ID] = u
	s.userByEmail[strings.ToLower(email)] = u.ID
	return *u
}

// AddApp registers an application of the user ownerID, with a fresh 32-hex
// client secret, and returns it. An application of the same client id is
// replaced. redirectURI may be "" (none registered).
func (s *Server) AddApp(ownerID int64, clientID string, scopes []string, redirectURI string) App {
	a := App{
		ClientID:     clientID,
		ClientSecret: randomHex(16),
		OwnerID:      ownerID,
		Scopes:       slices.Clone(scopes),
		RedirectURI:  redirectURI,
	}
	stored := a
	stored.Scopes = slices.Clone(scopes) // the caller may change its copy
	s.mu.Lock()
	s.apps[clientID] = &stored
	s.mu.Unlock()
	return a
}

// RegenerateSecret gives a registered application a new client secret, as
// the owner can on COOP's site; the old secret stops working at once.
func (s *Server) RegenerateSecret(clientID string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[clientID]
	if !ok {
		return "", false
	}
	a.ClientSecret = randomHex(16)
	return a.ClientSecret, true
}

// IssueToken creates tokens directly, without an HTTP round trip, as the
// token endpoint would: an access token acting for userID through clientID
// with the given scopes, and a refresh token when withRefresh (else refresh
// is ""). The client need not be registered.
func (s *Server) IssueToken(clientID string, userID int64, scopes []string, withRefresh bool) (access, refresh string) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(clientID, userID, strings.Join(scopes, " "), withRefresh, now)
}

// issueLocked stores a new access token, and a refresh token when
// withRefresh, as bshaffer's AccessToken::createAccessToken does. Tokens are
// 40 hex characters (RFC 6749 §10.10: not guessable). s.mu must be held.
func (s *Server) issueLocked(clientID string, userID int64, scope string, withRefresh bool, now time.Time) (access, refresh string) {
	access = randomHex(20)
	s.access[access] = &accessToken{
		clientID:    clientID,
		userID:      userID,
		scope:       scope,
		expires:     now.Add(s.accessLifetime),
		fingerprint: redact.Fingerprint(access),
	}
	if withRefresh {
		refresh = randomHex(20)
		s.refresh[refresh] = &refreshToken{
			clientID: clientID,
			userID:   userID,
			scope:    scope,
			expires:  now.Add(s.refreshLifetime),
		}
	}
	return access, refresh
}

// appScope is the application's scope string as COOP stored it.
func (a *App) appScope() string { return strings.Join(a.Scopes, " ") }

// ServeHTTP routes a request to COOP's pages and endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case strings.HasPrefix(p, "/api/"):
		s.serveAPI(w, r)
	case p == "/token":
		s.serveToken(w, r)
	case p == "/authorize":
		s.serveAuthorize(w, r)
	case p == "/authorize/submit":
		s.serveAuthorizeSubmit(w, r)
	case p == "/login":
		s.serveLogin(w, r)
	case p == "/":
		s.serveHome(w, r)
	default:
		notFound(w)
	}
}

// randomHex returns n random bytes from crypto/rand as 2n hex characters.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)
}

// scopeCovers reports whether every scope of required is in available, as
// bshaffer's Scope::checkScope does (RFC 6749 §3.3): both strings are trimmed
// and split on single spaces, so a doubled space asks for an empty scope,
// which nothing covers. It does not allocate.
func scopeCovers(required, available string) bool {
	required, available = phpTrim(required), phpTrim(available)
	for {
		want, rest, more := strings.Cut(required, " ")
		if !hasScope(available, want) {
			return false
		}
		if !more {
			return true
		}
		required = rest
	}
}

// hasScope reports whether the space-separated list contains scope.
func hasScope(list, scope string) bool {
	for {
		have, rest, more := strings.Cut(list, " ")
		if have == scope {
			return true
		}
		if !more {
			return false
		}
		list = rest
	}
}

// allScopes is COOP's six scopes as one space-separated list.
var allScopes = strings.Join(AllScopes(), " ")

// scopeExists reports whether every scope of s is one of COOP's six, as
// bshaffer's Scope::scopeExists does.
func scopeExists(s string) bool { return scopeCovers(s, allScopes) }

// phpTrim trims what PHP's trim() trims.
func phpTrim(s string) string { return strings.Trim(s, " \t\n\r\x00\x0b") }

// phpTruthy reports whether PHP would take the string as true: COOP tests
// parameters with `if (!$value)`, so "" and "0" count as absent.
func phpTruthy(s string) bool { return s != "" && s != "0" }
