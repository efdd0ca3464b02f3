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
		name string
		err  error
		want Code
	}{
		{"invalid_client", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_client"}, ClientRejected},
		{"invalid_grant", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_grant"}, LoginRequired},
		{"invalid_scope", &oauth2.RetrieveError{Response: resp, ErrorCode: "invalid_scope"}, ScopeRejected},
		{"500 without a code", &oauth2.RetrieveError{Response: &http.Response{StatusCode: 500}, Body: []byte("secret-looking body")}, Unavailable},
		{"timeout", context.DeadlineExceeded, Unavailable},
		{"refused", errors.New("dial tcp: connection refused"), Unavailable},
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
			if !errors.Is(got, tt.err) {
				t.Fatal("cause not kept for errors.Is")
			}
		})
	}
}
