// Command dpopupstream is the benchmark's upstream for coop-proxy with
// DPoP on (row (e) of bench/run.sh): the COOP emulator takes only Bearer
// tokens, so this stands in for it. Its token endpoint (POST /token) issues
// client-credentials tokens bound to the key of the request's DPoP proof
// (RFC 9449 §5, §6); every other path is COOP's eggs-count answer, given
// only to a DPoP token with a proof of its key (§7) that go-jose verifies
// (dpoptest.Verify) and whose htm, htu and ath match the request. It takes
// any client id and secret: the bench measures the proxy, not the client's
// authentication.
package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coop-proxy/coop-proxy/bench/benchserve"
	"github.com/coop-proxy/coop-proxy/internal/dpop/dpoptest"
)

// eggsBody is COOP's answer to POST /api/{id}/eggs-count, as bench/upstream's.
const eggsBody = `{"action":"eggs-count","success":true,"message":"You have collected a total of 3 eggs today","data":3}`

type server struct {
	mu    sync.Mutex
	bound map[string]string // access token → jkt
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18085", "address to serve on (loopback)")
	flag.Parse()
	s := &server{bound: map[string]string{}}
	err := benchserve.Run(*listen, s, func(addr net.Addr) {
		log.Printf("dpopupstream: DPoP token endpoint and API on http://%s", addr)
	})
	if err != nil {
		log.Fatalf("dpopupstream: %v", err)
	}
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	htu := "http://" + r.Host + r.URL.EscapedPath()
	p, err := dpoptest.Verify(r.Header.Get("DPoP"), time.Now())
	if err == nil && (p.HTM != r.Method || p.HTU != htu) {
		err = errWrongRequest
	}
	if r.URL.Path == "/token" {
		s.token(w, p, err)
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "DPoP ")
	s.mu.Lock()
	jkt := s.bound[tok]
	s.mu.Unlock()
	if err != nil || !ok || jkt == "" || p.JKT != jkt || p.ATH != dpoptest.ATH(tok) {
		w.Header().Set("WWW-Authenticate", `DPoP error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(eggsBody))
}

var errWrongRequest = errors.New("the proof's htm or htu is not the request's")

func (s *server) token(w http.ResponseWriter, p dpoptest.Proof, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_dpop_proof"}`))
		return
	}
	tok := rand.Text()
	s.mu.Lock()
	s.bound[tok] = p.JKT
	s.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "DPoP", "expires_in": 3600})
}
