// Package clientauth authenticates coop-proxy, as an OAuth 2.0 client, to
// the token endpoint by other means than a client secret: a JWT signed
// with the client's private key (private_key_jwt: RFC 7523 §2.2, OpenID
// Connect Core §9) and a TLS client certificate (RFC 8705 §2).
//
// The JWS is built here by hand on the standard library: it is small, and
// the tests check it with an independent implementation (go-jose).
package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Key is a client's private key and the JWS algorithm it signs with. It
// never prints itself: fmt, %v and %#v included, shows only the algorithm
// and the public key's thumbprint.
type Key struct {
	signer     crypto.Signer
	alg        string // RFC 7518 §3.1 / RFC 8037 §3.1 "alg"
	jwk        string // the public key's required members (RFC 7638 §3.2)
	thumbprint string
}

// The algorithms a key signs with: RS256 for RSA, ES256 for EC P-256,
// EdDSA for Ed25519 (RFC 7518 §3.1, RFC 8037 §3.1), the ones every
// provider that takes private_key_jwt is asked to support.
const (
	RS256 = "RS256"
	ES256 = "ES256"
	EdDSA = "EdDSA"
)

// minRSABits is the least RSA modulus accepted: RFC 7518 §3.3 requires
// 2048 bits for RS256.
const minRSABits = 2048

// ParseKey reads a private key from PEM: PKCS#8 ("PRIVATE KEY"), PKCS#1
// ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). Other blocks (the "EC
// PARAMETERS" that `openssl ecparam -genkey` writes first, a certificate
// kept in the same file) are skipped. Its errors name what is wrong in one
// line and never hold the key's bytes.
func ParseKey(data []byte) (*Key, error) {
	var found *pem.Block
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if _, enc := b.Headers["DEK-Info"]; enc {
				return nil, errEncrypted
			}
			if found != nil {
				return nil, errors.New("holds more than one private key: keep only the one to sign with")
			}
			found = b
		case "ENCRYPTED PRIVATE KEY":
			return nil, errEncrypted
		}
	}
	if found == nil {
		return nil, errors.New("holds no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)")
	}
	var k any
	var err error
	switch found.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(found.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(found.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(found.Bytes)
	}
	if err != nil {
		// x509's messages describe the structure, never the key material.
		return nil, fmt.Errorf("has a %s block that does not parse: %v", found.Type, err)
	}
	return newKey(k)
}

var errEncrypted = errors.New("holds an encrypted private key: coop-proxy reads only unencrypted keys (decrypt it into a file only coop-proxy's user can read: openssl pkey -in KEY -out KEY.plain)")

// newKey accepts the keys of the three algorithms and nothing else.
func newKey(k any) (*Key, error) {
	const want = "a signing key (private_key_jwt, DPoP) must be RSA of at least 2048 bits (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)"
	var key *Key
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("is an RSA key of %d bits: %s", bits, want)
		}
		key = &Key{signer: k, alg: RS256}
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("is an EC key on %s: %s", k.Curve.Params().Name, want)
		}
		key = &Key{signer: k, alg: ES256}
	case ed25519.PrivateKey:
		key = &Key{signer: k, alg: EdDSA}
	default:
		return nil, fmt.Errorf("is a %T key: %s", k, want)
	}
	jwk, err := publicJWK(key.signer.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(jwk))
	key.jwk, key.thumbprint = jwk, base64.RawURLEncoding.EncodeToString(sum[:])
	return key, nil
}

// GenerateES256 makes a new EC P-256 key (a DPoP key pair, RFC 9449 §4.2).
func GenerateES256() *Key {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand never fails since Go 1.24
	}
	key, err := newKey(k)
	if err != nil {
		panic(err) // a P-256 key is always accepted
	}
	return key
}

// ParsePKCS8 reads a key as MarshalPKCS8 wrote it (DER, no PEM).
func ParsePKCS8(der []byte) (*Key, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("is not a PKCS#8 private key: %v", err)
	}
	return newKey(k)
}

// MarshalPKCS8 returns the private key as PKCS#8 DER: what a token store
// keeps of a generated key.
func (k *Key) MarshalPKCS8() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k.signer) }

// PublicJWK is the public key as a JWK (RFC 7517) holding only its required
// members, in the order of RFC 7638 §3.2: what a DPoP proof's header
// carries (RFC 9449 §4.2 "jwk").
func (k *Key) PublicJWK() string { return k.jwk }

// Alg is the JWS algorithm the key signs with.
func (k *Key) Alg() string { return k.alg }

// Thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the
// public key: the default "kid", and what tells two keys apart.
func (k *Key) Thumbprint() string { return k.thumbprint }

// String describes the key without its secret part.
func (k *Key) String() string {
	if k == nil {
		return "none"
	}
	return k.alg + " key " + k.thumbprint
}

// Format makes every fmt verb print String: the default %v of a struct
// would print the private key's numbers.
func (k *Key) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// publicJWK is the JSON of the public key's required members, in
// lexicographic order, without white space: RFC 7638 §3's input to the
// thumbprint (SHA-256 of it), and a valid JWK of the public key.
func publicJWK(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var jwk string
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		// RFC 7518 §6.3.1: n and e big-endian, without leading zeros.
		jwk = `{"e":"` + b64(big.NewInt(int64(pub.E)).Bytes()) + `","kty":"RSA","n":"` + b64(pub.N.Bytes()) + `"}`
	case *ecdsa.PublicKey:
		// RFC 7518 §6.2.1.2: x and y at the curve's full size (32 bytes),
		// as the uncompressed point encoding has them after its 0x04.
		ep, err := pub.ECDH()
		if err != nil {
			return "", fmt.Errorf("is not a usable EC P-256 key: %v", err)
		}
		p := ep.Bytes()[1:]
		jwk = `{"crv":"P-256","kty":"EC","x":"` + b64(p[:32]) + `","y":"` + b64(p[32:]) + `"}`
	case ed25519.PublicKey:
		// RFC 8037 §2 and §A.3.
		jwk = `{"crv":"Ed25519","kty":"OKP","x":"` + b64(pub) + `"}`
	}
	return jwk, nil
}
