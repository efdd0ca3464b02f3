package tokenstore

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// checkLink refuses a symbolic link: the store never follows one.
func checkLink(what kind, path string, mode fs.FileMode) *UnsafeError {
	if mode&fs.ModeSymlink == 0 {
		return nil
	}
	fix := "replace the link with the file it points to"
	if what == kindLock || what == kindTemp {
		fix = "rm " + path // the store creates its own when it needs one
	}
	return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s is a symbolic link", what, path), Fix: fix}
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
// (openNoFollow), and refuses it when checkInfo does or when it is not a
// regular file.
func openChecked(what kind, path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := openNoFollow(what, path, flag, perm)
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
