// Package login runs the OAuth 2.0 authorization-code flow of `coop-proxy
// login` against COOP, the way RFC 8252 (OAuth 2.0 for Native Apps) wants a
// native app to: in the farmer's browser, with the answer coming back to a
// loopback listener (or pasted back by hand), protected by a state value
// (RFC 6749 §10.12) and PKCE S256 (RFC 7636).
package login

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

// DefaultTimeout is how long Run waits for the browser's answer when
// Config.Timeout is not set.
const DefaultTimeout = 5 * time.Minute

// preflightTimeout bounds the preflight request, which is only a courtesy.
const preflightTimeout = 10 * time.Second

// Config is what one login needs.
type Config struct {
	// OAuth is the application registered on COOP: ClientID, ClientSecret,
	// Endpoint (AuthURL, TokenURL and the AuthStyle COOP's token endpoint
	// accepts for this client id), RedirectURL (a loopback URI, see Run) and
	// the Scopes asked for.
	OAuth oauth2.Config
	// AuthParams are further parameters of the authorization request (RFC
	// 8707 resource, audience); nil for none.
	AuthParams url.Values
	// HTTPClient makes the preflight request and the code exchange; nil means
	// http.DefaultClient.
	HTTPClient *http.Client
	// Timeout is how long to wait for the browser's answer (or the paste);
	// zero means DefaultTimeout.
	Timeout time.Duration
	// OpenBrowser, when not nil, is called with the authorization URL; a
	// failure is only noted on Out. BrowserOpener gives one. Not used with Paste.
	OpenBrowser func(url string) error
	// Paste selects the flow without a listener: the farmer opens the URL
	// anywhere and pastes the address the browser was finally sent to on In.
	Paste bool
	// In is where the pasted address is read from, with Paste.
	In io.Reader
	// Out receives the URL to open and the instructions; nil discards them.
	Out io.Writer
	// Server names the authorization server in what Out is told: "COOP",
	// or empty for any other ("the authorization server").
	Server string
}

// Result is a successful login.
type Result struct {
	// Token is the token COOP issued, with its refresh token and expiry.
	Token *oauth2.Token
	// Scopes are the scopes granted: the token response's "scope", or the
	// scopes asked for when the response has none (RFC 6749 §5.1).
	Scopes []string
}

// flow is one run of the authorization-code flow.
type flow struct {
	cfg      Config
	client   *http.Client
	redirect *url.URL
	state    string
	verifier string
	authURL  string
}

// Run logs the farmer in to COOP and returns the token COOP issued.
//
// The redirect URI must be a loopback address with an explicit port,
// http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252 §7.3), the
// one registered for the application on COOP. Without Paste, Run listens on
// that address for COOP's redirect; with Paste it reads the redirected
// address from In instead. Either way it prints the authorization URL on Out
// and waits at most Timeout for the answer.
//
// The errors to tell apart are ErrDenied, ErrStateMismatch, ErrTimeout,
// ErrBadRedirectURI, ErrBadPaste, *AuthorizationError, *ListenError and
// *ConsentPageError; when ctx ends first, the error wraps ctx's error.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	redirect, err := parseRedirectURI(cfg.OAuth.RedirectURL)
	if err != nil {
		return nil, err
	}
	if cfg.Paste && cfg.In == nil {
		return nil, errors.New("login: paste mode needs an input to read the pasted address from")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	f := &flow{cfg: cfg, client: cfg.HTTPClient, redirect: redirect}
	if f.client == nil {
		f.client = http.DefaultClient
	}
	f.state = newState()
	// RFC 7636 §4.1-4.3: a fresh verifier per authorization, its S256
	// challenge on the authorization request.
	f.verifier = oauth2.GenerateVerifier()
	f.authURL = withParams(cfg.OAuth.AuthCodeURL(f.state, oauth2.S256ChallengeOption(f.verifier)), cfg.AuthParams)

	if cfg.Paste {
		if err := f.preflight(ctx); err != nil {
			return nil, err
		}
		return f.paste(ctx)
	}
	ln, err := listen(ctx, redirect.Host)
	if err != nil {
		return nil, err
	}
	if err := f.preflight(ctx); err != nil {
		ln.Close()
		return nil, err
	}
	return f.serve(ctx, ln)
}

