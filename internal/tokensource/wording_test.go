package tokensource

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Token failures name the token endpoint, not COOP: coop-proxy talks to any
// authorization server, and a user of another one must not be sent to COOP.
// The advice stays what it was.
func TestTokenFailuresNameTheTokenEndpointNotCOOP(t *testing.T) {
	resp := &http.Response{StatusCode: 400}
	for code, want := range map[string]string{
		"invalid_client": `the token endpoint rejected the client credentials of "app" (invalid_client) (the token endpoint said "client must authenticate with client_secret_basic, not client_secret_post"): check the client id, its secret (or key, or certificate) and the auth style`,
		"invalid_grant":  `the token endpoint refused the stored grant (expired or revoked) (the token endpoint said "client must authenticate with client_secret_basic, not client_secret_post"): run ` + "`coop-proxy login`" + ` to log in again`,
		"invalid_scope":  `the token endpoint refused the requested scopes for "app" (the token endpoint said "client must authenticate with client_secret_basic, not client_secret_post"): ask only for scopes the application has`,
	} {
		err := classify(&oauth2.RetrieveError{Response: resp, ErrorCode: code,
			ErrorDescription: "client must authenticate with client_secret_basic, not client_secret_post"}, "app", "s3cret")
		if err.Description != want {
			t.Errorf("%s:\n got %s\nwant %s", code, err.Description, want)
		}
	}

	// A refresh token refused once is not sent again; the answer says so
	// in the same words.
	s := &Stored{}
	_, err := s.fetch(context.Background(), nil, tokenstore.Record{RefreshToken: "rt-1", RefusedRefresh: tokenstore.RefusedHash("rt-1")}, true)
	if err == nil || strings.Contains(err.Error(), "COOP") || !strings.Contains(err.Error(), "the token endpoint refused the stored grant") {
		t.Errorf("a dead refresh token: %v", err)
	}
}
