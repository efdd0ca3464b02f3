// Package tokenstore keeps OAuth2 grants in one JSON file shared by several
// processes (sidecars on one volume, the proxy and the `token` command).
//
// The authorization server rotates refresh tokens on every use, so a refresh
// must happen once between all those processes and its result must reach the
// disk. Update is the operation for that: under an exclusive cross-process
// lock it re-reads the file and hands the current record to a callback, which
// may refresh over the network while the lock is held; what it returns is
// written atomically before the lock is released. A process that waited for
// the lock therefore sees the grant another process just rotated.
//
// On disk: the data file (mode 0600) is replaced atomically (temporary file
// "<path>.tmp-*" in the same directory, fsync, rename, fsync of the
// directory); the lock is flock(2) (LockFileEx on Windows) on a separate
// "<path>.lock" file, since the rename gives the data file a new inode. A corrupt data file is moved
// aside to "<path>.corrupt-<UTC time>" and the store carries on empty, so
// callers fetch a new grant rather than fail forever. Errors name the file
// and never contain a token.
//
// The temporary file is a journal. Each file written carries a generation
// (one more than the file it replaces), the SHA-256 of the file it replaces,
// and a SHA-256 of its own content, so that a temporary file cut short is
// recognised. Only a writer holding the exclusive lock creates temporary
// files, so one seen under the lock was left by a writer that died, maybe
// after the authorization server rotated the refresh token and before the
// rename: the only copy of the live grant may be in it. The next operation
// (a read that sees one takes the exclusive lock) renames a complete one,
// written over the data file as it now is, into place, and removes the
// others (see WithRecoverHandler). Files written before the journal, without
// generation nor checksums, are read as before, and older readers ignore
// the new fields.
//
// As ssh does for its keys, the store refuses (with an *UnsafeError naming
// the fix) a directory, token file or lock file that another user owns
// (root excepted) or that other users can write (group-write is accepted
// for the process's own group, as Kubernetes' fsGroup volumes have it), and
// a token file or lock file that is a symbolic link: another user could
// otherwise plant a grant that would be used, or a link that redirects it.
// On Windows the mode bits are an access control list: the directory the
// store creates gets one of its own that allows only the user (and
// SYSTEM), and any file or directory of the store that another account
// than the user, SYSTEM or the Administrators may read or change is
// refused (package internal/winacl).
package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Store is a token file. Its methods are safe for concurrent use, by
// goroutines and by processes (each opening its own Store on the path).
type Store struct {
	path      string
	lockPath  string
	onCorrupt func(path, movedTo string, err error)
	onRecover func(path, from string)
	// exclusive queues this Store's goroutines for the exclusive lock on a
	// channel, where waiting is cancellable and needs no polling.
	exclusive chan struct{}
}

// Option configures a Store.
type Option func(*Store)

// WithCorruptHandler sets a function called when a corrupt, truncated or
// undecodable file (or one over 1 MiB) has been moved aside: path is the
// token file, movedTo where it now is, err what was wrong with it. It runs
// with the store locked and must not call the Store.
func WithCorruptHandler(h func(path, movedTo string, err error)) Option {
	return func(s *Store) { s.onCorrupt = h }
}

// WithRecoverHandler sets a function called when the token file has been
// recovered from a temporary file left by a writer that died between
// writing it and renaming it into place (a crash in the middle of a
// refresh): path is the token file, from the temporary file renamed over
// it. It runs with the store locked and must not call the Store.
func WithRecoverHandler(h func(path, from string)) Option {
	return func(s *Store) { s.onRecover = h }
}

// Open returns the store kept in the file at path. It creates the missing
// directories (mode 0700; the file's own directory is set to exactly 0700
// when Open creates it, and left alone when it exists). The file and its
// lock file are created by the first write. A store that other users could
// have written to is refused with an *UnsafeError.
func Open(path string, opts ...Option) (*Store, error) {
	if path == "" {
		return nil, errors.New("tokenstore: empty token file path")
	}
	path = filepath.Clean(path)
	if err := makeDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("tokenstore: creating the directory of %s: %w", path, err)
	}
	s := &Store{path: path, lockPath: path + ".lock", exclusive: make(chan struct{}, 1)}
	if err := s.checkSafe(); err != nil {
		return nil, err
	}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// makeDir creates dir and its parents with mode 0700. Only a dir it creates
