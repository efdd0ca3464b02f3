package dpop_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/dpop/dpoptest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// fileKey makes a key as DPOP_KEY_FILE would hold it.
func fileKey(t *testing.T, k any) *dpop.Key {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	key, err := clientauth.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return dpop.NewKey(key)
}

func TestProofsVerifyWithGoJoseForEveryAlgorithm(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	u, _ := url.Parse("https://API.example.com:8443/v1/eggs%20count?access_token=x&a=b#frag")
	for _, tc := range []struct {
		alg string
		key *dpop.Key
	}{{"ES256", dpop.Generate()}, {"ES256", fileKey(t, ec)}, {"RS256", fileKey(t, rs)}, {"EdDSA", fileKey(t, ed)}} {
		t.Run(tc.alg, func(t *testing.T) {
			now := time.Now()
			jtis := map[string]bool{}
			for range 50 {
				v, err := tc.key.Proof(http.MethodPatch, dpop.HTU(u), "the-access-token", "nonce-1", now)
				if err != nil {
					t.Fatal(err)
				}
				p, err := dpoptest.Verify(v, now)
				if err != nil {
					t.Fatal(err)
				}
				if p.Alg != tc.alg || p.HTM != "PATCH" || p.HTU != "https://api.example.com:8443/v1/eggs%20count" ||
					p.ATH != dpoptest.ATH("the-access-token") || p.Nonce != "nonce-1" || p.IAT.Unix() != now.Unix() {
					t.Fatalf("proof %+v", p)
				}
				if p.JKT != tc.key.JKT() {
					t.Fatalf("go-jose's thumbprint %s, the key's JKT %s", p.JKT, tc.key.JKT())
				}
				if jtis[p.JTI] {
					t.Fatalf("jti %s repeated", p.JTI)
				}
				jtis[p.JTI] = true
			}
		})
	}
}

func TestTokenEndpointProofHasNoATHNorNonceUnlessAsked(t *testing.T) {
	v, err := dpop.Generate().Proof(http.MethodPost, "https://as.example.com/token", "", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := dpoptest.Verify(v, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p.ATH != "" || p.Nonce != "" {
		t.Fatalf("proof %+v", p)
	}
}

// postToken sends a client-credentials token request through tr.
func postToken(t *testing.T, tr http.RoundTripper, ctx context.Context, tokenURL string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL+"?ignored=1", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestTokenTransportSendsTheNonceTheServerAsksFor(t *testing.T) {
	srv := dpoptest.NewServer(t)
	srv.TokenNonce = true
	key := dpop.Generate()
	tr := &dpop.TokenTransport{Base: http.DefaultTransport}
	resp := postToken(t, tr, dpop.WithKey(context.Background(), key), srv.TokenURL())
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s; failures %q", resp.StatusCode, body, srv.Failures())
	}
	proofs := srv.TokenProofs()
	if len(proofs) != 1 || proofs[0].Nonce == "" || proofs[0].JKT != key.JKT() || proofs[0].HTU != srv.TokenURL() {
		t.Fatalf("accepted proofs %+v", proofs)
	}
	// the nonce is kept: the next request carries it at once
	resp = postToken(t, tr, dpop.WithKey(context.Background(), key), srv.TokenURL())
	if resp.StatusCode != http.StatusOK || len(srv.TokenProofs()) != 2 {
		t.Fatalf("status %d, proofs %+v", resp.StatusCode, srv.TokenProofs())
	}
}

func TestTokenTransportAsksOnceForANonce(t *testing.T) {
	asked := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked++
		w.Header().Set("DPoP-Nonce", "n"+strings.Repeat("x", asked))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"use_dpop_nonce"}`)
	}))
	defer srv.Close()
	resp := postToken(t, &dpop.TokenTransport{Base: http.DefaultTransport}, dpop.WithKey(context.Background(), dpop.Generate()), srv.URL+"/token")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || asked != 2 || !strings.Contains(string(body), "use_dpop_nonce") {
		t.Fatalf("status %d after %d requests, body %s", resp.StatusCode, asked, body)
	}
}

func TestTokenTransportWithoutAKeyAddsNoProof(t *testing.T) {
	srv := dpoptest.NewServer(t)
	resp := postToken(t, &dpop.TokenTransport{Base: http.DefaultTransport}, context.Background(), srv.TokenURL())
	if resp.StatusCode != http.StatusBadRequest || len(srv.Failures()) != 1 || srv.Failures()[0] != "0 DPoP headers" {
		t.Fatalf("status %d, failures %q", resp.StatusCode, srv.Failures())
	}
}

func TestNoncesAreKeptPerServerAndChecked(t *testing.T) {
	var n dpop.Nonces
	a, _ := url.Parse("https://a.example.com/token")
	a2, _ := url.Parse("HTTPS://A.example.com/api/x")
	b, _ := url.Parse("https://b.example.com/")
	for _, bad := range []string{"", "with space", `quote"`, "line\nbreak", strings.Repeat("n", 1025)} {
		if n.Observe(a, http.Header{"Dpop-Nonce": {bad}}) {
			t.Errorf("nonce %q kept", bad)
		}
	}
	if !n.Observe(a, http.Header{"Dpop-Nonce": {"eyJ7S_zG.eyJH0-Z.HX4w-7v"}}) || n.Get(a2) != "eyJ7S_zG.eyJH0-Z.HX4w-7v" || n.Get(b) != "" {
		t.Fatalf("a: %q, b: %q", n.Get(a2), n.Get(b))
	}
}

