//go:build unix

package tokenstore

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestOpenCreatesPrivateDirectoryButNoFile(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	path := filepath.Join(root, "a", "b", "tokens.json")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	if m := mode(t, filepath.Dir(path)); m != 0o700 {
		t.Errorf("directory mode %v, want 0700", m)
	}
	if names := dirNames(t, filepath.Dir(path)); len(names) != 0 {
		t.Errorf("Open created files: %v", names)
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func TestOpenLeavesExistingDirectoryAlone(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Join(dir, "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, testKey, sampleRecord())
	if m := mode(t, dir); m != 0o755 {
		t.Errorf("existing directory mode changed to %v", m)
	}
}

// Not parallel: the umask is process-wide.
func TestOpenSetsDirectoryModeDespiteUmask(t *testing.T) {
	old := syscall.Umask(0o777)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "state", "tokens.json")
	if _, err := Open(path); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Dir(path)); m != 0o700 {
		t.Errorf("directory mode %v, want 0700", m)
	}
}

func TestWrittenFilesArePrivate(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	// A file left readable by someone else is replaced by a private one.
	if err := os.WriteFile(s.Path(), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	put(t, s, testKey, sampleRecord())
	for _, p := range []string{s.Path(), s.Path() + ".lock"} {
		if m := mode(t, p); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, m)
		}
	}
}
