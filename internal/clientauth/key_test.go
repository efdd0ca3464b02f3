package clientauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
)

// testKeys are one key of each kind, made once: RSA generation is slow
// under the race detector.
var testKeys = sync.OnceValue(func() map[string]crypto.Signer {
	r, _ := rsa.GenerateKey(rand.Reader, 2048)
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, d, _ := ed25519.GenerateKey(rand.Reader)
	return map[string]crypto.Signer{RS256: r, ES256: e, EdDSA: d}
})

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkcs8(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func TestParseKeyReadsEveryPEMFormOfTheThreeAlgorithms(t *testing.T) {
	keys := testKeys()
	ecDER, _ := x509.MarshalECPrivateKey(keys[ES256].(*ecdsa.PrivateKey))
	// What `openssl ecparam -name prime256v1 -genkey` writes: the curve's
	// parameters, then the SEC1 key.
	ecParams := pemOf("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
	for _, tt := range []struct {
		name, alg string
		pem       []byte
	}{
		{"RSA PKCS#8", RS256, pkcs8(t, keys[RS256])},
		{"RSA PKCS#1", RS256, pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(keys[RS256].(*rsa.PrivateKey)))},
		{"EC PKCS#8", ES256, pkcs8(t, keys[ES256])},
		{"EC SEC1 after EC PARAMETERS", ES256, append(ecParams, pemOf("EC PRIVATE KEY", ecDER)...)},
		{"Ed25519 PKCS#8", EdDSA, pkcs8(t, keys[EdDSA])},
		{"key after a certificate", ES256, append(pemOf("CERTIFICATE", []byte("not parsed")), pkcs8(t, keys[ES256])...)},
	} {
		k, err := ParseKey(tt.pem)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if k.Alg() != tt.alg {
			t.Errorf("%s: alg %s, want %s", tt.name, k.Alg(), tt.alg)
		}
		if want := clientauthtest.Thumbprint(t, keys[tt.alg].Public()); k.Thumbprint() != want {
			t.Errorf("%s: thumbprint %s, go-jose says %s", tt.name, k.Thumbprint(), want)
		}
	}
}

func TestParseKeyRefusesOtherKeysInOneLineWithoutTheirBytes(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00"}, Bytes: []byte("x")})
	pubDER, _ := x509.MarshalPKIXPublicKey(testKeys()[ES256].Public())
	for _, tt := range []struct {
		name string
		pem  []byte
		want string
	}{
		{"RSA 1024", pkcs8(t, small), "is an RSA key of 1024 bits: a signing key (private_key_jwt, DPoP) must be RSA of at least 2048 bits (RS256), EC P-256 (ES256) or Ed25519 (EdDSA)"},
		{"EC P-384", pkcs8(t, p384), "is an EC key on P-384: a signing key"},
		{"encrypted PKCS#8", pemOf("ENCRYPTED PRIVATE KEY", []byte("x")), "holds an encrypted private key"},
		{"encrypted PKCS#1", legacy, "holds an encrypted private key"},
		{"public key", pemOf("PUBLIC KEY", pubDER), "holds no PEM private key"},
		{"not PEM", []byte("-----BEGIN nothing"), "holds no PEM private key"},
		{"two keys", append(pkcs8(t, testKeys()[ES256]), pkcs8(t, testKeys()[EdDSA])...), "holds more than one private key"},
		{"broken DER", pemOf("PRIVATE KEY", []byte("MIIEvgIBADANBgkqhkiG9w0BAQEFAASC")), "has a PRIVATE KEY block that does not parse"},
	} {
		_, err := ParseKey(tt.pem)
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v; want one line with %q", tt.name, err, tt.want)
			continue
		}
		if b, _ := pem.Decode(tt.pem); b != nil && len(b.Bytes) > 8 && strings.Contains(err.Error(), base64.StdEncoding.EncodeToString(b.Bytes)[:12]) {
			t.Errorf("%s: the error holds the key's bytes: %v", tt.name, err)
		}
	}
}

func TestAKeyNeverPrintsItsPrivatePart(t *testing.T) {
	for alg, s := range testKeys() {
		k, err := ParseKey(pkcs8(t, s))
		if err != nil {
			t.Fatal(err)
		}
		var secret string
		switch s := s.(type) {
		case *rsa.PrivateKey:
			secret = s.D.String()[:20]
		case *ecdsa.PrivateKey:
			b, _ := s.Bytes()
			secret = fmt.Sprintf("%x", b)[:20]
		case ed25519.PrivateKey:
			secret = fmt.Sprintf("%v", []byte(s.Seed()))[:20]
		}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%d"} {
			out := fmt.Sprintf(verb, k)
			if strings.Contains(out, secret) || !strings.Contains(out, alg+" key "+k.Thumbprint()) {
				t.Errorf("%s %s prints %q", alg, verb, out)
			}
		}
	}
}
