// Package dpop makes coop-proxy's tokens sender-constrained with DPoP
// (RFC 9449): the key a grant's tokens are bound to, the proofs sent with
// every token request and every forwarded request, and the nonces servers
// ask proofs to carry.
//
// A proof is a JWS built on the standard library (clientauth.Key signs
// it); the tests check every proof with an independent implementation
// (go-jose).
package dpop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
)

// Key is a DPoP key pair: the client's private key, its public JWK and
// the protected header of its proofs, encoded once. It never prints its
// private part (clientauth.Key's String: algorithm and thumbprint).
type Key struct {
	key    *clientauth.Key
	header string // base64url of {"typ":"dpop+jwt","alg":...,"jwk":...}
}

// NewKey makes a Key of k.
func NewKey(k *clientauth.Key) *Key {
	// RFC 9449 §4.2: typ "dpop+jwt", an asymmetric alg, and jwk, the public
	// key the server binds the token to. Built by hand, as the JWK is
	// already JSON.
	h := `{"typ":"dpop+jwt","alg":"` + k.Alg() + `","jwk":` + k.PublicJWK() + `}`
	return &Key{key: k, header: base64.RawURLEncoding.EncodeToString([]byte(h))}
}

// Generate makes a new ES256 (P-256) key: the default when no key file is
// set.
func Generate() *Key { return NewKey(clientauth.GenerateES256()) }

// JKT is the key's RFC 7638 thumbprint, which a server binds tokens to
// (RFC 9449 §6.1 cnf.jkt).
func (k *Key) JKT() string { return k.key.Thumbprint() }

// String describes the key without its private part.
func (k *Key) String() string { return "DPoP " + k.key.String() }

// claims are a proof's claims (RFC 9449 §4.2).
type claims struct {
	JTI   string `json:"jti"`             // unique per proof: servers refuse a replay (§11.1)
	HTM   string `json:"htm"`             // the request's method
	HTU   string `json:"htu"`             // the request's URL, without query and fragment
	IAT   int64  `json:"iat"`             // when it was made: servers accept proofs only briefly
	ATH   string `json:"ath,omitempty"`   // with an access token: base64url(SHA-256(token))
	Nonce string `json:"nonce,omitempty"` // the server's, when it asked for one (§8, §9)
}

// Proof makes a proof for a request of method to htu (see HTU) at now,
// carrying nonce when not "", and, for a request to a resource server, the
// hash of accessToken (RFC 9449 §4.2 ath; "" for the token endpoint).
func (k *Key) Proof(method, htu, accessToken, nonce string, now time.Time) (string, error) {
	var jti [16]byte // 128 bits from crypto/rand: never repeats in practice
	_, _ = rand.Read(jti[:])
	c := claims{JTI: base64.RawURLEncoding.EncodeToString(jti[:]), HTM: method, HTU: htu, IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken)) // §4.2: of the ASCII octets of the token
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	return k.key.Sign(k.header, b)
}

// HTU is a proof's htu for a request to u: u without query and fragment
// (RFC 9449 §4.2), nor user info, which no request line carries.
func HTU(u *url.URL) string {
	var b strings.Builder
	b.Grow(len(u.Scheme) + len(u.Host) + len(u.EscapedPath()) + 3)
	b.WriteString(strings.ToLower(u.Scheme))
	b.WriteString("://")
	b.WriteString(strings.ToLower(u.Host))
	b.WriteString(u.EscapedPath())
	return b.String()
}
