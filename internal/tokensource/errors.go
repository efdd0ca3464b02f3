package tokensource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/oauth2"
)

// Code says why no valid token can be had. Its value is the "error" member of
// the JSON answer the proxy gives its callers.
type Code string

const (
	// LoginRequired: there is no stored grant, or COOP refused it
	// (invalid_grant). Only `coop-proxy login` can mend it.
	LoginRequired Code = "login_required"
	// ClientRejected: COOP refused the client id or secret (invalid_client).
	ClientRejected Code = "invalid_client"
	// ScopeRejected: COOP refused the requested scopes (invalid_scope).
	ScopeRejected Code = "invalid_scope"
	// Unavailable: the token endpoint could not be reached, timed out, or
	// answered with something other than a token or an OAuth error.
	Unavailable Code = "token_endpoint_unavailable"
)

// Error is a failure to obtain a token. Its text never carries a secret: it
// is built from the OAuth error code and fixed sentences, never from a
// response body.
type Error struct {
	Code        Code
	Description string        // one sentence for the caller and the log
	RetryAfter  time.Duration // when the next attempt is due; set by Cache
	Err         error         // the cause, for errors.Is/As (never printed by Error)
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Description }

func (e *Error) Unwrap() error { return e.Err }

// withRetryAfter returns a copy of e carrying d.
func (e *Error) withRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// classify turns an error from golang.org/x/oauth2 into an *Error.
// RFC 6749 §5.2 lists the error codes of the token endpoint.
func classify(err error, clientID string) *Error {
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		if re.Response != nil {
			status = re.Response.StatusCode
		}
		switch re.ErrorCode {
		case "invalid_client", "unauthorized_client":
			return &Error{Code: ClientRejected, Err: err, Description: fmt.Sprintf(
				"COOP rejected the client credentials of %q (%s): check the client id, the secret and how they are sent (auth style)", clientID, re.ErrorCode)}
		case "invalid_grant":
			return &Error{Code: LoginRequired, Err: err, Description: "COOP refused the stored grant (expired or revoked): run `coop-proxy login` to log in again"}
		case "invalid_scope":
			return &Error{Code: ScopeRejected, Err: err, Description: fmt.Sprintf("COOP refused the requested scopes for %q: ask only for scopes the application has", clientID)}
		case "":
			return &Error{Code: Unavailable, Err: err, Description: fmt.Sprintf("the token endpoint answered HTTP %d without a token", status)}
		default:
			return &Error{Code: Unavailable, Err: err, Description: fmt.Sprintf("the token endpoint answered HTTP %d with error %q", status, re.ErrorCode)}
		}
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Code: Unavailable, Err: err, Description: "the token endpoint did not answer in time"}
	default:
		return &Error{Code: Unavailable, Err: err, Description: "the token endpoint could not be reached"}
	}
}