// parseRedirectURI accepts only the loopback redirect URIs of RFC 8252 §7.3:
// scheme http, the literal address 127.0.0.1 or [::1], and an explicit port
// (COOP compares the registered URI exactly, so the port cannot be chosen at
// run time).
func parseRedirectURI(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, detailed(ErrBadRedirectURI, "the redirect URI is not a URL: it must be http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252 §7.3)")
	}
	shown := u.Redacted() // no password in a message
	bad := func(why string) error {
		return detailed(ErrBadRedirectURI, "the redirect URI %q %s: it must be http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252 §7.3)", shown, why)
	}
	if u.Scheme != "http" {
		// RFC 8252 §7.3: the loopback redirect is plain http; TLS is
		// neither needed nor possible there.
		return nil, bad("does not start with http://")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, bad("has a user, query or fragment")
	}
	host, port := u.Hostname(), u.Port()
	if strings.EqualFold(host, "localhost") {
		// RFC 8252 §8.3: localhost may resolve elsewhere or to the other
		// IP version than the one listened on; the IP literal is recommended.
		return nil, detailed(ErrBadRedirectURI, "the redirect URI %q uses localhost: use 127.0.0.1 instead (RFC 8252 §8.3), here and in the redirect URI registered on COOP", shown)
	}
	if host != "127.0.0.1" && host != "::1" {
		return nil, bad("is not on the loopback address 127.0.0.1 or [::1]")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, bad("has no fixed port")
	}
	return u, nil
}

// pathOrRoot is the path a browser requests for p: an empty path is "/".
func pathOrRoot(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// newState returns a fresh state value: 256 bits from crypto/rand, base64url
// (RFC 6749 §10.10: at most a 2^-128 chance of guessing it).
func newState() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails since Go 1.24: it crashes the program instead
	return base64.RawURLEncoding.EncodeToString(b)
}

// consentPageErrors are the errors COOP shows on its own page instead of
// redirecting (RFC 6749 §4.1.2.1), as bshaffer/oauth2-server-php words them.
var consentPageErrors = []string{
	"The client id supplied is invalid",
	"The redirect URI provided is missing or does not match",
	"No redirect URI was supplied or stored",
}

// preflight requests the authorization URL itself, without cookies and
// without following redirects, to catch COOP's error page before the farmer
// meets it in the browser. It is best effort: any answer but that error
// page, including a failure to ask, lets the login go on.
func (f *flow) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.authURL, nil)
	if err != nil {
		return nil
	}
	client := &http.Client{
		Transport:     f.client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		return nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	for _, msg := range consentPageErrors {
		if bytes.Contains(body, []byte(msg)) {
			return &ConsentPageError{Message: msg, ClientID: f.cfg.OAuth.ClientID, RedirectURI: f.cfg.OAuth.RedirectURL}
		}
	}
	return nil
}

// printURL tells the farmer where to log in.
func (f *flow) printURL() {
	where := "to " + f.cfg.Server
	if f.cfg.Server == "" {
		where = "at the authorization server"
	}
	fmt.Fprintf(f.cfg.Out, "Open this address in a browser to log in %s: %s\n", where, f.authURL)
}

// timeoutError is ErrTimeout with how long Run waited and the likely cause.
func (f *flow) timeoutError() error {
	if f.cfg.Server != "COOP" {
		return detailed(ErrTimeout, "no answer to the login after %s: if the authorization server showed an error page, check that the client id %q is right and that its registered redirect URIs include %s exactly; otherwise run coop-proxy login again",
			f.cfg.Timeout, f.cfg.OAuth.ClientID, f.cfg.OAuth.RedirectURL)
	}
	return detailed(ErrTimeout, "no answer to the login after %s: if COOP showed the error page %q, the redirect URI registered for the application must equal %s exactly; if it showed %q, the client id %q is not an application's name on COOP; otherwise run coop-proxy login again",
		f.cfg.Timeout, consentPageErrors[1], f.cfg.OAuth.RedirectURL, consentPageErrors[0], f.cfg.OAuth.ClientID)
}

