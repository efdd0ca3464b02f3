package login

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWhoAmI(t *testing.T) {
	const token = "834401f20deb9ba7ee94615b5ceedf1aba2187f1"
	tests := []struct {
		name   string
		status int
		body   string
		id     int64
		email  string
		code   string // APIError.Code wanted; "" with id 0 = another error
	}{
		{"a farmer", http.StatusOK, `{"id":7,"email":"brent@example.com","firstName":"Brent","lastName":"Farmer"}`, 7, "brent@example.com", ""},
		{"an unknown token", http.StatusUnauthorized, `{"error":"invalid_token","error_description":"The access token provided is invalid"}`, 0, "", "invalid_token"},
		{"no profile scope", http.StatusUnauthorized, `{"error":"insufficient_scope","error_description":"The request requires higher privileges than provided by the access token"}`, 0, "", "insufficient_scope"},
		{"an error with status 200 (COOP quirk)", http.StatusOK, `{"error":"access_denied","error_description":"an access token is required"}`, 0, "", "access_denied"},
		{"an HTML error page", http.StatusBadGateway, `<html>bad gateway</html>`, 0, "", ""},
		{"not JSON", http.StatusOK, `<html>hello</html>`, 0, "", ""},
		{"no id", http.StatusOK, `{"email":"brent@example.com"}`, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/me" || r.Header.Get("Authorization") != "Bearer "+token {
					t.Errorf("request %s %q", r.URL.Path, r.Header.Get("Authorization"))
				}
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			id, email, err := WhoAmI(t.Context(), srv.Client(), srv.URL+"/", token)
			if tt.id != 0 {
				if err != nil || id != tt.id || email != tt.email {
					t.Fatalf("WhoAmI = %d, %q, %v", id, email, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("WhoAmI = %d, %q, want an error", id, email)
			}
			var ae *APIError
			if tt.code != "" && (!errors.As(err, &ae) || ae.Code != tt.code) {
				t.Errorf("err = %v, want an APIError %s", err, tt.code)
			}
			if strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q", err)
			}
		})
	}
}
