package login

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// The failures of a login a caller tells apart with errors.Is. Run returns
// them with a message specific to the run (duration, redirect URI) that still
// matches them; the message never contains a code, token, state or secret.
var (
	// ErrDenied means the farmer clicked "get me out of here!" on COOP's
	// consent page: COOP redirected with error=access_denied (RFC 6749 §4.1.2.1).
	ErrDenied = errors.New(`login refused on COOP ("get me out of here!"): nothing was saved; run coop-proxy login again and click "Yes, I Authorize This Request"`)

	// ErrStateMismatch means the answer carried no state or another login's
	// state: it may be a cross-site request forgery (RFC 6749 §10.12), so no
	// code was exchanged.
	ErrStateMismatch = errors.New("the answer to the login did not carry this login's state (possible cross-site request forgery): nothing was exchanged; run coop-proxy login again and finish it in the browser it opens")

	// ErrTimeout means no answer came from the browser (or the paste) in time.
	ErrTimeout = errors.New("no answer to the login came in time: run coop-proxy login again")

	// ErrBadRedirectURI means the configured redirect URI is not a loopback
	// address of the form RFC 8252 §7.3 requires.
	ErrBadRedirectURI = errors.New("the redirect URI must be http://127.0.0.1:PORT/PATH or http://[::1]:PORT/PATH (RFC 8252 §7.3)")

	// ErrBadPaste means the pasted line was not the address COOP redirected
	// to: not a URL, or not on the configured redirect URI.
	ErrBadPaste = errors.New("the pasted line is not the address the browser was sent to: paste the whole address from the address bar after approving")
)

// detailedError gives one of the sentinel errors above a message specific to
// this run; errors.Is still finds the sentinel.
type detailedError struct {
	kind error
	msg  string
}

func (e *detailedError) Error() string { return e.msg }
func (e *detailedError) Unwrap() error { return e.kind }

func detailed(kind error, format string, args ...any) error {
	return &detailedError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// AuthorizationError is an OAuth error COOP answered: an error other than
// access_denied on the redirect (RFC 6749 §4.1.2.1, e.g. invalid_scope), or
// a token endpoint error at the code exchange (RFC 6749 §5.2, e.g.
// invalid_grant for an expired code). Code is empty when the token endpoint
// failed without an OAuth error (an HTML page, a 500).
type AuthorizationError struct {
	Code        string // RFC 6749 "error", e.g. "invalid_grant"
	Description string // RFC 6749 "error_description", as COOP wrote it
	// Server is who answered, as Config.Server names it: "COOP", or empty
	// for "the authorization server".
	Server string
}

func (e *AuthorizationError) Error() string {
	what := "the authorization server refused the login"
	if e.Server != "" {
		what = e.Server + " refused the login"
	}
	if e.Code != "" {
		what += ": " + oneLine(e.Code)
	}
	if e.Description != "" {
		what += " (" + oneLine(e.Description) + ")"
	}
	return what + ": " + e.advice()
}

func (e *AuthorizationError) advice() string {
	switch e.Code {
	case "invalid_grant":
		if e.Server != "COOP" {
			return "the code is single-use and short-lived; run coop-proxy login again and approve without delay"
		}
		return "the code is single-use and lives 30 seconds; run coop-proxy login again and approve without delay"
	case "invalid_scope":
		if e.Server != "COOP" {
			return "ask only for scopes the client is allowed at the authorization server (--scopes)"
		}
		return "ask only for scopes the application was given on COOP, or tick more scopes for it there"
	case "invalid_client", "unauthorized_client":
		if e.Server != "COOP" {
			return "check the client id, its credential and the auth style registered for it at the authorization server"
		}
		return "check the client id and client secret of the application on COOP"
	case "redirect_uri_mismatch":
		return "the redirect URI registered for the application must equal the configured one exactly"
	default:
		return "run coop-proxy login again"
	}
}

// ListenError means the loopback listener for COOP's redirect could not be
// opened on the redirect URI's address, typically because the port is in use.
type ListenError struct {
	Addr string // host:port of the redirect URI
	Err  error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("cannot listen on %s for COOP's redirect (%s): free that port, or register a redirect URI with another port on COOP and configure it", e.Addr, oneLine(e.Err.Error()))
}

func (e *ListenError) Unwrap() error { return e.Err }

// ConsentPageError means COOP answered the authorization request with its own
// error page instead of a login or consent page (RFC 6749 §4.1.2.1: an unknown
// client or a mismatching redirect URI is never redirected), so the browser
// step could never succeed.
type ConsentPageError struct {
	Message     string // COOP's message, e.g. "The client id supplied is invalid"
	ClientID    string // the configured client id
	RedirectURI string // the configured redirect URI
}

func (e *ConsentPageError) Error() string {
	advice := fmt.Sprintf("register exactly %s as the redirect URI of the application %q on COOP", e.RedirectURI, e.ClientID)
	if strings.Contains(e.Message, "client id") {
		advice = fmt.Sprintf("check the client id %q: it is the application's name on COOP", e.ClientID)
	}
	return fmt.Sprintf("COOP refused the login request with %q: %s", e.Message, advice)
}

// oneLine keeps text that came from outside on one printable line of bounded
// length, so an error message stays one line whatever a server sent.
func oneLine(s string) string {
	const max = 200
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return s
}
