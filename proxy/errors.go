package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

// problem is the JSON body of every answer the proxy makes itself. It has
// the shape of an OAuth error (RFC 6749 §5.2) so that callers that already
// read COOP's errors can read the proxy's.
type problem struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// writeProblem answers with status and a JSON problem body.
func writeProblem(w http.ResponseWriter, status int, code, description string) {
	body, _ := json.Marshal(problem{Error: code, Description: description})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// refusal is an answer the handler makes itself instead of forwarding.
type refusal struct {
	status            int
	code, description string
}

func (e *refusal) Error() string { return e.code + ": " + e.description }

// refuse answers a request that is not forwarded, and has the server close
// the connection after the answer when a body was announced (RFC 9112
// §9.6): net/http would otherwise read up to 256 KiB of that body before
// sending the answer, and a caller that announces a body and does not send
// it would wait for the answer without end.
func refuse(w http.ResponseWriter, r *http.Request, status int, code, description string) {
	closeUnread(w, r)
	writeProblem(w, status, code, description)
}

// connectionSpent answers a request that arrived with its context cancelled:
// net/http cancelled its connection's context during an earlier request on
// it, when the caller went away, or when that request's deadline passed after
// its answer had begun (a slow caller taking the last of it; see bound).
// Nothing can be forwarded on that context; a caller still there is told to
// send the request again, on a new connection.
func connectionSpent(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "1")
	writeProblem(w, http.StatusServiceUnavailable, "connection_spent",
		"the connection ended for coop-proxy before this request was forwarded (the caller closed its side, or an earlier request on it ran out of time): send it again on a new connection")
}

// closeUnread marks the answer "Connection: close" when the request has a
// body that may not have been read to its end. Only HTTP/1: an HTTP/2
// stream does not hold its connection.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 && r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// rejection is COOP's rejection of a token (RFC 6750 §3.1 invalid_token)
// that is not answered by a retry. A token failure is never the caller's
// 401: the token is dropped, and the caller sends the request again.
// A demand for a DPoP nonce (RFC 9449 §9) is answered the same way, with
// its own code.
type rejection struct{ code, description string }

func (e *rejection) Error() string { return e.code + ": " + e.description }

var (
	// errTokenRejected is bearer's: COOP rejected the token sent.
	errTokenRejected = &rejection{"token_rejected", "the API rejected the access token"}
	errBodyNotKept   = &rejection{"token_rejected", "the API rejected the access token, and the request was not sent again with a new one: " +
		"its body was not kept (it is larger than COOP_PROXY_RETRY_BODY_LIMIT). Send the request again"}
	errRejectedTwice = &rejection{"token_rejected", "the API rejected a newly fetched access token too. Send the request again later"}

	// errNonceRequired is bearer's: COOP asked for a DPoP nonce, and gave one.
	errNonceRequired    = &rejection{"use_dpop_nonce", "the API asked for a DPoP nonce"}
	errNonceBodyNotKept = &rejection{"use_dpop_nonce", "the API asked for a DPoP nonce, and the request was not sent again with it: " +
		"its body was not kept (it is larger than COOP_PROXY_RETRY_BODY_LIMIT). Send the request again: it will carry the nonce"}
	errNonceRequiredAgain = &rejection{"use_dpop_nonce", "the API asked for a DPoP nonce, and the request had already been sent again once. Send the request again: it will carry the nonce"}
	// errNoTokenInTime: the request's deadline passed while it waited for a
	// token, a token failure (503), not an upstream timeout.
	errNoTokenInTime = &tokensource.Error{Code: tokensource.Unavailable, RetryAfter: time.Second,
		Description: "no token could be had within the request timeout"}
)

// statusClientClosed is logged (never sent) when the caller went away
// before the answer, as nginx does.
const statusClientClosed = 499

// errorHandler maps a failed round trip to an answer. A token failure is the
// proxy's problem, never the caller's: 503 with Retry-After, not 401, and the
// request was not forwarded.
func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	var te *tokensource.Error
	var ne net.Error
	var mbe *http.MaxBytesError
	var rj *rejection
	if r.GetBody == nil {
		closeUnread(w, r) // the body was streamed: the transport may have left some of it
	}
	if err == errTokenRejected || err == errNonceRequired {
		err = h.rejected(w, r, err == errNonceRequired)
		if err == nil {
			return // sent again: ServeHTTP calls retry
		}
	}
	switch {
	case errors.As(err, &mbe):
		h.tooLarge(w, r)
	case errors.As(err, &rj):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, http.StatusServiceUnavailable, rj.code, rj.description)
	case errors.As(err, &te):
		secs := int((te.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writeProblem(w, http.StatusServiceUnavailable, string(te.Code), te.Description)
	case bodyFailed(w, r) != nil:
		// the caller stopped sending the body (read deadline) or closed
		// its side mid-body: not COOP's fault, nor a caller gone
		h.bodyRefused(w, r, bodyFailed(w, r))
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() || pastDeadline(w, r):
		writeProblem(w, http.StatusGatewayTimeout, "upstream_timeout",
			fmt.Sprintf("the API (%s) did not answer in time", h.upstream.Host))
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		if rw, ok := w.(*recorder); ok {
			rw.status = statusClientClosed
		}
		// net/http cancels the context when it reads an end (or an error)
		// on the caller's connection, also one only half-closed by a caller
		// still reading: an empty 200 (what net/http answers for a handler
		// that wrote nothing) would read as success. Close the connection
		// without an answer, as nginx does (account logs the request).
		panic(http.ErrAbortHandler)
	default:
		writeProblem(w, http.StatusBadGateway, "upstream_unreachable",
			fmt.Sprintf("the API (%s) could not be reached", h.upstream.Host))
	}
}

// rejected asks ServeHTTP to send a request whose token COOP rejected
// again with a new one (or, nonce, with the DPoP nonce COOP asked for),
// when it can be sent again and was not already: nothing has been
// answered. Otherwise it returns why not.
func (h *Handler) rejected(w http.ResponseWriter, r *http.Request, nonce bool) error {
	rec, ok := w.(*recorder)
	switch {
	case (!ok || rec.state.retried) && nonce:
		return errNonceRequiredAgain
	case !ok || rec.state.retried:
		return errRejectedTwice
	case r.Body != nil && r.Body != http.NoBody && r.GetBody == nil && nonce:
		return errNonceBodyNotKept
	case r.Body != nil && r.Body != http.NoBody && r.GetBody == nil:
		return errBodyNotKept
	case r.Context().Err() != nil && nonce:
		// out of time (COOP's 401 came slowly) or the caller gone
		return errNonceRequired
	case r.Context().Err() != nil:
		return errTokenRejected
	}
	rec.state.retry = true
	return nil
}

// pastDeadline reports whether the request's context was cancelled by its
// deadline (see bound): COOP's answer did not come in time.
func pastDeadline(w http.ResponseWriter, r *http.Request) bool {
	rec, ok := w.(*recorder)
	return ok && r.Context().Err() != nil && !rec.state.deadline.IsZero() && !time.Now().Before(rec.state.deadline)
}

// bodyFailed returns the error reading a streamed body from the caller, or
// nil. When the caller's connection failed (the request's context is
// cancelled), it waits for the transport's Read of the body to return.
func bodyFailed(w http.ResponseWriter, r *http.Request) error {
	if rec, ok := w.(*recorder); ok && rec.state.body != nil {
		return rec.state.body.failed(r.Context().Err() != nil)
	}
	return nil
}
