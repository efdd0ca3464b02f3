package coop

import (
	"net/http"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// Fault is a failure the token endpoint can be made to show, to test how a
// client copes with COOP being unwell.
type Fault int

const (
	// FaultNone leaves the token endpoint working.
	FaultNone Fault = iota
	// Fault500 makes POST /token answer 500 with an HTML error page, no
	// JSON.
	Fault500
	// FaultHang makes POST /token never answer: the handler returns only
	// when the request's context ends (the client gave up or went away).
	FaultHang
	// FaultDown makes POST /token close the connection without any
	// response.
	FaultDown
)

// faultPage is the body of Fault500: the error page of COOP's framework.
const faultPage = `<!DOCTYPE html>
<html><head><meta charset="UTF-8"><title>Whoops</title></head>
<body><h1>Whoops, looks like something went wrong.</h1></body></html>
`

// SetTokenFault makes every following POST /token fail as f says, until it
// is set back to FaultNone. Requests are still recorded.
func (s *Server) SetTokenFault(f Fault) {
	s.mu.Lock()
	s.fault = f
	s.mu.Unlock()
	s.logf("coop: token endpoint fault set to %d", f)
}

// serveTokenFault answers a token request as the fault says.
func serveTokenFault(w http.ResponseWriter, r *http.Request, f Fault) {
	switch f {
	case Fault500:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(faultPage))
	case FaultHang:
		<-r.Context().Done()
	case FaultDown:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
		// No hijacking (HTTP/2, a recorder): abort the response instead.
		panic(http.ErrAbortHandler)
	}
}

// RevokeToken deletes an access token or a refresh token: from now on it
// does not exist.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	delete(s.access, token)
	delete(s.refresh, token)
	s.mu.Unlock()
	s.logf("coop: token %s revoked", redact.Fingerprint(token))
}

// RefreshTokenLive reports whether COOP would accept token in a refresh now:
// it was issued and has been neither used (COOP rotates refresh tokens: the
// one used dies), revoked, nor outlived. It is how a test tells the live
// grant from a dead one without spending it.
func (s *Server) RefreshTokenLive(token string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := s.refresh[token]
	return rt != nil && !now.After(rt.expires)
}

// ExpireAllTokens makes every access token issued so far expired now.
// Refresh tokens and authorization codes are untouched.
func (s *Server) ExpireAllTokens() {
	past := s.now().Add(-time.Nanosecond)
	s.mu.Lock()
	for _, t := range s.access {
		t.expires = past
	}
	n := len(s.access)
	s.mu.Unlock()
	s.logf("coop: %d access tokens expired", n)
}

// TokenRequest records a POST /token: when it came, its grant type, the
// client id presented (client ids are not secrets), whether the credentials
// came in HTTP Basic, and the status and error code answered (0 and "" when
// a fault kept it from answering, 500 for Fault500).
type TokenRequest struct {
	At                  time.Time
	GrantType, ClientID string
	AuthInBasic         bool
	Status              int
	ErrorCode           string
}

// TokenRequests returns every POST /token received so far, in order.
func (s *Server) TokenRequests() []TokenRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TokenRequest(nil), s.tokenLog...)
}

// CountTokenRequests counts the POST /token received with grant type
// grantType; "" counts them all.
func (s *Server) CountTokenRequests(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if grantType == "" {
		return len(s.tokenLog)
	}
	n := 0
	for _, t := range s.tokenLog {
		if t.GrantType == grantType {
			n++
		}
	}
	return n
}

// APIRequest records a request under /api/: when it came, its method and
// path, the status answered, and the fingerprint (not the token) of the
// access token presented, "" when none could be read.
type APIRequest struct {
	At               time.Time
	Method, Path     string
	Status           int
	TokenFingerprint string
}

// apiLogSize is how many API requests are remembered.
const apiLogSize = 10000

// apiRing keeps the last apiLogSize API requests.
type apiRing struct {
	buf  []APIRequest // grows to apiLogSize, then wraps
	next int          // where the next request goes once buf is full
}

// add remembers a request, forgetting the oldest when full.
func (r *apiRing) add(req APIRequest) {
	if len(r.buf) < apiLogSize {
		r.buf = append(r.buf, req)
		return
	}
	r.buf[r.next] = req
	r.next = (r.next + 1) % apiLogSize
}

// recordAPI remembers an API request answered without looking at a token.
func (s *Server) recordAPI(req APIRequest) {
	s.mu.Lock()
	s.apiLog.add(req)
	s.mu.Unlock()
}

// APIRequests returns the last 10,000 requests under /api/ at most, oldest
// first.
func (s *Server) APIRequests() []APIRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]APIRequest, 0, len(s.apiLog.buf))
	out = append(out, s.apiLog.buf[s.apiLog.next:]...)
	return append(out, s.apiLog.buf[:s.apiLog.next]...)
}
