package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/dpop/dpoptest"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// dpopSource hands out one token, bound to a key it generated.
type dpopSource struct{ rec tokenstore.Record }

func newDPoPSource() *dpopSource {
	s := &dpopSource{rec: tokenstore.Record{AccessToken: "dpop-token-0123456789", TokenType: "DPoP", Expiry: time.Now().Add(time.Hour)}}
	(&dpop.Keys{}).Bind(&s.rec, dpop.Generate())
	return s
}

func (s *dpopSource) Token(context.Context, string) (tokenstore.Record, error) { return s.rec, nil }

func withDPoP(src *dpopSource) func(*Options) {
	return func(o *Options) {
		cache := &tokensource.Cache{Source: src, Margin: time.Minute, DPoP: &dpop.Keys{}}
		o.Tokens = cache
	}
}

const useNonce = `DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`

// COOP's demand for a nonce (RFC 9449 §9) is answered by sending the
// request again, body and all, with a proof carrying the nonce, and the
// same token.
func TestDPoPNonceDemandIsAnsweredOnceWithTheBody(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("WWW-Authenticate", useNonce)
			w.Header().Set("DPoP-Nonce", "nonce-1")
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, withDPoP(newDPoPSource()))
	resp, body := do(t, newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect?x=1", "payload=1"))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	got := f.up.requests()
	if len(got) != 2 || got[1].Body != "payload=1" || got[1].Auth != "DPoP dpop-token-0123456789" {
		t.Fatalf("upstream saw %+v", got)
	}
	for i, want := range []string{"", "nonce-1"} {
		p, err := dpoptest.Verify(got[i].Header.Get("DPoP"), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if p.Nonce != want || p.HTM != "POST" || p.HTU != f.up.URL+"/api/1/eggs-collect" || p.ATH != dpoptest.ATH("dpop-token-0123456789") {
			t.Errorf("proof %d: %+v", i, p)
		}
	}
}

// A second demand, after the nonce was sent, is not answered again: 503
// use_dpop_nonce, and the next request carries the newest nonce.
func TestDPoPNonceDemandedTwiceGives503(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n <= 2 {
			w.Header().Set("WWW-Authenticate", useNonce)
			w.Header().Set("DPoP-Nonce", strings.Repeat("n", n))
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, withDPoP(newDPoPSource()))
	resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
	var p problem
	if resp.StatusCode != 503 || json.Unmarshal([]byte(body), &p) != nil || p.Error != "use_dpop_nonce" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	if resp, _ := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", "")); resp.StatusCode != 200 {
		t.Fatalf("next request: %d", resp.StatusCode)
	}
	got := f.up.requests()
	if proof, err := dpoptest.Verify(got[2].Header.Get("DPoP"), time.Now()); err != nil || proof.Nonce != "nn" {
		t.Fatalf("third request's proof %+v, %v", proof, err)
	}
}

// The proof names the URL sent to COOP: the upstream's own path prefix
// included, the query left out.
func TestDPoPProofNamesTheUpstreamURL(t *testing.T) {
	f := newFixture(t, nil, withDPoP(newDPoPSource()), func(o *Options) {
		u, _ := url.Parse(o.Upstream.String() + "/prefix")
		o.Upstream = u
	})
	if resp, _ := do(t, newReq(t, "DELETE", f.proxy.URL+"/api/x%2Fy?access_token=no&q=1", "")); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := f.up.requests()[0]
	p, err := dpoptest.Verify(got.Header.Get("DPoP"), time.Now())
	if err != nil || p.HTM != "DELETE" || p.HTU != f.up.URL+"/prefix/api/x%2Fy" || got.RawQuery != "q=1" {
		t.Fatalf("proof %+v (%v) for a request to %s?%s", p, err, got.Path, got.RawQuery)
	}
}
