package config

import (
	"fmt"
	"io/fs"

	"github.com/coop-proxy/coop-proxy/internal/winacl"
)

// openNonblock is nothing on Windows, which has no FIFOs in its file system.
const openNonblock = 0

// checkWriters refuses the file when an account other than this user,
// SYSTEM and the Administrators owns it or may change it (its access
// control list; others may read it, as a Unix mode 0644 allows).
func checkWriters(file string, _ fs.FileInfo) error {
	user, err := winacl.CurrentUser()
	if err != nil {
		return fmt.Errorf("checking %s: %w", file, err)
	}
	d, err := winacl.Read(file)
	if err != nil {
		return err
	}
	if p := d.Problem(user.SID, winacl.WriteRights); p != "" {
		return fmt.Errorf("%s %s, and its routes say where the tokens go: %s", file, p, d.Fix(file, user.SID, user.Name, false))
	}
	return nil
}
