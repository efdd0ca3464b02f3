package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// A blocking lock (flock(2), LockFileEx without LOCKFILE_FAIL_IMMEDIATELY)
// cannot be abandoned when ctx ends, so waiting polls a non-blocking try
// with a delay that doubles from lockPollMin up to lockPollMax.
const (
	lockPollMin = time.Millisecond
	lockPollMax = 20 * time.Millisecond
)

// lockMode is a shared (readers) or exclusive (a writer) lock.
type lockMode int

const (
	lockShared lockMode = iota
	lockExclusive
)

// heldLock is a lock taken by lockFile; Close releases it.
type heldLock struct{ f *os.File }

// Close releases the lock and closes the lock file.
func (l *heldLock) Close() error {
	unlock(l.f)
	return l.f.Close()
}

// lockFile opens the lock file at path (creating it with mode 0600, never
// through a symbolic link: see openChecked) and takes the lock how on it,
// waiting until ctx is done: flock(2) on Unix, LockFileEx on Windows (see
// tryLock).
//
// Each call opens its own file description (handle on Windows), and the
// locks of different descriptions conflict even within one process, so
// callers in one process exclude each other as processes do.
func lockFile(ctx context.Context, path string, how lockMode) (*heldLock, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("tokenstore: waiting for the lock %s: %w", path, err)
	}
	f, err := openChecked(kindLock, path, os.O_RDWR|os.O_CREATE, 0o600)
	if _, ok := errors.AsType[*UnsafeError](err); ok {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("tokenstore: opening the lock file: %w", err)
	}
	delay := lockPollMin
	for {
		locked, err := tryLock(f, how)
		if locked {
			return &heldLock{f}, nil
		}
		if err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("tokenstore: locking %s: %w", path, err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = f.Close()
			return nil, fmt.Errorf("tokenstore: waiting for the lock %s: %w", path, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, lockPollMax)
	}
}