// itself gets its mode set (past the umask); an existing one is not touched.
func makeDir(dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return restrictDir(dir)
}

// Path returns the token file's path.
func (s *Store) Path() string { return s.path }

// Load returns the record stored under k, and whether there is one. It reads
// under the shared lock, so it waits (as long as ctx allows) for an Update in
// progress in any process.
func (s *Store) Load(ctx context.Context, k Key) (Record, bool, error) {
	m, err := s.snapshot(ctx)
	if err != nil {
		return Record{}, false, err
	}
	r, ok := m[k.String()]
	return r, ok, nil
}

// Keys returns the keys (Key.String) present in the store, sorted.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	m, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(m)), nil
}

// Update is the locked read-modify-write of the record under k. It takes the
// exclusive lock, in this process and across processes (waiting as long as
// ctx allows), re-reads the file and calls fn with the current record (ok is
// false when there is none). fn runs with the lock held, so it may refresh
// the grant over the network; it must not call the Store.
//
//   - fn returns an error: nothing is written; Update returns (Record{}, err)
//     with fn's error unchanged.
//   - fn returns nil: nothing is written; Update returns the current record
//     (Record{} when there is none) and nil.
//   - fn returns next: next, with UpdatedAt set to now, is written atomically
//     (even if ctx has ended meanwhile: it may hold a rotated refresh token)
//     and returned. If the write fails Update returns it with a *WriteError,
//     so that the caller keeps the new tokens and can write them later.
//
// Records under other keys are kept as they are.
func (s *Store) Update(ctx context.Context, k Key, fn func(cur Record, ok bool) (next *Record, err error)) (Record, error) {
	key := k.String()
	var out Record
	var writeErr error
	err := s.locked(ctx, func(c *contents) error {
		cur, ok := c.grants[key]
		// The temporary file is created before fn runs, so that once fn has
		// new tokens only encoding and one write(2) stand between them and a
		// file that recovery finds after a crash. (If it cannot be created,
		// write tries again and reports why.)
		tmp, _ := s.createTemp()
		next, err := fn(cur, ok)
		if err != nil || next == nil {
			discard(tmp)
			out = cur
			return err
		}
		out = *next
		out.UpdatedAt = time.Now().UTC()
		c.grants[key] = out
		writeErr = s.write(c, tmp)
		return nil
	})
	if err != nil {
		return Record{}, err
	}
	return out, writeErr
}

// Delete removes the record under k under the exclusive lock and reports
// whether there was one. A failed write is a *WriteError.
func (s *Store) Delete(ctx context.Context, k Key) (existed bool, err error) {
	key := k.String()
	err = s.locked(ctx, func(c *contents) error {
		if _, existed = c.grants[key]; !existed {
			return nil
		}
		delete(c.grants, key)
		return s.write(c, nil)
	})
	return existed, err
}

// WriteError is a failure to write to a token store. It names the store
// (the token file's path, or a shared store's description such as
// "redis://host:6379/0") and the cause, never a token.
type WriteError struct {
	Path string
	Err  error
}

