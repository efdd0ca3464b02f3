package server

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/windows"
)

// listenUnix listens on a Unix socket at path: Windows 10 version 1803 and
// later have AF_UNIX; earlier ones refuse it, which the error says. Mode
// bits do not exist there: who may connect is decided by the access
// control list the socket file inherits from its directory.
func listenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%w (Unix sockets need Windows 10 version 1803 or later: listen on 127.0.0.1:PORT instead)", err)
	}
	return ln, nil
}

// refused reports a connection refused at a socket file: nothing listens
// behind it, it was left by a process that died.
func refused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }
