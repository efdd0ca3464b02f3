// Package clientauthtest checks, for tests, the client authentication a
// token request carries, with go-jose: an implementation of JOSE that owes
// nothing to clientauth's, so a mistake made on both sides of one
// misreading cannot pass.
package clientauthtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Want is what a client assertion must say.
type Want struct {
	Public   crypto.PublicKey
	Alg      string // RS256, ES256 or EdDSA
	KeyID    string
	ClientID string
	Audience string
	Now      time.Time // the assertion's iat must be within a few seconds of it
}

// Check verifies the private_key_jwt authentication of a token request
// whose form has been parsed (r.ParseForm): the assertion's type, alg, kid,
// signature and every claim (RFC 7523 §3, OpenID Connect Core §9), and that
// no client secret is sent, neither in the form nor with HTTP Basic. It
// returns the assertion's jti.
func Check(r *http.Request, w Want) (jti string, err error) {
	if got := r.PostForm.Get("client_assertion_type"); got != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return "", fmt.Errorf("client_assertion_type %q", got)
	}
	if _, ok := r.PostForm["client_secret"]; ok {
		return "", errors.New("a client_secret was sent with the assertion")
	}
	if _, _, ok := r.BasicAuth(); ok || r.Header.Get("Authorization") != "" {
		return "", errors.New("an Authorization header was sent with the assertion")
	}
	if id, ok := r.PostForm["client_id"]; ok && (len(id) != 1 || id[0] != w.ClientID) {
		return "", fmt.Errorf("client_id %q", id)
	}
	if n := len(r.PostForm["client_assertion"]); n != 1 {
		return "", fmt.Errorf("%d client_assertion fields", n)
	}
	tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(w.Alg)})
	if err != nil {
		return "", fmt.Errorf("go-jose does not parse the assertion as a %s JWS: %v", w.Alg, err)
	}
	if len(tok.Headers) != 1 || tok.Headers[0].KeyID != w.KeyID {
		return "", fmt.Errorf("kid %q, want %q", tok.Headers[0].KeyID, w.KeyID)
	}
	var c jwt.Claims
	if err := tok.Claims(w.Public, &c); err != nil {
		return "", fmt.Errorf("go-jose does not verify the signature: %v", err)
	}
	// w.Now is taken when the test begins: once a second has begun since,
	// iat (whole seconds) is after it, which go-jose calls "issued in the
	// future" without leeway; it gets the same 5 s as the check of iat below.
	if err := c.ValidateWithLeeway(jwt.Expected{
		Issuer: w.ClientID, Subject: w.ClientID, AnyAudience: jwt.Audience{w.Audience}, Time: w.Now,
	}, 5*time.Second); err != nil {
		return "", fmt.Errorf("claims %+v: %v", c, err)
	}
	if len(c.Audience) != 1 {
		return "", fmt.Errorf("aud %v, want only %q", c.Audience, w.Audience)
	}
	if c.IssuedAt == nil || c.Expiry == nil {
		return "", fmt.Errorf("iat %v, exp %v: both are required", c.IssuedAt, c.Expiry)
	}
	iat, exp := c.IssuedAt.Time(), c.Expiry.Time()
	if d := iat.Sub(w.Now); d < -5*time.Second || d > 5*time.Second {
		return "", fmt.Errorf("iat %v, %v from now", iat, d)
	}
	if life := exp.Sub(iat); life <= 0 || life > 60*time.Second {
		return "", fmt.Errorf("the assertion lives %v, want at most 60s", life)
	}
	// RFC 7523 §3 item 7 and OIDC Core §9: unique; 128 bits at least.
	if raw, err := base64.RawURLEncoding.DecodeString(c.ID); err != nil || len(raw) < 16 {
		return "", fmt.Errorf("jti %q is not 128 random bits or more", c.ID)
	}
	return c.ID, nil
}

// Thumbprint is go-jose's RFC 7638 thumbprint of pub, base64url: the kid
// an assertion names unless told otherwise.
func Thumbprint(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	b, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// SelfSigned makes a self-signed client certificate (EC P-256) valid from
// notBefore to notAfter, as PEM: the certificate and its PKCS#8 key.
func SelfSigned(t testing.TB, name string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	k, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: k})
}