// finish handles the authorization response (RFC 6749 §4.1.2), from the
// listener or the paste: the state first, then an error, then the code is
// exchanged for a token (RFC 6749 §4.1.3) with the PKCE verifier
// (RFC 7636 §4.5).
func (f *flow) finish(ctx context.Context, q url.Values) (*Result, error) {
	// RFC 6749 §10.12: an answer without this run's state is not acted on,
	// not even an error; compared in constant time.
	if got := q["state"]; len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(f.state)) != 1 {
		return nil, ErrStateMismatch
	}
	// RFC 6749 §4.1.2.1
	if code := q.Get("error"); code != "" {
		if code == "access_denied" {
			if f.cfg.Server != "COOP" {
				return nil, detailed(ErrDenied, "login refused at the authorization server (access_denied): nothing was saved; run coop-proxy login again and approve the access")
			}
			return nil, ErrDenied
		}
		return nil, f.authorizationError(code, q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" {
		return nil, &AuthorizationError{Code: "invalid_request", Description: "the answer carried neither a code nor an error", Server: f.cfg.Server}
	}
	// Exchange sends redirect_uri, which RFC 6749 §4.1.3 requires because
	// the authorization request had it.
	tok, err := f.cfg.OAuth.Exchange(context.WithValue(ctx, oauth2.HTTPClient, f.client), code, oauth2.VerifierOption(f.verifier))
	if err != nil {
		// RFC 6749 §5.2; the body is left out, only the error fields kept.
		if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
			ae := f.authorizationError(re.ErrorCode, re.ErrorDescription)
			if ae.Code == "" && re.Response != nil {
				ae.Description = "the token endpoint answered " + redact.Text(re.Response.Status)
			}
			return nil, ae
		}
		// A url.Error names the address it failed on: a redirect's
		// Location, query and all. Only where and why are kept.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = fmt.Errorf("%s %s: %v", ue.Op, f.cfg.OAuth.Endpoint.TokenURL, redact.Text(ue.Err.Error(), f.cfg.OAuth.ClientSecret, code))
		}
		return nil, fmt.Errorf("exchanging the authorization code at the token endpoint: %v", err)
	}
	return &Result{Token: tok, Scopes: tokensource.GrantedScopes(tok, f.cfg.OAuth.Scopes)}, nil
}

// authorizationError keeps of an authorization server's answer only an
// error code RFC 6749 defines and a cleaned description: a server can echo
// the request (the client secret, the code) in either.
func (f *flow) authorizationError(code, description string) *AuthorizationError {
	if !slices.Contains(oauthErrorCodes, code) {
		code = ""
	}
	return &AuthorizationError{Code: code, Description: redact.Text(description, f.cfg.OAuth.ClientSecret), Server: f.cfg.Server}
}

// oauthErrorCodes are the error codes of the authorization endpoint
// (RFC 6749 §4.1.2.1) and the token endpoint (§5.2), and COOP's
// redirect_uri_mismatch.
var oauthErrorCodes = []string{"invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
	"invalid_scope", "server_error", "temporarily_unavailable", "invalid_client", "invalid_grant", "unsupported_grant_type",
	"redirect_uri_mismatch"}

// withParams adds params to the query of the authorization URL u, leaving
// those it carries as they are. (x/oauth2's SetAuthURLParam keeps one value
// a name; RFC 8707 §2.1 allows several resource parameters.)
func withParams(u string, params url.Values) string {
	parsed, err := url.Parse(u)
	if len(params) == 0 || err != nil {
		return u
	}
	q := parsed.Query()
	for k, vs := range params {
		if _, set := q[k]; !set {
			q[k] = vs
		}
	}
	parsed.RawQuery = q.Encode()
	return parsed.String()
}
