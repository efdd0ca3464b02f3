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

// A request that ran out of REQUEST_TIMEOUT waiting for COOP is a 504; one
// that ran out of it waiting for a token is the token's failure, a 503 with
// Retry-After. Neither spoils the next request on the same keep-alive
// connection: the deadline is the connection's, and its failed read cancels
// the connection's context, not only the request's.
func TestARequestOutOfTimeAnswersAndSpoilsNoOther(t *testing.T) {
	const streamed = "POST /api/1/eggs-collect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\n0123456789"
	tests := []struct {
		name   string
		req    string
		silent bool           // COOP does not answer the first request
		slow   func(*fixture) // the first request's
		status int
		code   string
	}{
		{"COOP silent", getMe, true, func(*fixture) {}, http.StatusGatewayTimeout, "upstream_timeout"},
		{"no token yet", getMe, false, lockSource, http.StatusServiceUnavailable, "token_endpoint_unavailable"},
		{"no token yet, a body streamed", streamed, false, lockSource, http.StatusServiceUnavailable, "token_endpoint_unavailable"},
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
			}, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond; o.RetryBodyLimit = 4 })
			tt.slow(f)
			rc := dialRaw(t, f.proxy.URL)
			rc.send(tt.req)
			resp, body, err := rc.answer()
			var p problem
			if err != nil || resp.StatusCode != tt.status || json.Unmarshal([]byte(body), &p) != nil || p.Error != tt.code ||
				tt.status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Fatalf("first: %v %v %q, want %d %s", err, resp, body, tt.status, tt.code)
			}
			if resp.Close {
				return // the caller knows not to send another on this connection
			}
			rc.send(getMe)
			resp, body, err = rc.answer()
			if err != nil || resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("second request on a connection kept alive after the first ran out of time: %v %v %q", err, resp, body)
			}
		})
	}
}

// lockSource holds up token fetches for a second.
func lockSource(f *fixture) { f.src.mu.Lock(); time.AfterFunc(time.Second, f.src.mu.Unlock) }

