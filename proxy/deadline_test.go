package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawConn is a caller's keep-alive connection, for sending requests one
// after another (or all at once, pipelined) and reading the answers.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, proxyURL string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t, c, bufio.NewReader(c)}
}

func (rc *rawConn) send(text string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, text); err != nil {
		rc.t.Fatal(err)
	}
}

// answer reads one answer; an error when the connection ended without one.
func (rc *rawConn) answer() (*http.Response, string, error) {
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

const getMe = "GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

// A request that ran out of REQUEST_TIMEOUT (504), waiting for COOP or for
// a token, must not spoil the next request on the same keep-alive
// connection: the deadline is the connection's, and its failed read cancels
// the connection's context, not only the request's.
func TestTheRequestAfterA504OnTheSameConnectionIsServed(t *testing.T) {
	tests := []struct {
		name   string
		silent bool           // COOP does not answer the first request
		slow   func(*fixture) // the first request's
	}{
		{"COOP silent", true, func(*fixture) {}},
		{"no token yet", false, func(f *fixture) { f.src.mu.Lock(); time.AfterFunc(time.Second, f.src.mu.Unlock) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
				if n == 1 && tt.silent {
					select {
					case <-r.Context().Done():
					case <-time.After(5 * time.Second):
					}
					return
				}
				_, _ = io.WriteString(w, "ok")
			}, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
			tt.slow(f)
			rc := dialRaw(t, f.proxy.URL)
			rc.send(getMe)
			resp, body, err := rc.answer()
			if err != nil || resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("first: %v %v %q, want 504", err, resp, body)
			}
			if resp.Close {
				return // the caller knows not to send another on this connection
			}
			rc.send(getMe)
			resp, body, err = rc.answer()
			if err != nil || resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("second request on a connection kept alive after a 504: %v %v %q", err, resp, body)
			}
		})
	}
}

// A COOP that stalls in the middle of its answer is cut off at
// REQUEST_TIMEOUT (the caller's connection ends), also when it answers
// before reading a streamed body to its end: net/http then reads nothing
// more of the caller's connection, whose read deadline goes unnoticed.
func TestACOOPStallingMidAnswerIsCutOff(t *testing.T) {
	tests := []struct {
		name   string
		req    string
		stream bool // send 8 MiB of body after req
	}{
		{"no body", getMe, false},
		{"a body COOP does not read", "POST /api/1/eggs-collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 8388608\r\n\r\n", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			f := newFixture(t, nil, func(o *Options) { o.RequestTimeout = 500 * time.Millisecond; o.RetryBodyLimit = 4 })
			f.up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1000")
				_, _ = io.WriteString(w, "the first bytes")
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
				case <-release:
				}
			})
			t.Cleanup(func() { close(release) })
			rc := dialRaw(t, f.proxy.URL)
			sent := time.Now()
			rc.send(tt.req)
			if tt.stream {
				go func() { _, _ = rc.c.Write(make([]byte, 8<<20)) }()
			}
			_, _ = io.Copy(io.Discard, rc.r)
			if d := time.Since(sent); d > 3*time.Second {
				t.Fatalf("the caller's connection ended after %s; COOP's stalled answer was awaited past REQUEST_TIMEOUT", d)
			}
		})
	}
}
