package tokensource

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// A token endpoint that records every request's form and Accept header.
type recorder struct {
	mu     sync.Mutex
	forms  []url.Values
	accept []string
}

func (rc *recorder) record(r *http.Request) {
	_ = r.ParseForm()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.forms = append(rc.forms, r.PostForm)
	rc.accept = append(rc.accept, r.Header.Get("Accept"))
}

func (rc *recorder) last() (url.Values, string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.forms[len(rc.forms)-1], rc.accept[len(rc.accept)-1]
}

// RFC 8707 resource (several), audience and further parameters reach the
// token endpoint on client credentials and on a refresh (RFC 8707 §2.2
// allows resource there), never displacing what the grant sets.
func TestParamsAreSentOnEveryTokenRequest(t *testing.T) {
	rc := &recorder{}
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		rc.record(r)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
	})
	params := url.Values{"resource": {"https://a.example/", "https://b.example/"}, "audience": {"https://api.example"},
		"organization": {"acme"}, "grant_type": {"password"}}
	cc := ccGrant(srv.URL, NewHTTPClient(time.Minute), oauth2.AuthStyleInParams)
	cc.Params = params
	rf := refreshGrant(srv.URL, nil) // no client given: the parameters are sent all the same
	rf.Params = params
	for name, g := range map[string]Grant{"client credentials": cc, "refresh": rf} {
		if _, err := g.Fetch(context.Background(), tokenstore.Record{RefreshToken: testRefresh}, true); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		form, accept := rc.last()
		if got := form["resource"]; len(got) != 2 || got[0] != "https://a.example/" || got[1] != "https://b.example/" {
			t.Errorf("%s: resource %q", name, got)
		}
		if form.Get("audience") != "https://api.example" || form.Get("organization") != "acme" || form.Get("client_id") == "" {
			t.Errorf("%s: form %v", name, form)
		}
		if want := map[string]string{"client credentials": "client_credentials", "refresh": "refresh_token"}[name]; form.Get("grant_type") != want || len(form["grant_type"]) != 1 {
			t.Errorf("%s: grant_type %q: the grant's own parameter was displaced", name, form["grant_type"])
		}
		if accept != "application/json" {
			t.Errorf("%s: Accept %q", name, accept)
		}
	}
}

// Tokens for other resources or audiences are other tokens: another key.
// Without parameters the key is what it always was.
func TestParamsAreInTheStoreKey(t *testing.T) {
	plain := ccGrant("https://idp.example/token", nil, oauth2.AuthStyleInParams)
	if plain.Key().String() != ClientCredentialsKey("https://idp.example/token", plain.Config.ClientID, nil).String() || plain.Key().Params != "" {
		t.Errorf("key without parameters changed: %v", plain.Key())
	}
	keys := map[string]bool{}
	for _, p := range []url.Values{nil, {"audience": {"a"}}, {"audience": {"b"}}, {"resource": {"https://x/", "https://y/"}}} {
		g := ccGrant("https://idp.example/token", nil, oauth2.AuthStyleInParams)
		g.Params = p
		r := refreshGrant("https://idp.example/token", nil)
		r.Params = p
		keys[g.Key().String()], keys[r.Key().String()] = true, true
	}
	if len(keys) != 8 {
		t.Errorf("%d distinct keys, want 8: %v", len(keys), keys)
	}
	if ParamsKey(url.Values{"resource": {"https://y/", "https://x/"}}) != ParamsKey(url.Values{"resource": {"https://x/", "https://y/", "https://x/"}}) {
		t.Error("the order or repetition of resources changes the key")
	}
}