func TestKeysBindAGrantToItsKeyForItsLife(t *testing.T) {
	keys := &dpop.Keys{}
	first := keys.For(tokenstore.Record{}, false)
	rec := tokenstore.Record{AccessToken: "a", TokenType: "DPoP"}
	keys.Bind(&rec, first)
	if rec.DPoPJKT != first.JKT() || len(rec.DPoPKey) == 0 {
		t.Fatalf("bound record %v", rec)
	}
	// the record goes through the store's file format, as after a restart
	data, err := tokenstore.Encode(map[string]tokenstore.Record{"k": rec})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "PRIVATE") || !strings.Contains(string(data), `"dpop_key"`) {
		t.Fatalf("file %s", data)
	}
	m, err := tokenstore.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	got, err := keys.Of(m["k"])
	if err != nil || got.JKT() != first.JKT() {
		t.Fatalf("key after a restart: %v, %v", got, err)
	}
	if again := keys.For(m["k"], true); again.JKT() != first.JKT() {
		t.Fatal("a refresh of the grant got another key")
	}
	if other := keys.For(tokenstore.Record{}, false); other.JKT() == first.JKT() {
		t.Fatal("a new grant reused the key")
	}
	shown, _ := json.Marshal(rec)
	b64 := base64.StdEncoding.EncodeToString(rec.DPoPKey)
	for _, s := range []string{rec.String(), fmt.Sprintf("%#v", rec), string(shown)} {
		if strings.Contains(s, b64) || strings.Contains(s, string(rec.DPoPKey)) || !strings.Contains(s, "held") {
			t.Fatalf("the record shows its key: %s", s)
		}
	}
}

func TestKeysRefuseTokensTheyCannotSend(t *testing.T) {
	fk := fileKey(t, mustEC(t))
	bound := tokenstore.Record{AccessToken: "a", TokenType: "DPoP"}
	(&dpop.Keys{}).Bind(&bound, dpop.Generate())
	fileBound := tokenstore.Record{AccessToken: "a", TokenType: "DPoP"}
	(&dpop.Keys{File: fk}).Bind(&fileBound, fk)
	lost := bound
	lost.DPoPKey = nil // an older binary's rewrite
	bearer := tokenstore.Record{AccessToken: "a", TokenType: "Bearer"}
	for _, tc := range []struct {
		name string
		keys *dpop.Keys
		rec  tokenstore.Record
		ok   bool
	}{
		{"off, bearer", nil, bearer, true},
		{"off, bound", nil, bound, false},
		{"off, DPoP type without a key", nil, tokenstore.Record{AccessToken: "a", TokenType: "dpop"}, false},
		{"on, bearer", &dpop.Keys{}, bearer, false},
		{"on, bound", &dpop.Keys{}, bound, true},
		{"on, key lost", &dpop.Keys{}, lost, false},
		{"key file, bound to it", &dpop.Keys{File: fk}, fileBound, true},
		{"key file, bound to another", &dpop.Keys{File: fk}, bound, false},
		{"key file replaced", &dpop.Keys{File: fileKey(t, mustEC(t))}, fileBound, false},
	} {
		if _, err := tc.keys.Of(tc.rec); (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	if len(fileBound.DPoPKey) != 0 {
		t.Error("the key file's key was copied into the store")
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A DPoP-Nonce header is outside input sent back in every proof: only an
// RFC 9449 §8.1 nonce (NQCHAR, bounded) is kept, anything else is dropped.
func FuzzNonceObserve(f *testing.F) {
	for _, seed := range []string{"eyJ7S_zG.eyJH0-Z.HX4w-7v", "", "a b", `"q"`, "\x00", "ünï", strings.Repeat("n", 1024)} {
		f.Add(seed)
	}
	u, _ := url.Parse("https://as.example.com/token")
	f.Fuzz(func(t *testing.T, v string) {
		var n dpop.Nonces
		kept := n.Observe(u, http.Header{"Dpop-Nonce": {v}})
		if got := n.Get(u); kept != (got != "") || kept && got != v {
			t.Fatalf("Observe(%q) = %v, Get = %q", v, kept, got)
		}
		if !kept {
			return
		}
		if len(v) > 1024 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x21 || r > 0x7e || r == '"' || r == '\\' }) {
			t.Fatalf("kept %q", v)
		}
	})
}
