package proxy

import "sync"

// bufSize is the size of the buffers ReverseProxy copies bodies with.
const bufSize = 32 << 10

// bufferPool lends ReverseProxy the 32 KiB buffers it copies bodies with,
// instead of allocating one per request. It keeps array pointers, so that
// neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([bufSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[bufSize]byte)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= bufSize {
		b.p.Put((*[bufSize]byte)(buf[:bufSize]))
	}
}
