package server

import (
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// listen opens the proxy's listener: TCP host:port, or unix:/path for a Unix
// socket (listenUnix: mode 0660, owner and group may connect; on Windows
// the directory's access control list decides), removed when the listener
// closes. A socket file left by a process that died is replaced;
// one with a live listener behind it, or anything that is not a socket, is
// an error: nothing else at the path is ever removed.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if info, err := os.Lstat(path); err == nil {
		if info.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%s): remove it or choose another path", path, describeType(info.Mode()))
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process is listening on it", path)
		}
		if !refused(err) {
			return nil, fmt.Errorf("%s exists and is not a stale socket: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing the stale socket %s: %w", path, err)
		}
	}
	return listenUnix(path)
}

func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "type " + m.Type().String()
}

// limitListener accepts at most n connections at once; Accept waits for one
// to close (the kernel's backlog holds the callers meanwhile). It hands out
// the connections as accepted, not wrapped: the server's ConnState hook
// (release) gives a slot back when one closes, so that the reads, writes and
// deadlines of every request go to the connection directly.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	done chan struct{}
	once sync.Once
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return c, nil
}

// release is the http.Server's ConnState: a connection that closed, or that
// a handler took over, frees its slot. net/http reports every connection it
// accepted as one or the other, once, when it is done with it.
func (l *limitListener) release(_ net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		<-l.sem
	}
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}
