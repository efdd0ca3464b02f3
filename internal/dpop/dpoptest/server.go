package dpoptest

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// Server is a DPoP authorization server (POST /token: client credentials,
// authorization code and refresh; GET /authorize approves every request at
// once) and resource server (every other path) in one. Each token
// it issues is bound to the key of the proof that asked for it (RFC 9449
// §6: the token's cnf.jkt, kept here beside the opaque token), and the
// API takes a token only with a proof of that key. Every proof is checked
// with Verify, its htm and htu against the request, its jti against every
// jti seen, and, at the API, its ath against the token. Set the options
// before the first request.
type Server struct {
	*httptest.Server
	TokenNonce   bool // the token endpoint demands a nonce (§8)
	APINonce     bool // the API demands a nonce (§9), and gives a fresh one with every answer (§8.2)
	AnswerBearer bool // the token endpoint answers token_type Bearer (a provider without DPoP)

	mu          sync.Mutex
	bound       map[string]string // access or refresh token → jkt
	codes       map[string]bool   // authorization codes not yet exchanged
	jtis        map[string]bool
	tokenNonce  string
	apiNonce    string
	reject      int       // API requests still to answer with invalid_token
	tokenProofs []Proof   // the token endpoint's, in order
	apiCalls    []APICall // the API's, in order
	failures    []string  // proofs refused, and why
}

// APICall is what the API was sent.
type APICall struct {
	Proof  Proof
	Token  string
	Header http.Header // as received
	Status int         // what the API answered
}

// NewServer starts a Server; it is closed when the test ends.
func NewServer(t interface{ Cleanup(func()) }) *Server {
	s := &Server{bound: map[string]string{}, jtis: map[string]bool{}, codes: map[string]bool{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// TokenURL is the token endpoint's address.
func (s *Server) TokenURL() string { return s.URL + "/token" }

// RejectNext has the API answer the next n requests with invalid_token.
func (s *Server) RejectNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject = n
}

// BoundTo returns the jkt a token was bound to when it was issued, or "".
func (s *Server) BoundTo(token string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound[token]
}

// TokenProofs returns the proofs the token endpoint accepted.
func (s *Server) TokenProofs() []Proof {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Proof(nil), s.tokenProofs...)
}

// APICalls returns the requests the API checked the proofs of.
func (s *Server) APICalls() []APICall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]APICall(nil), s.apiCalls...)
}

// Failures returns why proofs were refused.
func (s *Server) Failures() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.failures...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/token":
		s.token(w, r)
	case "/authorize":
		s.authorize(w, r)
	default:
		s.api(w, r)
	}
}

// proof verifies the request's one DPoP header for method and htu.
func (s *Server) proof(r *http.Request, htu string) (Proof, error) {
	values := r.Header.Values("DPoP")
	var p Proof
	var err error
	if len(values) == 1 {
		p, err = Verify(values[0], time.Now())
	}
	switch {
	case len(values) != 1:
		err = fmt.Errorf("%d DPoP headers", len(values))
	case err != nil:
	case p.HTM != r.Method:
		err = fmt.Errorf("htm %q, want %q", p.HTM, r.Method)
	case p.HTU != htu:
		err = fmt.Errorf("htu %q, want %q", p.HTU, htu)
	case s.jtis[p.JTI]:
		err = fmt.Errorf("jti %q replayed", p.JTI)
	}
	if err != nil {
		s.failures = append(s.failures, err.Error())
		return Proof{}, err
	}
	s.jtis[p.JTI] = true
	return p, nil
}

// token is the token endpoint (RFC 9449 §5, §8).
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	p, err := s.proof(r, s.TokenURL())
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_dpop_proof", err.Error())
		return
	}
	if s.TokenNonce && (s.tokenNonce == "" || p.Nonce != s.tokenNonce) {
		s.tokenNonce = random()
		w.Header().Set("DPoP-Nonce", s.tokenNonce)
		oauthError(w, http.StatusBadRequest, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof")
		return
	}
	s.tokenProofs = append(s.tokenProofs, p)
	answer := map[string]any{"access_token": random(), "token_type": "DPoP", "expires_in": 3600}
	switch r.PostFormValue("grant_type") {
	case "client_credentials":
	case "authorization_code":
		// §10: the code is not bound to a key here (no dpop_jkt was sent
		// with the authorization request); the tokens are, to this proof's.
		if !s.codes[r.PostFormValue("code")] {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown code")
			return
		}
		delete(s.codes, r.PostFormValue("code"))
		answer["refresh_token"] = random()
	case "refresh_token":
		// §5: a refresh token is bound to the key it was issued to
		old := r.PostFormValue("refresh_token")
		if jkt, ok := s.bound[old]; !ok || jkt != p.JKT {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown refresh token, or not bound to this key")
			return
		}
		delete(s.bound, old) // rotated
		answer["refresh_token"] = random()
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
		return
	}
	if s.AnswerBearer {
		answer["token_type"] = "Bearer"
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if tok, ok := answer[k].(string); ok {
			s.bound[tok] = p.JKT
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(answer)
}

// authorize approves at once: a redirect to the client's redirect_uri with
// a code and its state (RFC 6749 §4.1.2).
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := random()
	s.codes[code] = true
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

// Grant issues a refresh token bound to jkt, as a login would have.
func (s *Server) Grant(jkt string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := random()
	s.bound[tok] = jkt
	return tok
}

// api is the resource server (RFC 9449 §7).
func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	const scheme = "DPoP "
	auth := r.Header.Get("Authorization")
	if len(auth) <= len(scheme) || auth[:len(scheme)] != scheme {
		challenge(w, "invalid_request", "DPoP token required")
		return
	}
	tok := auth[len(scheme):]
	p, err := s.proof(r, s.URL+r.URL.EscapedPath())
	call := APICall{Proof: p, Token: tok, Header: r.Header.Clone()}
	switch {
	case err != nil:
		call.Status = challenge(w, "invalid_dpop_proof", err.Error())
	case p.ATH != ATH(tok):
		call.Status = challenge(w, "invalid_dpop_proof", "ath is not the hash of the token")
	case s.bound[tok] == "" || s.bound[tok] != p.JKT:
		call.Status = challenge(w, "invalid_token", "unknown token, or not bound to the proof's key")
	case s.APINonce && (s.apiNonce == "" || p.Nonce != s.apiNonce):
		s.apiNonce = random()
		w.Header().Set("DPoP-Nonce", s.apiNonce)
		call.Status = challenge(w, "use_dpop_nonce", "Resource server requires nonce in DPoP proof")
	case s.reject > 0:
		s.reject--
		delete(s.bound, tok)
		call.Status = challenge(w, "invalid_token", "revoked")
	default:
		if s.APINonce {
			s.apiNonce = random()
			w.Header().Set("DPoP-Nonce", s.apiNonce)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, "{\"path\":%q}\n", r.URL.Path)
		call.Status = http.StatusOK
	}
	s.apiCalls = append(s.apiCalls, call)
}

func challenge(w http.ResponseWriter, code, description string) int {
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`DPoP algs="ES256 RS256 EdDSA", error=%q, error_description=%q`, code, description))
	w.WriteHeader(http.StatusUnauthorized)
	return http.StatusUnauthorized
}

func oauthError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func random() string { return rand.Text() }