// Error implements error.
func (e *WriteError) Error() string {
	what := "token file "
	if strings.Contains(e.Path, "://") {
		what = "token store "
	}
	return fmt.Sprintf("tokenstore: writing %s%s: %v", what, e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *WriteError) Unwrap() error { return e.Err }

// CorruptError describes a token file that could not be decoded. The store
// moves such a file aside to MovedTo and reports it to the WithCorruptHandler
// function; when the move fails, MovedTo is empty and the CorruptError is
// returned by the operation.
type CorruptError struct {
	Path, MovedTo string
	Err           error
}

// Error implements error.
func (e *CorruptError) Error() string {
	if e.MovedTo == "" {
		return fmt.Sprintf("tokenstore: token file %s is corrupt: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("tokenstore: token file %s was corrupt (%v); moved aside to %s", e.Path, e.Err, e.MovedTo)
}

// Unwrap returns the cause.
func (e *CorruptError) Unwrap() error { return e.Err }

// contents is the token file as read under the lock.
type contents struct {
	grants     map[string]Record
	generation uint64 // 0 when there is no file, or one without checksum
	sum        string // hex SHA-256 of the file's bytes (of none when there is no file)
}

// empty is the contents of a store without a token file.
func empty() contents {
	return contents{grants: map[string]Record{}, sum: checksum(nil)}
}

// snapshot reads the store under the shared lock.
func (s *Store) snapshot(ctx context.Context) (map[string]Record, error) {
	lock, err := lockFile(ctx, s.lockPath, lockShared)
	if err != nil {
		return nil, err
	}
	c, err := s.read()
	var left []string
	if err == nil {
		left, err = s.leftovers()
	}
	_ = lock.Close()
	_, corrupt := errors.AsType[*CorruptError](err)
	if err != nil && !corrupt {
		return nil, err
	}
	if !corrupt && len(left) == 0 {
		return c.grants, nil
	}
	// Moving a corrupt file aside and dealing with a dead writer's temporary
	// files take the exclusive lock, under which the file is read again:
	// another process may have done it meanwhile.
	var m map[string]Record
	err = s.locked(ctx, func(c *contents) error {
		m = c.grants
		return nil
	})
	return m, err
}

// locked runs body with the exclusive lock held and the token file just
// read: empty if there is no file or it was corrupt and moved aside, and
// recovered from a dead writer's temporary file if there is one to recover.
func (s *Store) locked(ctx context.Context, body func(*contents) error) error {
	select {
	case s.exclusive <- struct{}{}:
		defer func() { <-s.exclusive }()
	case <-ctx.Done():
		return fmt.Errorf("tokenstore: waiting for the lock %s: %w", s.lockPath, ctx.Err())
	}
	lock, err := lockFile(ctx, s.lockPath, lockExclusive)
	if err != nil {
		return err
	}
	defer lock.Close()
	c, err := s.read()
	if ce, ok := errors.AsType[*CorruptError](err); ok {
		c, err = empty(), s.moveAside(ce.Err)
	}
	if err == nil {
		err = s.recover(&c)
	}
	if err != nil {
		return err
	}
	return body(&c)
}

// read reads and decodes the token file: a missing file is an empty store,
// content that does not decode is a *CorruptError.
func (s *Store) read() (contents, error) {
	f, err := openChecked(kindToken, s.path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return empty(), nil
	}
	if err != nil {
		return contents{}, readError(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return contents{}, readError(err)
	}
	m, h, err := decode(data)
	if err != nil {
		return contents{}, &CorruptError{Path: s.path, Err: err}
	}
	return contents{grants: m, generation: h.generation, sum: checksum(data)}, nil
}

// readError wraps a failure to read the token file; an *UnsafeError is
// returned as it is, being one line already.
func readError(err error) error {
	if _, ok := errors.AsType[*UnsafeError](err); ok {
		return err
	}
	return fmt.Errorf("tokenstore: reading token file: %w", err)
}

// moveAside renames the corrupt token file out of the way and reports it.
func (s *Store) moveAside(cause error) error {
	dest := s.path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(s.path, dest); err != nil {
		return &CorruptError{Path: s.path, Err: fmt.Errorf("%w; moving it aside: %w", cause, err)}
	}
	if s.onCorrupt != nil {
		s.onCorrupt(s.path, dest, cause)
	}
	return nil
}

// write replaces the token file with c's grants, as the next generation,
// through tmp (from createTemp; nil to create one now). The temporary file
// (mode 0600, in the same directory) is written and synced, renamed over the
// token file, and the directory synced, so that a crash leaves the old
// content, the new one, or the new one in a complete temporary file that
// recover renames into place.
func (s *Store) write(c *contents, tmp *os.File) error {
	data, err := encode(c.grants, header{generation: c.generation + 1, replaces: c.sum})
	if err == nil && tmp == nil {
		tmp, err = s.createTemp()
	}
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if err == nil {
		err = tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		discard(tmp)
		return &WriteError{Path: s.path, Err: err}
	}
	if err := syncDir(filepath.Dir(s.path)); err != nil {
		return &WriteError{Path: s.path, Err: err}
	}
	return nil
}
