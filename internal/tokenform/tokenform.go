// Package tokenform reads and rewrites the body of a token request: a form
// POSTed to the token endpoint (RFC 6749 §4.1.3, §4.4.2, §6), for the
// transports that add to every token request whichever x/oauth2 path made
// it: further parameters, a client assertion, a DPoP proof.
package tokenform

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxForm bounds what is read of a token request's form: x/oauth2 sends a
// few hundred bytes.
const MaxForm = 1 << 20

// Is reports whether req is a token request: a POSTed form. Other requests
// (login's GET of the authorization URL, /api/me) are not.
func Is(req *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type"))
	return req.Method == http.MethodPost && ct == "application/x-www-form-urlencoded" && req.Body != nil
}

// Read reads req's form, at most MaxForm, and closes its body, as a
// RoundTripper must even when it fails.
func Read(req *http.Request) (string, error) {
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxForm+1))
	_ = req.Body.Close()
	if err == nil && len(body) > MaxForm {
		err = errors.New("larger than 1 MiB")
	}
	return string(body), err
}

// WithBody returns a copy of req with the form body: a RoundTripper must
// not change the request it is given.
func WithBody(req *http.Request, body string) *http.Request {
	out := req.Clone(req.Context())
	out.Body = io.NopCloser(strings.NewReader(body))
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	out.ContentLength = int64(len(body))
	return out
}
