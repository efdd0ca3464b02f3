package tokenstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// UnsafeError is a store that someone else could have written to: a file or
// directory that another user owns or can write, or a symbolic link where
// the token file or lock file should be. Its Error is one line naming the
// path and the fix, as ssh reports a key file with unsafe permissions.
type UnsafeError struct {
	Path    string // the file or directory refused
	Problem string // what is wrong, naming Path
	Fix     string // what makes it safe: a command, or a step
}

// Error implements error.
func (e *UnsafeError) Error() string { return "tokenstore: " + e.Problem + ": " + e.Fix }

// kind is the store's directory or one of its files, as errors name it.
type kind string

const (
	kindDir   kind = "token store directory"
	kindToken kind = "token file"
	kindLock  kind = "lock file"
	kindTemp  kind = "temporary token file"
)

// checkPerm reports what makes a file or directory of the store unsafe, or
// nil. what says which it is; mode, uid and gid are its own (from lstat, so
// that a link is seen as one); euid and egid are the process's. The rules
// are those sshd applies to the files it trusts, with one exception for
// Kubernetes:
//
//   - a symbolic link is refused (the store never follows one);
//   - the owner must be the process's user or root;
//   - no one else may write to it: other users never, the group only when
//     it is the process's group (fsGroup makes volumes group-writable, with
//     the pod running as that group).
func checkPerm(what kind, path string, mode fs.FileMode, uid, gid, euid, egid uint32) *UnsafeError {
	if mode&fs.ModeSymlink != 0 {
		fix := "replace the link with the file it points to"
		if what == kindLock || what == kindTemp {
			fix = "rm " + path // the store creates its own when it needs one
		}
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is a symbolic link", what, path), Fix: fix}
	}
	if uid != euid && uid != 0 {
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is owned by uid %d, not %d", what, path, uid, euid),
			Fix: fmt.Sprintf("chown %d %s", euid, path)}
	}
	others := mode&0o002 != 0
	group := mode&0o020 != 0 && gid != egid
	switch {
	case others && mode&fs.ModeSticky != 0:
		// Like /tmp: made for everyone's files; no chmod mends that.
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is writable by other users", what, path),
			Fix: "keep the token file in a directory of its own, e.g. mkdir -m 700 " + filepath.Join(path, "coop-proxy")}
	case others && group:
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is writable by other users and by group %d", what, path, gid),
			Fix: "chmod go-w " + path}
	case others:
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is writable by other users", what, path), Fix: "chmod o-w " + path}
	case group:
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is writable by group %d, not this process's group %d", what, path, gid, egid),
			Fix: "chmod g-w " + path}
	}
	return nil
}

// checkInfo applies checkPerm to fi, for this process.
func checkInfo(what kind, path string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if u := checkPerm(what, path, fi.Mode(), st.Uid, st.Gid, uint32(os.Geteuid()), uint32(os.Getegid())); u != nil {
		return u
	}
	return nil
}

// checkSafe checks the store's directory, and its token file and lock file
// when they exist. Other failures to look at the files are left to the
// operations that use them, which report them.
func (s *Store) checkSafe() error {
	dir := filepath.Dir(s.path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("tokenstore: checking the directory of %s: %w", s.path, err)
	}
	if err := checkInfo(kindDir, dir, fi); err != nil {
		return err
	}
	for _, f := range []struct {
		what kind
		path string
	}{{kindToken, s.path}, {kindLock, s.lockPath}} {
		if fi, err := os.Lstat(f.path); err == nil {
			if err := checkInfo(f.what, f.path, fi); err != nil {
				return err
			}
		}
	}
	return nil
}

// openChecked opens a file of the store without following a symbolic link
// (O_NOFOLLOW), and refuses it when checkPerm does or when it is not a
// regular file. The open does not block (O_NONBLOCK, which changes nothing
// for a regular file): opening a FIFO planted at the path would otherwise
// wait forever for a writer, with the store's lock held.
func openChecked(what kind, path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if errors.Is(err, syscall.ELOOP) {
		// ELOOP: path is a link (or a directory on the way loops).
		if fi, lerr := os.Lstat(path); lerr == nil {
			if uerr := checkInfo(what, path, fi); uerr != nil {
				return nil, uerr
			}
		}
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkInfo(what, path, fi)
	}
	if err == nil && !fi.Mode().IsRegular() {
		err = &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is %s, not a regular file", what, path, typeName(fi.Mode())),
			Fix: "move it out of the way; the store creates its own files"}
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// typeName names the type of a file that is not a regular file.
func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}
