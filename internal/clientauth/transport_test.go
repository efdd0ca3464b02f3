package clientauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/clientauth/clientauthtest"
)

// tokenEndpoint is a token endpoint that checks each request's client
// assertion with go-jose against want (its Audience filled in with the
// endpoint's URL when empty) and answers a token; checked records each
// request's jti or failure.
type tokenEndpoint struct {
	*httptest.Server
	mu     sync.Mutex
	jtis   []string
	grants []string
	errs   []error
}

func newTokenEndpoint(t *testing.T, want clientauthtest.Want) *tokenEndpoint {
	te := &tokenEndpoint{}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		wt := want
		if wt.Audience == "" {
			wt.Audience = te.URL + "/token"
		}
		jti, err := clientauthtest.Check(r, wt)
		te.mu.Lock()
		te.jtis, te.grants, te.errs = append(te.jtis, jti), append(te.grants, r.PostForm.Get("grant_type")), append(te.errs, err)
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600,"refresh_token":"rt2"}`)
	}))
	t.Cleanup(te.Close)
	return te
}

func keyFor(t *testing.T, alg string) (*clientauth.Key, crypto.PublicKey) {
	t.Helper()
	var s crypto.Signer
	switch alg {
	case clientauth.RS256:
		s, _ = rsa.GenerateKey(rand.Reader, 2048)
	case clientauth.ES256:
		s, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case clientauth.EdDSA:
		_, s, _ = ed25519.GenerateKey(rand.Reader)
	}
	der, err := x509.MarshalPKCS8PrivateKey(s)
	if err != nil {
		t.Fatal(err)
	}
	k, err := clientauth.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return k, s.Public()
}

// Every token request x/oauth2 makes (client credentials, refresh, code
// exchange), with AuthStyleInParams and no secret, goes out with a fresh
// assertion that go-jose verifies, and with no secret at all.
func TestEveryTokenRequestCarriesAFreshAssertionGoJoseVerifies(t *testing.T) {
	const clientID = "Brent's Lazy CRON Job"
	for _, alg := range []string{clientauth.RS256, clientauth.ES256, clientauth.EdDSA} {
		t.Run(alg, func(t *testing.T) {
			key, pub := keyFor(t, alg)
			te := newTokenEndpoint(t, clientauthtest.Want{Public: pub, Alg: alg, KeyID: key.Thumbprint(), ClientID: clientID, Now: time.Now()})
			client := &http.Client{Transport: &clientauth.AssertionTransport{Base: http.DefaultTransport, Key: key, ClientID: clientID}}
			ctx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
			endpoint := oauth2.Endpoint{TokenURL: te.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}

			cc := &clientcredentials.Config{ClientID: clientID, TokenURL: endpoint.TokenURL, AuthStyle: endpoint.AuthStyle}
			for range 2 {
				if _, err := cc.Token(ctx); err != nil {
					t.Fatal(err)
				}
			}
			code := &oauth2.Config{ClientID: clientID, Endpoint: endpoint}
			if _, err := code.Exchange(ctx, "the-code"); err != nil {
				t.Fatal(err)
			}
			if _, err := code.TokenSource(ctx, &oauth2.Token{RefreshToken: "rt"}).Token(); err != nil {
				t.Fatal(err)
			}

			te.mu.Lock()
			defer te.mu.Unlock()
			want := []string{"client_credentials", "client_credentials", "authorization_code", "refresh_token"}
			if len(te.grants) != len(want) {
				t.Fatalf("grants %v", te.grants)
			}
			seen := map[string]bool{}
			for i, err := range te.errs {
				if te.grants[i] != want[i] {
					t.Errorf("request %d: grant %q, want %q", i, te.grants[i], want[i])
				}
				if err != nil {
					t.Errorf("request %d (%s): %v", i, te.grants[i], err)
				}
				if seen[te.jtis[i]] {
					t.Errorf("request %d: jti %q used again", i, te.jtis[i])
				}
				seen[te.jtis[i]] = true
			}
		})
	}
}

// The audience and key id settings replace the defaults (some providers
// want the issuer as aud, and a kid they assigned).
func TestAudienceAndKeyIDOverrideTheDefaults(t *testing.T) {
	key, pub := keyFor(t, clientauth.ES256)
	const aud, kid = "https://idp.example.com/realms/farm", "key-2026"
	te := newTokenEndpoint(t, clientauthtest.Want{Public: pub, Alg: clientauth.ES256, KeyID: kid, ClientID: "app", Audience: aud, Now: time.Now()})
	client := &http.Client{Transport: &clientauth.AssertionTransport{Base: http.DefaultTransport, Key: key, KeyID: kid, ClientID: "app", Audience: aud}}
	cc := &clientcredentials.Config{ClientID: "app", TokenURL: te.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}
	if _, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, client)); err != nil {
		t.Fatal(err)
	}
	if te.errs[0] != nil {
		t.Fatal(te.errs[0])
	}
}

// The assertion's times come from the injected clock.
func TestAssertionTimesFollowTheClock(t *testing.T) {
	key, pub := keyFor(t, clientauth.EdDSA)
	then := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	te := newTokenEndpoint(t, clientauthtest.Want{Public: pub, Alg: clientauth.EdDSA, KeyID: key.Thumbprint(), ClientID: "app", Now: then})
	client := &http.Client{Transport: &clientauth.AssertionTransport{Base: http.DefaultTransport, Key: key, ClientID: "app", Now: func() time.Time { return then }}}
	cc := &clientcredentials.Config{ClientID: "app", TokenURL: te.URL + "/token", AuthStyle: oauth2.AuthStyleInParams}
	if _, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, client)); err != nil {
		t.Fatal(err)
	}
	if te.errs[0] != nil {
		t.Fatal(te.errs[0])
	}
}

// Requests other than a form POST (login's GET of the authorization URL
// and of /api/me) pass untouched.
func TestOtherRequestsPassUntouched(t *testing.T) {
	key, _ := keyFor(t, clientauth.ES256)
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		got = r
	}))
	defer srv.Close()
	client := &http.Client{Transport: &clientauth.AssertionTransport{Base: http.DefaultTransport, Key: key, ClientID: "app"}}
	resp, err := client.Get(srv.URL + "/authorize?client_id=app")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Form.Has("client_assertion") {
		t.Fatal("a GET got an assertion")
	}
	resp, err = client.Post(srv.URL+"/api", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Form.Has("client_assertion") {
		t.Fatal("a JSON POST got an assertion")
	}
}
