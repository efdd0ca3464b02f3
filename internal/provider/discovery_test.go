package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// RFC 8414 §3.1 and its example; OpenID Connect Discovery §4.1.
func TestMetadataURLsInsertTheWellKnownPathAsEachSpecSays(t *testing.T) {
	for issuer, want := range map[string][2]string{
		"https://example.com": {"https://example.com/.well-known/oauth-authorization-server", "https://example.com/.well-known/openid-configuration"},
		"https://example.com/issuer1": {"https://example.com/.well-known/oauth-authorization-server/issuer1",
			"https://example.com/issuer1/.well-known/openid-configuration"},
		"https://example.com/realms/a/": {"https://example.com/.well-known/oauth-authorization-server/realms/a",
			"https://example.com/realms/a/.well-known/openid-configuration"},
		"http://127.0.0.1:8080/t%2Fx": {"http://127.0.0.1:8080/.well-known/oauth-authorization-server/t%2Fx",
			"http://127.0.0.1:8080/t%2Fx/.well-known/openid-configuration"},
	} {
		got, err := MetadataURLs(issuer)
		if err != nil || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("%s: %q, %v; want %q", issuer, got, err, want)
		}
	}
}

// idp serves documents at paths; every request is counted by path.
type idp struct {
	*httptest.Server
	docs map[string]string // path → body; "{issuer}" is replaced by the server's URL
	hits map[string]*atomic.Int32
}

func newIDP(t *testing.T, path string, docs map[string]string) *idp {
	t.Helper()
	p := &idp{docs: docs, hits: map[string]*atomic.Int32{}}
	for k := range docs {
		p.hits[k] = &atomic.Int32{}
	}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := p.docs[r.URL.EscapedPath()]
		if !ok {
			http.NotFound(w, r)
			return
		}
		p.hits[r.URL.EscapedPath()].Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, strings.ReplaceAll(body, "{issuer}", p.URL+path))
	}))
	t.Cleanup(p.Close)
	return p
}

const goodDoc = `{"issuer":"{issuer}","token_endpoint":"{issuer}/token","authorization_endpoint":"{issuer}/authorize",
	"device_authorization_endpoint":"{issuer}/device","token_endpoint_auth_methods_supported":["client_secret_basic","private_key_jwt"],
	"grant_types_supported":["client_credentials"],"mtls_endpoint_aliases":{"token_endpoint":"https://mtls.example/token"}}`

func TestFetchReadsRFC8414FirstThenOpenIDConnect(t *testing.T) {
	both := newIDP(t, "/tenant", map[string]string{
		"/.well-known/oauth-authorization-server/tenant": goodDoc,
		"/tenant/.well-known/openid-configuration":       strings.Replace(goodDoc, "{issuer}/token", "{issuer}/oidc-token", 1),
	})
	md, err := Fetch(context.Background(), NewHTTPClient(), both.URL+"/tenant")
	if err != nil {
		t.Fatal(err)
	}
	if md.TokenEndpoint != both.URL+"/tenant/token" || both.hits["/tenant/.well-known/openid-configuration"].Load() != 0 {
		t.Errorf("token endpoint %q: RFC 8414's document should be read first, and alone", md.TokenEndpoint)
	}
	if md.AuthorizationEndpoint != both.URL+"/tenant/authorize" || md.DeviceAuthorizationEndpoint != both.URL+"/tenant/device" ||
		len(md.TokenEndpointAuthMethodsSupported) != 2 || md.GrantTypesSupported[0] != "client_credentials" ||
		md.MTLSEndpointAliases["token_endpoint"] != "https://mtls.example/token" {
		t.Errorf("metadata not read whole: %+v", md)
	}

	oidcOnly := newIDP(t, "", map[string]string{"/.well-known/openid-configuration": goodDoc})
	md, err = Fetch(context.Background(), NewHTTPClient(), oidcOnly.URL)
	if err != nil || md.TokenEndpoint != oidcOnly.URL+"/token" {
		t.Fatalf("OpenID's document: %+v, %v", md, err)
	}
}

