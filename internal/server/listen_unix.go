//go:build unix

package server

import (
	"errors"
	"net"
	"os"
	"syscall"
)

// listenUnix listens on a Unix socket at path, with mode 0660. It is
// created with the umask's mode (connecting needs write permission, so at
// worst the owner alone could connect meanwhile), then opened to the group.
func listenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// refused reports a connection refused at a socket file: nothing listens
// behind it, it was left by a process that died.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }
