//go:build unix

package redistest

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy in front of a Server (without TLS) that can lose or
// delay Redis's answers to chosen commands, as a network that fails at the
// worst moment does: the command reaches Redis, which runs it, and its
// answer is cut half-way (the connection closed) or held back. Closed when
// the test ends.
type Proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	rules []*rule
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// rule is what happens to the answers of the next n commands whose text
// holds match.
type rule struct {
	match []byte
	n     int
	cut   bool          // close the connection half-way through the answer
	delay time.Duration // else hold the answer back this long
}

// Proxy starts a proxy in front of s on a free port of 127.0.0.1.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	if s.opts.TLS != nil {
		t.Fatal("redistest: Proxy needs a server without TLS: it reads the commands")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	p := &Proxy{ln: ln, target: s.Addr(), conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's "redis://127.0.0.1:port/0".
func (p *Proxy) URL() string { return "redis://" + p.ln.Addr().String() + "/0" }

// LoseAnswers cuts the answers of the next n commands whose text holds
// match: half of the answer reaches the client, then the connection
// closes. Redis ran the command.
func (p *Proxy) LoseAnswers(match string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{match: []byte(match), n: n, cut: true})
}

// DelayAnswers holds back for d the answers of the next n commands whose
// text holds match.
func (p *Proxy) DelayAnswers(match string, n int, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rules = append(p.rules, &rule{match: []byte(match), n: n, delay: d})
}

// take returns the rule that applies to a command chunk, counting it.
func (p *Proxy) take(chunk []byte) *rule {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.rules {
		if r.n > 0 && bytes.Contains(chunk, r.match) {
			r.n--
			return r
		}
	}
	return nil
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.pipe(c, s)
	}
}

// pipe carries one client's commands to Redis and Redis's answers back.
// A command is taken to arrive in one read (go-redis writes each in one
// write; they are small), and to be answered before the next is sent.
func (p *Proxy) pipe(c, s net.Conn) {
	defer p.wg.Done()
	pending := make(chan *rule, 1) // the rule of the command in flight
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // client → Redis
		defer wg.Done()
		defer s.Close()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if r := p.take(buf[:n]); r != nil {
					select {
					case pending <- r:
					default:
					}
				}
				if _, werr := s.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.Read(buf)
		if n > 0 {
			var r *rule
			select {
			case r = <-pending:
			default:
			}
			switch {
			case r != nil && r.cut:
				_, _ = c.Write(buf[:n/2])
				_ = c.Close()
				_ = s.Close()
				wg.Wait()
				return
			case r != nil:
				time.Sleep(r.delay)
			}
			if _, werr := c.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = s.Close()
	wg.Wait()
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