// RFC 8414 §3.3: the issuer in the document must be the one asked for,
// exactly (a trailing slash is another issuer); the other document is not
// tried then, and fetching again would not help.
func TestFetchRefusesADocumentForAnotherIssuer(t *testing.T) {
	for name, doc := range map[string]string{
		"another host":                 `{"issuer":"https://evil.example","token_endpoint":"https://evil.example/token"}`,
		"a trailing slash":             `{"issuer":"{issuer}/","token_endpoint":"{issuer}/token"}`,
		"no issuer at all":             `{"token_endpoint":"{issuer}/token"}`,
		"plain-http token":             `{"issuer":"{issuer}","token_endpoint":"http://idp.example/token"}`,
		"plain-http mTLS alias":        `{"issuer":"{issuer}","token_endpoint":"https://idp.example/token","mtls_endpoint_aliases":{"token_endpoint":"http://idp.example/mtls"}}`,
		"token with a user":            `{"issuer":"{issuer}","token_endpoint":"https://u:p@idp.example/token"}`,
		"plain-http mTLS device alias": `{"issuer":"{issuer}","token_endpoint":"https://idp.example/token","mtls_endpoint_aliases":{"device_authorization_endpoint":"http://idp.example/mtls"}}`,
	} {
		p := newIDP(t, "", map[string]string{"/.well-known/oauth-authorization-server": doc})
		_, err := Fetch(context.Background(), NewHTTPClient(), p.URL)
		if _, ok := errors.AsType[*DocumentError](err); !ok {
			t.Errorf("%s: %v; want a *DocumentError", name, err)
		}
		if strings.Contains(fmt.Sprint(err), "u:p@") {
			t.Errorf("%s: %v repeats credentials", name, err)
		}
	}
}

