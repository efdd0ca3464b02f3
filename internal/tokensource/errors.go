package tokensource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// Code says why no valid token can be had. Its value is the "error" member of
// the JSON answer the proxy gives its callers.
type Code string

const (
	// LoginRequired: there is no stored grant, or the token endpoint refused it
	// (invalid_grant). Only `coop-proxy login` can mend it.
	LoginRequired Code = "login_required"
	// ClientRejected: the token endpoint refused the client id or its
	// credential (invalid_client).
	ClientRejected Code = "invalid_client"
	// ScopeRejected: the token endpoint refused the requested scopes
	// (invalid_scope).
	ScopeRejected Code = "invalid_scope"
	// Unavailable: the token endpoint could not be reached, timed out, or
	// answered with something other than a token or an OAuth error; or the
	// token store holding the farmer's grant cannot be read.
	Unavailable Code = "token_endpoint_unavailable"
	// StoreUnavailable: the shared token store (Redis) cannot be used, and
	// the token held has run out; a farmer's grant is never refreshed
	// without the store's lock. It clears when the store is back.
	StoreUnavailable Code = "store_unavailable"
	// TokenRejected: the API rejects (invalid_token) the tokens the token
	// endpoint has just issued, so fetching more would not help; the cache
	// backs off (see Cache.Invalidate).
	TokenRejected Code = "token_rejected"
)

// Error is a failure to obtain a token. Its text never carries a secret: it
// is built from fixed sentences, the HTTP status, an error code of RFC 6749
// §5.2 and a sanitized error_description, never from a response body.
type Error struct {
	Code        Code
	Description string        // one sentence for the caller and the log
	RetryAfter  time.Duration // when the next attempt is due; set by Cache
	Err         error         // the cause, for errors.Is/As (never printed by Error); nil when the cause carries the token endpoint's answer
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Description }

func (e *Error) Unwrap() error { return e.Err }

// withRetryAfter returns a copy of e carrying d.
func (e *Error) withRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// classify turns an error of a grant's request to the token endpoint into
// an *Error. sent are the credentials the request carried (client secret,
// refresh token). Of the answer, only the HTTP status, an error code of RFC
// 6749 §5.2 and a sanitized error_description are kept: a token endpoint
// that echoes the request would otherwise hand those credentials to the
// callers, /readyz and the logs. For the same reason the cause is dropped
// when it holds the answer (oauth2.RetrieveError keeps the body, and the
// request with its Authorization header).
func classify(err error, clientID string, sent ...string) *Error {
	var te *Error
	if errors.As(err, &te) {
		return te
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return answerError(re, clientID, sent)
	}
	var rd *redirectError
	if errors.As(err, &rd) {
		return &Error{Code: Unavailable, Description: fmt.Sprintf(
			"the token endpoint answered with a redirect (HTTP %d to %s); coop-proxy never follows redirects from the token endpoint: set COOP_PROXY_TOKEN_URL to the final address",
			rd.status, redact.Text(rd.host, sent...))}
	}
	if unusableAnswer(err) {
		return &Error{Code: Unavailable, Description: "the token endpoint answered HTTP 2xx without a usable token (no token response with an access_token)"}
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &Error{Code: Unavailable, Err: err, Description: "the token endpoint did not answer in time"}
	default:
		return &Error{Code: Unavailable, Err: err, Description: "the token endpoint could not be reached"}
	}
}

// answerError classifies an OAuth error answer (RFC 6749 §5.2).
func answerError(re *oauth2.RetrieveError, clientID string, sent []string) *Error {
	status := 0
	if re.Response != nil {
		status = re.Response.StatusCode
	}
	said := ""
	if d := redact.Text(re.ErrorDescription, sent...); d != "" {
		said = fmt.Sprintf(" (the token endpoint said %q)", d)
	}
	switch code := re.ErrorCode; code {
	case "invalid_client", "unauthorized_client":
		return &Error{Code: ClientRejected, Description: fmt.Sprintf(
			"the token endpoint rejected the client credentials of %q (%s)%s: check the client id, its secret (or key, or certificate) and the auth style", clientID, code, said)}
	case "invalid_grant":
		return &Error{Code: LoginRequired, Description: "the token endpoint refused the stored grant (expired or revoked)" + said + ": run `coop-proxy login` to log in again"}
	case "invalid_scope":
		return &Error{Code: ScopeRejected, Description: fmt.Sprintf("the token endpoint refused the requested scopes for %q%s: ask only for scopes the application has", clientID, said)}
	case "":
		return &Error{Code: Unavailable, Description: fmt.Sprintf("the token endpoint answered HTTP %d without a token%s", status, said)}
	default:
		if !slices.Contains(oauthErrorCodes, code) {
			code = "outside RFC 6749 §5.2"
		}
		return &Error{Code: Unavailable, Description: fmt.Sprintf("the token endpoint answered HTTP %d with error %s%s", status, code, said)}
	}
}

// oauthErrorCodes are the error codes of a token endpoint (RFC 6749 §5.2).
// Any other "error" is not repeated: it could be anything, the request
// echoed included.
var oauthErrorCodes = []string{"invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type", "invalid_scope"}

// unusableAnswer reports x/oauth2's errors for a 2xx answer that holds no
// token (internal/token.go: a body it cannot parse, or no access_token);
// they have no type of their own.
func unusableAnswer(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "oauth2: cannot parse ") || msg == "oauth2: server response missing access_token"
}

// redirectError is how the token endpoint's client refuses a redirect.
type redirectError struct {
	status int
	host   string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("redirect (HTTP %d to %s) not followed", e.status, e.host)
}
