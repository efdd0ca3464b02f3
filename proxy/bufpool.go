package proxy

import "sync"

// bufferPool lends ReverseProxy the 32 KiB buffers it copies bodies with,
// instead of allocating one per request.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
