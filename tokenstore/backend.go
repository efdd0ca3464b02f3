package tokenstore

import (
	"context"
	"errors"
	"time"
)

// ErrUnavailable is wrapped by the errors of a backend that cannot reach
// its store (Redis down or unreachable): the caller works from what it
// holds in memory and tries again.
var ErrUnavailable = errors.New("token store unavailable")

// ErrLockLost is wrapped by the *WriteError of a write fenced off because
// the writer's lock expired meanwhile (a slow token request, a pause): the
// grant may have been changed by another replica since it was read, so
// the new tokens were not written over it. The caller keeps them pending
// and reconciles.
var ErrLockLost = errors.New("the grant's lock was lost before the write")

// Backend is where grants are kept: the token file (*Store, the default)
// or a store shared by replicas on many hosts (package
// tokenstore/redisstore). Every method is safe for concurrent use by
// goroutines, and by processes or replicas that open the same store.
//
// Update is the operation the token stack is built on: the locked
// read-modify-write of one grant (see (*Store).Update for its contract,
// which every backend keeps; tokenstore/storetest checks it).
type Backend interface {
	Load(ctx context.Context, k Key) (Record, bool, error)
	Keys(ctx context.Context) ([]string, error)
	Update(ctx context.Context, k Key, fn func(cur Record, ok bool) (next *Record, err error)) (Record, error)
	Delete(ctx context.Context, k Key) (existed bool, err error)
	// Info says what status shows of the grant under k: the backend, who
	// holds its lock and when it was last written.
	Info(ctx context.Context, k Key) (Info, error)
	// Changes signals, without waiting for a read, that a grant may have
	// changed in another process or replica (a login, a logout, a token
	// fetched); nil when the backend cannot tell, and callers poll. The
	// channel is closed when ctx ends.
	Changes(ctx context.Context) <-chan struct{}
	// Shared reports whether replicas on other hosts use the store: then
	// its lock is the only thing that makes a refresh safe, and a grant
	// whose refresh tokens rotate is never refreshed without it.
	Shared() bool
	Close() error
}

// Info is what a backend tells of one grant.
type Info struct {
	Backend    string    // "file /path/tokens.json", "redis://host:6379/0" (never a password)
	LockHolder string    // who holds the grant's lock, "" when nobody does or the backend cannot tell
	WrittenAt  time.Time // when the grant was last written; zero when there is none
	Writer     string    // who wrote it last, "" when the backend does not record it
}

var _ Backend = (*Store)(nil)

// Info implements Backend: the file and its last write (flock does not
// tell who holds the lock).
func (s *Store) Info(ctx context.Context, k Key) (Info, error) {
	info := Info{Backend: "file " + s.path}
	r, ok, err := s.Load(ctx, k)
	if err != nil {
		return info, err
	}
	if ok {
		info.WrittenAt = r.UpdatedAt
	}
	return info, nil
}

// Changes implements Backend: the file store has no notifications; its
// readers poll.
func (s *Store) Changes(context.Context) <-chan struct{} { return nil }

// Shared implements Backend: a token file is shared by processes on one
// host only.
func (s *Store) Shared() bool { return false }

// Close implements Backend; a Store holds nothing open between operations.
func (s *Store) Close() error { return nil }
