package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

// A body too large to keep streams to COOP while it arrives. When the caller
// stops sending it (the server's read deadline, REQUEST_TIMEOUT in serve) or
// ends its side of the connection mid-body, net/http cancels the request's
// context: that must not be taken for a caller that went away, answered with
// nothing (net/http then sends an empty 200 on the connection, still open for
// writing, and the caller reads success for a request COOP never had whole).
func TestACallerStoppingMidStreamedBodyGetsJSON(t *testing.T) {
	tests := []struct {
		name   string
		finish func(c *net.TCPConn) // after part of the body
		status int
		code   string
	}{
		{"stalls until the read deadline", func(*net.TCPConn) {}, http.StatusRequestTimeout, "request_timeout"},
		{"half-closes", func(c *net.TCPConn) { _ = c.CloseWrite() }, http.StatusBadRequest, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, nil)
			cache := &tokensource.Cache{Source: &source{}, Margin: time.Minute}
			t.Cleanup(cache.Close)
			u, _ := url.Parse(up.URL)
			srv := httptest.NewUnstartedServer(New(Options{Upstream: u, Tokens: cache, RetryBodyLimit: 4, RequestTimeout: 5 * time.Second}))
			srv.Config.ReadTimeout = 500 * time.Millisecond // serve's REQUEST_TIMEOUT
			srv.Start()
			t.Cleanup(srv.Close)
			conn, err := net.Dial("tcp", srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c := conn.(*net.TCPConn)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "POST /api/1/eggs-collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
				t.Fatal(err)
			}
			tt.finish(c)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // the connection was closed without an answer: nothing misread
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var p problem
			if resp.StatusCode != tt.status || json.Unmarshal(body, &p) != nil || p.Error != tt.code {
				t.Fatalf("status %d body %q; want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
		})
	}
}