// COOP's answer can arrive just as REQUEST_TIMEOUT passes (its body in the
// transport's buffer, read even once the request's context is cancelled),
// or a slow caller take the last of it after: the caller gets it all, and the
// next request on the connection, whose context the deadline cancelled, is
// answered too, with 503 to send it again when it could not be forwarded (or
// the connection is closed after the first).
func TestAnAnswerAroundTheDeadlineSpoilsNoOtherRequest(t *testing.T) {
	const timeout = 300 * time.Millisecond
	big := strings.Repeat("x", 32<<20)
	f := newFixture(t, nil, func(o *Options) {
		o.RequestTimeout = timeout
		o.Base = roundTripFunc(func(r *http.Request) (*http.Response, error) {
			body := "ok"
			switch r.URL.Path {
			case "/late":
				time.Sleep(timeout + 100*time.Millisecond)
			case "/big":
				body = big
			default:
				if err := r.Context().Err(); err != nil {
					return nil, err
				}
			}
			h := http.Header{"Content-Length": {fmt.Sprint(len(body))}}
			return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)), Request: r}, nil
		})
	})
	for _, path := range []string{"/late", "/big"} {
		t.Run(path, func(t *testing.T) {
			rc := dialRaw(t, f.proxy.URL)
			rc.send("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			time.Sleep(2 * timeout) // a slow caller
			resp, body, err := rc.answer()
			if err != nil || resp.StatusCode != 200 || len(body) != int(resp.ContentLength) {
				t.Fatalf("first: %v %v %d bytes", err, resp, len(body))
			}
			if resp.Close {
				return
			}
			rc.send(getMe)
			resp, body, err = rc.answer()
			var p problem
			if err != nil || !(resp.StatusCode == 200 && body == "ok" ||
				resp.StatusCode == 503 && resp.Close && resp.Header.Get("Retry-After") != "" && json.Unmarshal([]byte(body), &p) == nil && p.Error == "connection_spent") {
				t.Fatalf("second request on a connection kept alive after the deadline: %v %v %q", err, resp, body)
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

// The request sent again after COOP rejected the token is the one checked:
// without the caller's access_token in the query or the form, with the new
// token only; and the connection goes on serving requests after it.
func TestARetryResendsTheCheckedRequest(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}, func(o *Options) { o.RequestTimeout = 5 * time.Second })
	rc := dialRaw(t, f.proxy.URL)
	for _, req := range []string{
		"POST /api/1/eggs-collect?access_token=q&b=1&access.token=r HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n17\r\naccess_token=zz&c=3&d=4\r\n0\r\n\r\n",
		getMe,
	} {
		rc.send(req)
		if resp, body, err := rc.answer(); err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("%v %v %q", err, resp, body)
		}
	}
	got := f.up.requests()
	if len(got) != 3 {
		t.Fatalf("upstream saw %d requests, want 3", len(got))
	}
	for i, s := range got[:2] {
		if s.RawQuery != "b=1" || s.Body != "c=3&d=4" || s.Auth != fmt.Sprintf("Bearer tok-%d-0123456789abcdef", i+1) {
			t.Errorf("attempt %d: %+v", i+1, s)
		}
	}
}

// Pipelined requests (RFC 9112 §9.3.2), sent at once or while one is being
// forwarded, are answered in order, each within REQUEST_TIMEOUT; the
// deadline of one does not carry over to the next, read after a pause longer
// than REQUEST_TIMEOUT.
func TestPipelinedRequestsAreAnsweredInOrder(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		time.Sleep(100 * time.Millisecond)
		_, _ = io.WriteString(w, r.URL.Path)
	}, func(o *Options) { o.RequestTimeout = 500 * time.Millisecond; o.RetryBodyLimit = 4 })
	rc := dialRaw(t, f.proxy.URL)
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" }
	rc.send(get("/1") + "POST /2 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\nab" + get("/3"))
	time.Sleep(50 * time.Millisecond)
	rc.send("POST /4 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\n\r\nabcdef")
	for i := 1; i <= 5; i++ {
		if i == 5 {
			time.Sleep(700 * time.Millisecond)
			rc.send(get("/5"))
		}
		resp, body, err := rc.answer()
		if err != nil || resp.StatusCode != 200 || body != fmt.Sprintf("/%d", i) {
			t.Fatalf("answer %d: %v %v %q", i, err, resp, body)
		}
	}
}

// COOP's 401 invalid_token whose body is still coming in when REQUEST_TIMEOUT
// passes: the request is not sent again (it has no time left), and the
// caller reads that COOP rejected the token, not that no token could be had.
func TestATokenRejectedAtTheDeadlineIsNotRetried(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("WWW-Authenticate", invalidToken)
		w.WriteHeader(401)
		for range 20 {
			if _, err := io.WriteString(w, "x"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	}, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	rc := dialRaw(t, f.proxy.URL)
	rc.send(getMe)
	resp, body, err := rc.answer()
	var p problem
	if err != nil || resp.StatusCode != 503 || json.Unmarshal([]byte(body), &p) != nil || p.Error != "token_rejected" {
		t.Fatalf("%v %v %q, want 503 token_rejected", err, resp, body)
	}
	if n := len(f.up.requests()); n != 1 {
		t.Fatalf("COOP got %d requests, want 1", n)
	}
}

// A COOP that stalls in the middle of its answer is cut off by the
// transport after UPSTREAM_TIMEOUT or so of silence, whatever bounds the
// request otherwise: here nothing does (no REQUEST_TIMEOUT), as for a
// caller that pipelines its next request and so defeats the read deadline.
func TestACOOPSilentMidAnswerIsCutOffByTheTransport(t *testing.T) {
	released, cut := make(chan struct{}), make(chan struct{})
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "the first bytes")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			close(cut)
		case <-released:
		}
	}, func(o *Options) { o.Base = NewTransport(200 * time.Millisecond) })
	t.Cleanup(func() { close(released) }) // before the fixture's servers close: cleanups run last first
	go func() {
		if resp, err := http.Get(f.proxy.URL + "/api/me"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-cut:
	case <-time.After(10 * time.Second):
		t.Fatal("a COOP silent mid-answer still holds the request after 10 s")
	}
}
