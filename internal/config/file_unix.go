//go:build unix

package config

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// openNonblock opens a file without waiting for a FIFO's writer.
const openNonblock = syscall.O_NONBLOCK

// checkWriters applies the token store's rules (sshd's) to the file: owned
// by this user or root, writable by no other user, and by its group only
// when it is this process's (fsGroup).
func checkWriters(file string, fi fs.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	switch mode := fi.Mode(); {
	case st.Uid != uint32(os.Geteuid()) && st.Uid != 0:
		return fmt.Errorf("%s is owned by uid %d, not %d, and its routes say where the tokens go: chown %d %s", file, st.Uid, os.Geteuid(), os.Geteuid(), file)
	case mode&0o002 != 0:
		return fmt.Errorf("%s is writable by other users, and its routes say where the tokens go: chmod o-w %s", file, file)
	case mode&0o020 != 0 && st.Gid != uint32(os.Getegid()):
		return fmt.Errorf("%s is writable by group %d, not this process's group %d, and its routes say where the tokens go: chmod g-w %s", file, st.Gid, os.Getegid(), file)
	}
	return nil
}
