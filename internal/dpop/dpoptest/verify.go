// Package dpoptest checks DPoP proofs (RFC 9449) for tests with go-jose, an
// implementation of JOSE that owes nothing to internal/dpop's, and serves
// a DPoP authorization server and resource server that bind their tokens
// to the proof's key and check every proof.
package dpoptest

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Proof is what a verified proof says.
type Proof struct {
	JKT   string // go-jose's RFC 7638 thumbprint of the header's jwk, base64url
	Alg   string
	JTI   string
	HTM   string
	HTU   string
	IAT   time.Time
	ATH   string
	Nonce string
}

// algs are the algorithms a proof may be signed with here.
var algs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// MaxSkew is how far a proof's iat may be from now.
const MaxSkew = 60 * time.Second

// Verify checks a DPoP header value as RFC 9449 §4.3 asks: one JWS whose
// header has typ dpop+jwt, an asymmetric alg and a public jwk, whose
// signature verifies with that jwk, and whose claims have jti, htm, htu and
// an iat within MaxSkew of now.
func Verify(value string, now time.Time) (Proof, error) {
	jws, err := jose.ParseSignedCompact(value, algs)
	if err != nil {
		return Proof{}, fmt.Errorf("go-jose does not parse the proof as a compact JWS: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return Proof{}, fmt.Errorf("%d signatures", len(jws.Signatures))
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return Proof{}, fmt.Errorf("typ %q, want dpop+jwt", typ)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		return Proof{}, errors.New("no public jwk in the header")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return Proof{}, fmt.Errorf("the signature does not verify with the header's jwk: %v", err)
	}
	var c struct {
		JTI   string   `json:"jti"`
		HTM   string   `json:"htm"`
		HTU   string   `json:"htu"`
		IAT   *float64 `json:"iat"`
		ATH   string   `json:"ath"`
		Nonce string   `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return Proof{}, fmt.Errorf("claims: %v", err)
	}
	if c.JTI == "" || c.HTM == "" || c.HTU == "" || c.IAT == nil {
		return Proof{}, fmt.Errorf("claims %s lack jti, htm, htu or iat", payload)
	}
	iat := time.Unix(int64(*c.IAT), 0)
	if d := iat.Sub(now); d < -MaxSkew || d > MaxSkew {
		return Proof{}, fmt.Errorf("iat %v is %v from now", iat, d)
	}
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return Proof{}, err
	}
	return Proof{JKT: base64.RawURLEncoding.EncodeToString(tp), Alg: h.Algorithm,
		JTI: c.JTI, HTM: c.HTM, HTU: c.HTU, IAT: iat, ATH: c.ATH, Nonce: c.Nonce}, nil
}

// ATH is the ath of a proof sent with token: base64url(SHA-256(token)).
func ATH(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Thumbprint is go-jose's RFC 7638 thumbprint of pub, base64url.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	b, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	return base64.RawURLEncoding.EncodeToString(b), err
}
