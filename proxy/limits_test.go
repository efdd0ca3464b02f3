package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestInboundSecret(t *testing.T) {
	f := newFixture(t, nil)
	h := f.proxy.Config.Handler.(*Handler)
	h.SetInboundSecret("open-sesame")
	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"none", nil, 401},
		{"wrong", map[string]string{"Proxy-Authorization": "Bearer open-sesamE"}, 401},
		{"prefix of it", map[string]string{"Proxy-Authorization": "Bearer open"}, 401},
		{"Proxy-Authorization", map[string]string{"Proxy-Authorization": "Bearer open-sesame"}, 200},
		{"Authorization", map[string]string{"Authorization": "bearer open-sesame"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(t, "GET", f.proxy.URL+"/api/me", "")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, body := do(t, req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body, tt.status)
			}
			if tt.status == 401 && (!strings.Contains(body, "inbound_credential_required") || resp.Header.Get("WWW-Authenticate") == "") {
				t.Fatalf("401 without the JSON reason: %q %v", body, resp.Header)
			}
		})
	}
	for _, got := range f.up.requests() {
		if strings.Contains(got.Auth, "sesame") || got.Header.Get("Proxy-Authorization") != "" {
			t.Fatalf("the inbound secret was forwarded: %+v", got.Header)
		}
	}
	h.SetInboundSecret("") // a reload that removes it
	if resp, _ := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", "")); resp.StatusCode != 200 {
		t.Fatalf("with no secret: %d", resp.StatusCode)
	}
}

func TestLimitsAnswerWithJSON(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path == "/slow" {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, func(o *Options) {
		o.MaxHeaderBytes, o.MaxBodyBytes, o.RequestTimeout, o.RetryBodyLimit = 2048, 100, 100*time.Millisecond, 10
	})
	chunked := newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", "")
	chunked.Body, chunked.ContentLength = io.NopCloser(strings.NewReader(strings.Repeat("x", 500))), -1
	big := newReq(t, "GET", f.proxy.URL+"/api/me", "")
	big.Header.Set("X-Big", strings.Repeat("a", 3000))
	tests := []struct {
		name   string
		req    *http.Request
		status int
		code   string
	}{
		{"header too large", big, 431, "header_too_large"},
		{"body too large by its length", newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", strings.Repeat("x", 500)), 413, "body_too_large"},
		{"chunked body too large", chunked, 413, "body_too_large"},
		{"request too slow", newReq(t, "GET", f.proxy.URL+"/slow", ""), 504, "upstream_timeout"},
		{"within every limit", newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", strings.Repeat("x", 50)), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := do(t, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tt.status)
			}
			var p problem
			if tt.code != "" && (json.Unmarshal([]byte(body), &p) != nil || p.Error != tt.code) {
				t.Fatalf("body %q, want error %q", body, tt.code)
			}
		})
	}
}
