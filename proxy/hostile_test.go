package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hijackAnswer writes raw as COOP's whole answer and closes the connection.
func hijackAnswer(raw string) func(w http.ResponseWriter, r *http.Request, n int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = io.WriteString(c, raw)
		c.Close()
	}
}

// An answer from COOP with a status code under 100 ("099", which Go's
// client reads) made ReverseProxy call WriteHeader(99), which panics: the
// caller got no answer at all and the log a stack trace. It is a 502, as
// is a protocol switch nobody asked for.
func TestOddStatusesFromCOOPAre502(t *testing.T) {
	for name, raw := range map[string]string{
		"099":         "HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nok",
		"000":         "HTTP/1.1 000 Odd\r\nContent-Length: 2\r\n\r\nok",
		"101 unasked": "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, hijackAnswer(raw))
			resp, err := http.DefaultTransport.RoundTrip(newReq(t, "GET", f.proxy.URL+"/api/me", ""))
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 502 || !strings.Contains(string(b), "upstream_unreachable") {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
		})
	}
}

// A caller's Upgrade (h2c, websocket) was forwarded, and a 101 from the
// upstream turned the connection into a raw tunnel to COOP: whatever the
// caller sent next (its own token, in any form) reached COOP unchecked,
// with no deadline and outside the drain. COOP serves no upgrade: the
// request goes without one, and a 101 is an upstream failure.
func TestUpgradeIsNotForwarded(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.Header.Get("Upgrade") == "" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+r.Header.Get("Upgrade")+"\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := brw.ReadString('\n')
		_, _ = io.WriteString(c, "tunnel got: "+line)
	})
	for _, up := range []string{"h2c", "websocket"} {
		t.Run(up, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(f.proxy.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(c, "GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+up+
				"\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusSwitchingProtocols {
				_, _ = io.WriteString(c, "GET /api/me?access_token="+smuggled+"\r\n")
				rest, _ := io.ReadAll(c)
				t.Fatalf("the proxy switched protocols: a raw tunnel to COOP (%q)", rest)
			}
			if resp.StatusCode != 200 || string(b) != "plain" {
				t.Fatalf("status %d body %q", resp.StatusCode, b)
			}
			for _, s := range f.up.requests() {
				if s.Header.Get("Upgrade") != "" {
					t.Fatalf("Upgrade forwarded: %q", s.Header.Get("Upgrade"))
				}
			}
		})
	}
}

// COOP's response header was read up to net/http's default of 10 MiB, and
// passed on whole: a hostile or broken upstream could make each of
// MAX_UPSTREAM_CONNS requests hold that much. COOP's headers are a few
// hundred bytes; over maxUpstreamHeaderBytes is a 502.
func TestAHugeResponseHeaderFromCOOPIsA502(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		for i := range 2048 {
			w.Header().Set("X-Pad-"+strconv.Itoa(i), strings.Repeat("p", 1024))
		}
		_, _ = io.WriteString(w, "ok")
	}, func(o *Options) { o.Base = NewTransport(5 * time.Second) })
	resp, body := do(t, newReq(t, "GET", f.proxy.URL+"/api/me", ""))
	if resp.StatusCode != 502 || !strings.Contains(body, "upstream_unreachable") {
		t.Fatalf("status %d, %d header fields, body %q", resp.StatusCode, len(resp.Header), body)
	}
}

// Only loopback names and addresses are loopback hosts.
func TestIsLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8080": true, "127.1.2.3": true, "localhost": true, "LocalHost:1": true,
		"[::1]:80": true, "::1": true, "[::ffff:127.0.0.1]:80": true,
		"127.0.0.1": true, "127.0.0.1:": true, "localhost:8080": true,
		"": false, "example.com": false, "10.0.0.1:80": false, "[::2]:80": false,
		"127.0.0.1.nip.io": false, "localhost.example.com": false, "[fe80::1%25lo]:80": false, "[::1%lo]:80": false,
		"127.0.0.1:80:81": false, "127.0.0.1:[80]": false, "127.0.0.1]:80": false, "localhost:80:81": false, "localhostx:80": false,
	} {
		if got := isLoopbackHost(host); got != want {
			t.Errorf("isLoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

// COOP's interim answers (1xx: 103 Early Hints, a 100 Continue of its own)
// reach an HTTP/1.0 caller, which knows none, not once, not after a retry
// (RFC 9110 §15.2: "a server MUST NOT send a 1xx response to an HTTP/1.0
// client"): it would take the first for the answer. An HTTP/1.1 caller gets
// them.
func TestNoInterimAnswerReachesAnHTTP10Caller(t *testing.T) {
	f := newFixture(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Link", "</a>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		if n == 1 {
			w.Header().Set("WWW-Authenticate", invalidToken)
			w.WriteHeader(401)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	for _, proto := range []string{"HTTP/1.0", "HTTP/1.1"} {
		rc := dialRaw(t, f.proxy.URL)
		rc.send("GET /api/me " + proto + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(rc.r)
		first, _, _ := strings.Cut(string(b), "\r\n")
		if want := proto + " 200 OK"; proto == "HTTP/1.0" && first != want || proto == "HTTP/1.1" && first != "HTTP/1.1 103 Early Hints" {
			t.Errorf("%s caller: first line %q", proto, first)
		}
	}
}
