//go:build unix

package tokenstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
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
	if u := checkLink(what, path, mode); u != nil {
		return u
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

// openNoFollow opens path without following a symbolic link (O_NOFOLLOW):
// a link is refused with an *UnsafeError. The open does not block
// (O_NONBLOCK, which changes nothing for a regular file): opening a FIFO
// planted at the path would otherwise wait forever for a writer, with the
// store's lock held.
func openNoFollow(what kind, path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, perm)
	if errors.Is(err, syscall.ELOOP) {
		// ELOOP: path is a link (or a directory on the way loops).
		if fi, lerr := os.Lstat(path); lerr == nil {
			if uerr := checkInfo(what, path, fi); uerr != nil {
				return nil, uerr
			}
		}
	}
	return f, err
}

// restrictDir gives a directory the store has just created mode 0700,
// whatever the umask.
func restrictDir(dir string) error { return os.Chmod(dir, 0o700) }

// syncDir makes a rename in dir durable. File systems that cannot sync a
// directory (EINVAL, ENOTSUP) are accepted as they are.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	err = d.Sync()
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}
