package tokensource

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

func TestClassify(t *testing.T) {
	resp := &http.Response{StatusCode: 400}
	tests := []struct {
		name      string
		err       error
		want      Code
		keepCause bool // only a cause that holds nothing of the answer
	}{
		{"invalid_client", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_client"}, ClientRejected, false},
		{"invalid_grant", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_grant"}, LoginRequired, false},
		{"invalid_scope", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_scope"}, ScopeRejected, false},
		{"500 without a code", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 500}, Body: []byte("secret-looking body")}, Unavailable, false},
		{"timeout", context.DeadlineExceeded, Unavailable, true},
		{"refused", errors.New("dial tcp: connection refused"), Unavailable, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify(tt.err, "Brent's Lazy CRON Job")
			if got.Code != tt.want {
				t.Fatalf("code %q, want %q", got.Code, tt.want)
			}
			if strings.Contains(got.Error(), "secret-looking") {
				t.Fatalf("error text carries the response body: %q", got.Error())
			}
			if errors.Is(got, tt.err) != tt.keepCause {
				t.Fatalf("cause kept for errors.Is: %v, want %v", !tt.keepCause, tt.keepCause)
			}
		})
	}
}

func TestClassifyKeepsOnlyRFC6749ErrorCodesAndCleanDescriptions(t *testing.T) {
	tests := []struct {
		code, description string
		want, wantNot     string
	}{
		{"invalid_client", "Client authentication failed", `(invalid_client) (the token endpoint said "Client authentication failed")`, ""},
		{"unsupported_grant_type", "", "with error unsupported_grant_type", ""},
		{"redirect_uri_mismatch", "The redirect URI is missing", `with error outside RFC 6749 §5.2 (the token endpoint said "The redirect URI is missing")`, "redirect_uri_mismatch"},
		{"invalid_request", "token 834401f20deb9ba7ee94615b5ceedf1aba2187f1 is bad", `said "token [redacted] is bad"`, "834401f2"},
		{"invalid_request", "secret hunter2 and hunter2%2B1 given", `said "secret [redacted] and [redacted] given"`, "hunter2"},
		{"invalid_request", "a\"quote\\ and\nnewline \x00 é", `said "a quote and newline"`, ""},
		{"invalid_request", strings.Repeat("word ", 100), "word ...", strings.Repeat("word ", 30)},
	}
	for _, tt := range tests {
		err := classify(&oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: tt.code, ErrorDescription: tt.description}, "Brent's Lazy CRON Job", "hunter2+1", "hunter2")
		if !strings.Contains(err.Description, tt.want) || tt.wantNot != "" && strings.Contains(err.Description, tt.wantNot) {
			t.Errorf("%s %q: description %q, want it to contain %q and not %q", tt.code, tt.description, err.Description, tt.want, tt.wantNot)
		}
	}
}
