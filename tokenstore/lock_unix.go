//go:build unix

package tokenstore

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes flock(2)'s lock on f without waiting (LOCK_NB): locked is
// false, with a nil error, when another description holds a conflicting
// lock (or a signal interrupted the call).
func tryLock(f *os.File, how lockMode) (locked bool, err error) {
	op := syscall.LOCK_SH
	if how == lockExclusive {
		op = syscall.LOCK_EX
	}
	err = syscall.Flock(int(f.Fd()), op|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EINTR) {
		return false, nil
	}
	return err == nil, err
}

// unlock releases f's lock (closing f would too).
func unlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
