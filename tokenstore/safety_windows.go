package tokenstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/coop-proxy/coop-proxy/internal/winacl"
)

// checkInfo refuses a link (checkLink), and a file or directory of the
// store that an account other than this user, SYSTEM and the
// Administrators may read or change, or that another account owns: the
// access control list is to Windows what the mode bits and owner are to
// checkPerm on Unix. Reading is refused too because, unlike on Unix where
// the store creates its files with mode 0600, a file created on Windows
// takes its access from the directory's inheritable entries.
func checkInfo(what kind, path string, fi fs.FileInfo) error {
	if u := checkLink(what, path, fi.Mode()); u != nil {
		return u
	}
	user, err := winacl.CurrentUser()
	if err != nil {
		return fmt.Errorf("tokenstore: checking %s: %w", path, err)
	}
	d, err := winacl.Read(path)
	if err != nil {
		return fmt.Errorf("tokenstore: checking %s %s: %w", what, path, err)
	}
	if p := d.Problem(user.SID, winacl.PrivateRights); p != "" {
		return &UnsafeError{Path: path, Problem: fmt.Sprintf("%s %s %s", what, path, p),
			Fix: d.Fix(path, user.SID, user.Name, what == kindDir)}
	}
	return nil
}

// openNoFollow opens path, refusing a symbolic link found there first with
// an *UnsafeError. Windows' os.OpenFile has no O_NOFOLLOW; a link made
// between the look and the open would need another account to write to
// the directory, which checkSafe has refused (and creating links takes a
// privilege on Windows). FIFOs do not exist in the file system there.
func openNoFollow(what kind, path string, flag int, perm fs.FileMode) (*os.File, error) {
	if fi, err := os.Lstat(path); err == nil {
		if u := checkLink(what, path, fi.Mode()); u != nil {
			return nil, u
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return os.OpenFile(path, flag, perm)
}

// restrictDir gives a directory the store has just created an access
// control list of its own, for this user and SYSTEM only (mode 0700's
// counterpart), which the files created in it inherit.
func restrictDir(dir string) error { return winacl.Restrict(dir) }

// syncDir does nothing on Windows: a directory cannot be opened for
// FlushFileBuffers there, and NTFS journals the rename itself.
func syncDir(string) error { return nil }