func TestFetchNeverFollowsARedirectAndBoundsTheDocument(t *testing.T) {
	elsewhere := newIDP(t, "", map[string]string{"/.well-known/oauth-authorization-server": goodDoc, "/.well-known/openid-configuration": goodDoc})
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusFound)
	}))
	defer redirecting.Close()
	if _, err := Fetch(context.Background(), NewHTTPClient(), redirecting.URL); err == nil || !strings.Contains(err.Error(), "HTTP 302") {
		t.Errorf("redirect: %v; want HTTP 302 refused", err)
	}
	if n := elsewhere.hits["/.well-known/oauth-authorization-server"].Load() + elsewhere.hits["/.well-known/openid-configuration"].Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}

	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"issuer":"`+strings.Repeat("x", maxDocument)+`"}`)
	}))
	defer huge.Close()
	if _, err := Fetch(context.Background(), NewHTTPClient(), huge.URL); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge document: %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The document is fetched once and kept; callers waiting while a fetch
// fails share its failure; Wait retries with growing, jittered waits.
func TestDiscoveryKeepsTheDocumentAndRetriesWithBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const issuer = "https://idp.example"
		var requests, failuresLeft atomic.Int32
		failuresLeft.Store(3)
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			if r.URL.Path != "/.well-known/openid-configuration" || failuresLeft.Load() > 0 {
				if r.URL.Path == "/.well-known/openid-configuration" {
					failuresLeft.Add(-1)
				}
				return &http.Response{StatusCode: 503, Body: http.NoBody, Request: r}, nil
			}
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(strings.ReplaceAll(goodDoc, "{issuer}", issuer))), Request: r}, nil
		})}
		d := NewDiscovery(issuer, client)
		start := time.Now()
		var waits []time.Duration
		md, err := d.Wait(t.Context(), func(err error, wait time.Duration) {
			if !strings.Contains(err.Error(), "HTTP 503") {
				t.Errorf("failure reported as %v", err)
			}
			waits = append(waits, wait)
		})
		if err != nil || md.TokenEndpoint != issuer+"/token" {
			t.Fatalf("%+v, %v", md, err)
		}
		if len(waits) != 3 || waits[0] < 500*time.Millisecond || waits[0] > time.Second ||
			waits[1] < time.Second || waits[1] > 2*time.Second || waits[2] < 2*time.Second || waits[2] > 4*time.Second {
			t.Errorf("waits %v; want three, in [0.5,1] s, [1,2] s, [2,4] s", waits)
		}
		if took := time.Since(start); took < waits[0]+waits[1]+waits[2] {
			t.Errorf("took %v, less than the waits", took)
		}
		before := requests.Load()
		for range 3 {
			if again, err := d.Metadata(t.Context()); err != nil || again != md {
				t.Fatalf("again: %v", err)
			}
		}
		if requests.Load() != before {
			t.Errorf("the document was fetched again: %d requests", requests.Load()-before)
		}
	})
}

func TestWaitStopsAtADocumentThatCannotBeUsed(t *testing.T) {
	p := newIDP(t, "", map[string]string{"/.well-known/oauth-authorization-server": `{"issuer":"https://elsewhere.example"}`})
	_, err := NewDiscovery(p.URL, nil).Wait(t.Context(), func(err error, _ time.Duration) { t.Errorf("retried after %v", err) })
	if _, ok := errors.AsType[*DocumentError](err); !ok {
		t.Fatalf("%v; want a *DocumentError", err)
	}
}

func TestCheckURLWantsHTTPSOrLoopback(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://idp.example/x": true, "http://127.0.0.1:9/x": true, "http://[::1]/": true, "http://localhost:8080": true,
		"http://idp.example/x": false, "https://idp.example/x#f": false, "https://u:p@idp.example": false, "/token": false, "idp.example": false,
	} {
		if err := CheckURL(u); (err == nil) != ok {
			t.Errorf("%s: %v, want ok=%v", u, err, ok)
		}
	}
}

// Whatever a metadata document holds, Fetch returns either an error or
// metadata for the issuer asked for, whose endpoints pass CheckURL.
func FuzzFetchDocument(f *testing.F) {
	const issuer = "https://idp.example/t"
	f.Add(strings.ReplaceAll(goodDoc, "{issuer}", issuer))
	f.Add(`{"issuer":"https://idp.example/t","token_endpoint":"javascript:alert(1)"}`)
	f.Add(`{"issuer":"https://idp.example/t","authorization_endpoint":"https://a.example/#x"}`)
	f.Add(`{"issuer":["https://idp.example/t"]}`)
	f.Add(`null`)
	f.Fuzz(func(t *testing.T, doc string) {
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(doc)), Request: r}, nil
		})}
		md, err := Fetch(context.Background(), client, issuer)
		if err != nil {
			return
		}
		if md.Issuer != issuer {
			t.Fatalf("metadata for %q accepted", md.Issuer)
		}
		for _, e := range []string{md.TokenEndpoint, md.AuthorizationEndpoint, md.DeviceAuthorizationEndpoint} {
			if e != "" && CheckURL(e) != nil {
				t.Fatalf("endpoint %q accepted", e)
			}
		}
	})
}

// A host that answers RFC 8414's address with another issuer's document
// (its root issuer's, whatever the path inserted, as some servers do) while
// OpenID Connect's address has the issuer's own: the refused document is
// not used (RFC 8414 §3.3), and the other address, checked as strictly,
// is read.
func TestARefusedDocumentDoesNotStopTheOtherAddress(t *testing.T) {
	p := newIDP(t, "/tenant", map[string]string{
		"/.well-known/oauth-authorization-server/tenant": `{"issuer":"https://root.example","token_endpoint":"https://root.example/token"}`,
		"/tenant/.well-known/openid-configuration":       goodDoc,
	})
	md, err := Fetch(context.Background(), NewHTTPClient(), p.URL+"/tenant")
	if err != nil || md.Issuer != p.URL+"/tenant" || md.TokenEndpoint != p.URL+"/tenant/token" {
		t.Fatalf("%+v, %v; want OpenID Connect's document", md, err)
	}
}