// How real providers answer: GitHub answers a form unless asked for JSON,
// its classic tokens carry no expires_in, servers give expires_in as a
// string and token_type in any case (RFC 6749 §5.1: case-insensitive), and
// a refresh may come without a new refresh token (RFC 6749 §6: keep the
// old one).
func TestRealProvidersManners(t *testing.T) {
	for _, tt := range []struct {
		name        string
		contentType string
		body        string
		life        time.Duration // 0: unknown
		refresh     string        // the refresh token recorded after a refresh sending testRefresh
	}{
		{"GitHub, asked for JSON, no expires_in", "application/json", `{"access_token":"gho_x","token_type":"bearer","scope":"repo"}`, 0, testRefresh},
		{"GitHub's form, when not asked", "application/x-www-form-urlencoded", `access_token=gho_x&scope=repo&token_type=bearer`, 0, testRefresh},
		{"a form with expires_in", "application/x-www-form-urlencoded; charset=utf-8", `access_token=t&token_type=Bearer&expires_in=3600&refresh_token=r2`, time.Hour, "r2"},
		{"text/plain form", "text/plain", `access_token=t&token_type=BEARER&expires_in=7200`, 2 * time.Hour, testRefresh},
		{"expires_in as a string", "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":"3600"}`, time.Hour, testRefresh},
		{"token_type Bearer, new refresh token", "application/json", `{"access_token":"t","token_type":"Bearer","expires_in":3600,"refresh_token":"r2"}`, time.Hour, "r2"},
	} {
		rc := &recorder{}
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			rc.record(r)
			w.Header().Set("Content-Type", tt.contentType)
			_, _ = io.WriteString(w, tt.body)
		})
		for _, g := range []Grant{ccGrant(srv.URL, NewHTTPClient(time.Minute), oauth2.AuthStyleInParams), refreshGrant(srv.URL, NewHTTPClient(time.Minute))} {
			grant := g.Key().GrantType
			now := time.Now()
			rec, err := g.Fetch(context.Background(), tokenstore.Record{RefreshToken: testRefresh}, true)
			if err != nil {
				t.Errorf("%s, %s: %v", tt.name, grant, err)
				continue
			}
			if _, accept := rc.last(); accept != "application/json" {
				t.Errorf("%s, %s: Accept %q", tt.name, grant, accept)
			}
			if rec.AccessToken == "" || !strings.EqualFold(rec.TokenType, "bearer") {
				t.Errorf("%s, %s: %v", tt.name, grant, rec)
			}
			if got := rec.Expiry; (tt.life == 0) != got.IsZero() || (tt.life != 0 && (got.Sub(now) < tt.life-time.Second || got.Sub(now) > tt.life+time.Second)) {
				t.Errorf("%s, %s: expiry in %v, want %v (0: unknown)", tt.name, grant, got.Sub(now), tt.life)
			}
			if grant == "authorization_code" && rec.RefreshToken != tt.refresh {
				t.Errorf("%s: refresh token %q, want %q", tt.name, rec.RefreshToken, tt.refresh)
			}
			if tt.name == "GitHub's form, when not asked" && strings.Join(rec.Scopes, " ") != "repo" {
				t.Errorf("%s, %s: scopes %q", tt.name, grant, rec.Scopes)
			}
		}
	}
}

// A GitHub-style error: HTTP 200 with an error in a form.
func TestAnErrorAnsweredWith200AndAFormIsAnError(t *testing.T) {
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = io.WriteString(w, `error=incorrect_client_credentials&error_description=The+client_id+and%2For+client_secret+passed+are+incorrect.`)
	})
	for grant, err := range fetchBoth(t, srv.URL, NewHTTPClient(time.Minute)) {
		if te := asError(t, err); te.Code != Unavailable || !strings.Contains(te.Description, "outside RFC 6749 §5.2") {
			t.Errorf("%s: %v", grant, err)
		}
	}
}

// A refresh answer whose scope the store file cannot hold (a control
// character, bytes that are not UTF-8: a form answer is not decoded as
// JSON is) must not make its rotated refresh token unwritable: kept only
// in memory, the grant would be lost at the next restart. Such a scope is
// no RFC 6749 §3.3 scope; the scopes held before are kept.
func TestAGrantedScopeTheStoreCannotHoldDoesNotStopTheWrite(t *testing.T) {
	for name, answer := range map[string][2]string{
		"an escape in JSON": {"application/json", `{"access_token":"t","token_type":"Bearer","refresh_token":"r2","scope":"read\u001b[2Jwrite"}`},
		"a NUL in JSON":     {"application/json", `{"access_token":"t","token_type":"Bearer","refresh_token":"r2","scope":"read\u0000"}`},
		"not UTF-8, a form": {"application/x-www-form-urlencoded", `access_token=t&token_type=bearer&refresh_token=r2&scope=repo+%FF`},
	} {
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", answer[0])
			_, _ = io.WriteString(w, answer[1])
		})
		rec, err := refreshGrant(srv.URL, NewHTTPClient(time.Minute)).Fetch(context.Background(),
			tokenstore.Record{RefreshToken: testRefresh, Scopes: []string{"read"}}, true)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := tokenstore.Encode(map[string]tokenstore.Record{"k": rec}); err != nil || rec.RefreshToken != "r2" {
			t.Errorf("%s: scopes %q, refresh token %q: the store cannot write it: %v", name, rec.Scopes, rec.RefreshToken, err)
		}
	}
}
