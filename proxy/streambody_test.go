package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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

// A caller that half-closes its connection after its request (nc -N, a
// script's shutdown(SHUT_WR)) is taken by net/http for a caller gone: the
// request's context is cancelled, and the forward, or the wait for a token,
// stops. It must not then read success: net/http answers an empty 200 for a
// handler that wrote nothing, for a request COOP never had.
func TestACallerTakenForGoneReadsNoSuccess(t *testing.T) {
	tests := []struct {
		name  string
		slow  func(*fixture)
		reqTo string
	}{
		{"while COOP answers", func(*fixture) {}, "/api/1/eggs-collect"},
		{"while a token is fetched", func(f *fixture) { f.src.mu.Lock(); time.AfterFunc(time.Second, f.src.mu.Unlock) }, "/api/1/eggs-collect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
				time.Sleep(time.Second)
				_, _ = io.WriteString(w, "collected")
			})
			tt.slow(f)
			conn, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			c := conn.(*net.TCPConn)
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, "POST "+tt.reqTo+" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			_ = c.CloseWrite()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return // closed without an answer
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 && string(body) != "collected" {
				t.Fatalf("status %d body %q: success read for a request not answered by COOP", resp.StatusCode, body)
			}
		})
	}
}
