package proxy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
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
		o.MaxHeaderBytes, o.MaxBodyBytes, o.Base, o.RetryBodyLimit = 2048, 100, NewTransport(100*time.Millisecond), 10
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

// A request refused before forwarding must not wait for a body that will not
// be read: net/http reads up to 256 KiB of it before sending the answer,
// unless the answer closes the connection. Each caller here announces more
// body than it sends.
func TestRefusalsDoNotWaitForTheBody(t *testing.T) {
	const post = "POST /api/1/eggs-collect HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	tests := []struct {
		name   string
		opts   func(*Options)
		secret bool
		head   string // request line and header fields, without Content-Length
		length int    // the Content-Length announced; 100 when 0
		status int
	}{
		{name: "inbound secret missing", secret: true, head: post, status: 401},
		{name: "header too large", opts: func(o *Options) { o.MaxHeaderBytes = 512 }, head: post + "X-Big: " + strings.Repeat("a", 600) + "\r\n", status: 431},
		{name: "body too large by its length", opts: func(o *Options) { o.MaxBodyBytes = 50 }, head: post, status: 413},
		{name: "CONNECT", head: "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n", status: 405},
		{name: "absolute URL for another host", head: "POST http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n", status: 400},
		{name: "admin path", head: "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", status: 404},
		{name: "rebound DNS name", head: "POST /api/1/eggs-collect HTTP/1.1\r\nHost: attacker.example\r\n", status: 403},
		{name: "browser request", head: post + "Origin: https://attacker.example\r\n", status: 403},
		{name: "query Go cannot parse", head: "POST /api/1/eggs-collect?a=%zz HTTP/1.1\r\nHost: 127.0.0.1\r\n", status: 400},
		{name: "form over the check limit", head: post + "Content-Type: application/x-www-form-urlencoded\r\n", length: 2 * formCheckLimit, status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*Options)
			if tt.opts != nil {
				opts = append(opts, tt.opts)
			}
			f := newFixture(t, nil, opts...)
			if tt.secret {
				f.proxy.Config.Handler.(*Handler).SetInboundSecret("open-sesame")
			}
			length := tt.length
			if length == 0 {
				length = 100
			}
			c, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			// generous: the answer is due at once, and never comes when the server waits for the body
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := fmt.Fprintf(c, "%sContent-Length: %d\r\n\r\nabcd", tt.head, length); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer while the announced body is not sent: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status || !resp.Close {
				t.Fatalf("status %d, Connection: close %v; want %d and close", resp.StatusCode, resp.Close, tt.status)
			}
			if n := len(f.up.requests()); n != 0 {
				t.Fatalf("%d requests reached COOP", n)
			}
		})
	}
}
