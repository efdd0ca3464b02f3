package tokenstore

import (
	"errors"
	"math"
	"os"

	"golang.org/x/sys/windows"
)

// tryLock takes LockFileEx's lock on the whole of f (every byte, whatever
// its length: the lock file stays empty) without waiting
// (LOCKFILE_FAIL_IMMEDIATELY): locked is false, with a nil error, when
// another handle holds a conflicting lock. Like flock, a shared lock
// admits other shared ones, and locks of two handles conflict even in one
// process.
func tryLock(f *os.File, how lockMode) (locked bool, err error) {
	flags := uint32(windows.LOCKFILE_FAIL_IMMEDIATELY)
	if how == lockExclusive {
		flags |= windows.LOCKFILE_EXCLUSIVE_LOCK
	}
	err = windows.LockFileEx(windows.Handle(f.Fd()), flags, 0, math.MaxUint32, math.MaxUint32, new(windows.Overlapped))
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) || errors.Is(err, windows.ERROR_IO_PENDING) {
		return false, nil
	}
	return err == nil, err
}

// unlock releases f's lock before it is closed: Windows releases the locks
// of a closed handle only when it gets to it, which may be a while.
func unlock(f *os.File) {
	_ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, math.MaxUint32, math.MaxUint32, new(windows.Overlapped))
}
