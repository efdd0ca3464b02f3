package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"time"
)

// AssertionType is the client_assertion_type of a JWT client assertion
// (RFC 7523 §2.2).
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long an assertion is valid after it is made.
// It is made for one request, sent at once; a short life bounds its replay
// (RFC 7523 §3 item 4, OpenID Connect Core §9: "exp").
const AssertionLifetime = 60 * time.Second

// claims are the assertion's claims (RFC 7523 §3, OpenID Connect Core §9).
type claims struct {
	Iss string `json:"iss"` // the client id (§3 item 1; OIDC: REQUIRED)
	Sub string `json:"sub"` // the client id again: the client authenticates as itself (§3 item 2)
	Aud string `json:"aud"` // the token endpoint, or what the provider asks for (§3 item 3)
	Jti string `json:"jti"` // unique, so the server can refuse a replay (§3 item 7; OIDC: REQUIRED)
	Iat int64  `json:"iat"` // §3 item 6
	Exp int64  `json:"exp"` // §3 item 4
}

// header is the JWS protected header (RFC 7515 §4.1).
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid,omitempty"`
	Typ string `json:"typ"`
}

// Assertion makes a fresh signed client assertion for clientID to send to
// aud, issued at now: a JWS in compact serialization (RFC 7515 §7.1) with
// kid in its header.
func (k *Key) Assertion(clientID, aud, kid string, now time.Time) (string, error) {
	jti := make([]byte, 16) // 128 bits from crypto/rand: never repeats in practice
	_, _ = rand.Read(jti)   // never fails since Go 1.24: it crashes the program instead
	h, err := json.Marshal(header{Alg: k.alg, Kid: kid, Typ: "JWT"})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims{
		Iss: clientID, Sub: clientID, Aud: aud,
		Jti: base64.RawURLEncoding.EncodeToString(jti),
		Iat: now.Unix(), Exp: now.Add(AssertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	return k.Sign(base64.RawURLEncoding.EncodeToString(h), c)
}

// Sign returns the compact JWS (RFC 7515 §7.1) of claims under a protected
// header already encoded (base64url): a key signs many JWS with one header
// (DPoP proofs: RFC 9449 §4.2), which is then encoded once.
func (k *Key) Sign(header string, claims []byte) (string, error) {
	input := header + "." + base64.RawURLEncoding.EncodeToString(claims)
	sig, err := k.sign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// sign makes the JWS signature of input (RFC 7515 §5.1 step 5) with the
// key's algorithm.
func (k *Key) sign(input []byte) ([]byte, error) {
	switch s := k.signer.(type) {
	case ed25519.PrivateKey:
		// RFC 8037 §3.1: Ed25519 signs the message itself, not a digest.
		return ed25519.Sign(s, input), nil
	case *ecdsa.PrivateKey:
		// RFC 7518 §3.4: ES256 is R and S, 32 bytes each, concatenated;
		// not the ASN.1 DER that crypto.Signer gives.
		digest := sha256.Sum256(input)
		r, sv, err := ecdsa.Sign(rand.Reader, s, digest[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		sv.FillBytes(sig[32:])
		return sig, nil
	default:
		// RS256: RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
		digest := sha256.Sum256(input)
		return k.signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	}
}
