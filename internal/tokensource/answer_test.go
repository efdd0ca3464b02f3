package tokensource

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// An expires_in that x/oauth2 cannot read as a whole number (a fraction, an
// exponent, a value over int64, a string that is not a number) must not make
// the whole answer unusable: with rotating refresh tokens, an answer thrown
// away is the farmer's grant lost (the refresh token just sent is dead, the
// new one is in the answer). RecordFromToken's clamping decides.
func TestOddExpiresInOnTheWireKeepsTheToken(t *testing.T) {
	for name, tt := range map[string]struct {
		expiresIn string
		want      time.Duration // 0: unknown
	}{
		"an integer":             {`3600`, time.Hour},
		"a whole float":          {`3600.0`, time.Hour},
		"a fraction":             {`3600.7`, time.Hour},
		"an exponent":            {`3.6e3`, time.Hour},
		"over int64":             {`99999999999999999999999`, maxLifetime},
		"over float64":           {`1e400`, maxLifetime},
		"a string":               {`"3600"`, time.Hour},
		"a fraction in a string": {`"3600.5"`, time.Hour},
		"an unparsable string":   {`"soon"`, minLifetime},
		"an empty string":        {`""`, 0},
		"a boolean":              {`true`, minLifetime},
		"an object":              {`{"secs":3600}`, minLifetime},
		"negative":               {`-5`, minLifetime},
		"null":                   {`null`, 0},
	} {
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"at-new","token_type":"bearer","refresh_token":"rt-new","expires_in":`+tt.expiresIn+`}`)
		})
		for _, g := range []Grant{ccGrant(srv.URL, nil, oauth2.AuthStyleInParams), refreshGrant(srv.URL, NewHTTPClient(time.Minute))} {
			now := time.Now()
			rec, err := g.Fetch(context.Background(), tokenstore.Record{RefreshToken: testRefresh}, true)
			if err != nil {
				t.Errorf("%s, %s: %v; want the token", name, g.Key().GrantType, err)
				continue
			}
			if rec.AccessToken != "at-new" || rec.RefreshToken != "rt-new" {
				t.Errorf("%s, %s: got access %q, refresh %q", name, g.Key().GrantType, rec.AccessToken, rec.RefreshToken)
			}
			if tt.want == 0 {
				if !rec.Expiry.IsZero() {
					t.Errorf("%s, %s: expiry in %v, want unknown", name, g.Key().GrantType, rec.Expiry.Sub(now))
				}
				continue
			}
			if got := rec.Expiry.Sub(now); got < tt.want-time.Second || got > tt.want+time.Second {
				t.Errorf("%s, %s: lifetime %v, want %v", name, g.Key().GrantType, got, tt.want)
			}
		}
	}
}

// A token the proxy could not send as a bearer token (RFC 6750 §2.1) is no
// token: a type other than Bearer (RFC 6749 §7.1: a client must not use a
// token of a type it does not understand), or an access token with
// characters a header cannot carry or that would change its meaning.
func TestTokensThatCannotBeSentAsBearerAreRefused(t *testing.T) {
	for name, body := range map[string]string{
		"mac":                      `{"access_token":"abc","token_type":"mac","expires_in":3600}`,
		"type echoing the secret":  `{"access_token":"abc","token_type":"` + testSecret + `","expires_in":3600}`,
		"CRLF in the token":        `{"access_token":"abc\r\nX-Evil: 1","token_type":"Bearer","expires_in":3600}`,
		"space in the token":       `{"access_token":"abc def","token_type":"Bearer","expires_in":3600}`,
		"control in refresh token": `{"access_token":"abc","refresh_token":"r\u0000t","token_type":"Bearer","expires_in":3600}`,
	} {
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, body)
		})
		for grant, err := range fetchBoth(t, srv.URL, nil) {
			te := asError(t, err)
			if te.Code != Unavailable || strings.Contains(te.Error(), testSecret) || strings.Contains(te.Error(), "\n") {
				t.Errorf("%s, %s: %q; want %s, one line, no secret", name, grant, err, Unavailable)
			}
		}
	}
	// Bearer in any case, or no type at all (COOP always sends one), is fine.
	for _, typ := range []string{`"Bearer"`, `"bearer"`, `"BEARER"`, `""`, `null`} {
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"a-b.c_d~e+f/g==","token_type":`+typ+`,"expires_in":3600}`)
		})
		if _, err := ccGrant(srv.URL, nil, oauth2.AuthStyleInParams).Fetch(context.Background(), tokenstore.Record{}, false); err != nil {
			t.Errorf("token_type %s: %v", typ, err)
		}
	}
}

// A token request that carried a DPoP proof wants a DPoP token (RFC 9449
// §5), its type in any case; a Bearer answer means the provider does not
// do DPoP for this client, and is refused in one line; a request without a
// proof still refuses a DPoP token.
func TestDPoPTokenRequestsWantDPoPTokens(t *testing.T) {
	ctx := dpop.WithKey(context.Background(), dpop.Generate())
	for typ, want := range map[string]string{
		`"DPoP"`: "", `"dpop"`: "", `"DPOP"`: "",
		`"Bearer"`: "the provider does not support DPoP for this client",
		`""`:       "coop-proxy wants DPoP", `"mac"`: "coop-proxy wants DPoP",
	} {
		srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"abc","token_type":`+typ+`,"expires_in":3600}`)
		})
		_, err := ccGrant(srv.URL, nil, oauth2.AuthStyleInParams).Fetch(ctx, tokenstore.Record{}, false)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("token_type %s: %v, want %q", typ, err, want)
		}
		if typ == `"DPoP"` {
			if _, err := ccGrant(srv.URL, nil, oauth2.AuthStyleInParams).Fetch(context.Background(), tokenstore.Record{}, false); err == nil {
				t.Error("a DPoP token was taken for a request without a proof")
			}
		}
	}
}
