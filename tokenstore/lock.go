package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// A blocking flock(2) cannot be abandoned when ctx ends, so waiting polls
// LOCK_NB with a delay that doubles from lockPollMin up to lockPollMax.
const (
	lockPollMin = time.Millisecond
	lockPollMax = 20 * time.Millisecond
)

// lockFile opens the lock file at path (creating it with mode 0600, never
// through a symbolic link: see openChecked) and takes the flock(2) lock how
// (syscall.LOCK_SH or syscall.LOCK_EX) on it, waiting until ctx is done.
// Closing the returned file releases the lock.
//
// Each call opens its own file description, and flock locks of different
// descriptions conflict even within one process, so callers in one process
// exclude each other as processes do.
func lockFile(ctx context.Context, path string, how int) (*os.File, error) {
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
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
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
