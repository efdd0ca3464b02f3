package dpop

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Nonces keeps the last DPoP-Nonce each server gave (RFC 9449 §8, §9), by
// origin: a proof to that server carries it. Safe for concurrent use; its
// zero value is empty and ready.
type Nonces struct {
	m sync.Map // origin → nonce
}

// maxNonce bounds a kept nonce: a server's nonce is an opaque value of a
// few dozen characters, and each proof carries it.
const maxNonce = 1024

// Get returns the nonce for the server of u, or "".
func (n *Nonces) Get(u *url.URL) string {
	if v, ok := n.m.Load(origin(u)); ok {
		return v.(string)
	}
	return ""
}

// Observe keeps the DPoP-Nonce of a response from the server of u, when it
// carries one: a server may give a fresh one with any response (§8.2), not
// only with the error that asks for it. It reports whether it kept one.
func (n *Nonces) Observe(u *url.URL, h http.Header) bool {
	v := h.Get("DPoP-Nonce")
	if !validNonce(v) {
		return false
	}
	n.m.Store(origin(u), v)
	return true
}

// validNonce: RFC 9449 §8.1 nonce = 1*NQCHAR, NQCHAR = %x21 / %x23-5B /
// %x5D-7E; anything else is not kept (it would be sent back in proofs).
func validNonce(v string) bool {
	if v == "" || len(v) > maxNonce {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// origin is the server a nonce belongs to: scheme and host, lower-cased.
func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}
