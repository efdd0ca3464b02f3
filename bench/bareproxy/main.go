// Command bareproxy is the benchmark's baseline (b): the least a Go reverse
// proxy in front of COOP does. It is a bare httputil.ReverseProxy that sets
// a fixed bearer token, over the same transport as coop-proxy
// (proxy.NewTransport) and with a pool of copy buffers, with no
// per-request logging, no metrics and no token cache.
package main

import (
	"flag"
	"log"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coop-proxy/coop-proxy/bench/benchserve"
	"github.com/coop-proxy/coop-proxy/proxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18081", "address to listen on (loopback)")
	upstream := flag.String("upstream", "", "COOP's base URL (required)")
	tokenFile := flag.String("token-file", "", "file holding the access token to send (required)")
	flag.Parse()
	if *upstream == "" || *tokenFile == "" {
		log.Fatal("bareproxy: -upstream and -token-file are required")
	}
	if err := run(*listen, *upstream, *tokenFile); err != nil {
		log.Fatalf("bareproxy: %v", err)
	}
}

func run(listen, upstream, tokenFile string) error {
	target, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	authorization := "Bearer " + strings.TrimSpace(string(token))

	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set("Authorization", authorization)
		},
		// The same connection pooling and timeouts as coop-proxy's.
		Transport: proxy.NewTransport(30 * time.Second),
		// Without a pool it allocates a 32 KiB copy buffer per response,
		// and beating it would prove nothing.
		BufferPool: bufferPool{&sync.Pool{New: func() any { return new([32 << 10]byte) }}},
	}

	return benchserve.Run(listen, rp, nil)
}

// bufferPool is httputil.BufferPool over a sync.Pool of 32 KiB arrays.
type bufferPool struct{ p *sync.Pool }

func (b bufferPool) Get() []byte  { return b.p.Get().(*[32 << 10]byte)[:] }
func (b bufferPool) Put(s []byte) { b.p.Put((*[32 << 10]byte)(s[:32<<10])) }
