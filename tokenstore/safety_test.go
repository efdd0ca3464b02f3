//go:build unix

package tokenstore

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCheckPerm(t *testing.T) {
	t.Parallel()
	const (
		me, myGroup = 1000, 1000
		other       = 1234
		p           = "/x/state"
	)
	tests := []struct {
		name      string
		what      kind
		mode      fs.FileMode
		uid, gid  uint32
		root      bool   // the process runs as root (else as me, in myGroup)
		wantError string // "" = accepted
	}{
		{name: "private directory", what: kindDir, mode: fs.ModeDir | 0o700, uid: me, gid: myGroup},
		{name: "directory readable by all", what: kindDir, mode: fs.ModeDir | 0o755, uid: me, gid: other},
		{name: "directory owned by root", what: kindDir, mode: fs.ModeDir | 0o755, uid: 0, gid: 0},
		{name: "group-writable directory of our group (fsGroup)", what: kindDir, mode: fs.ModeDir | fs.ModeSetgid | 0o775, uid: 0, gid: myGroup},
		{name: "private file", what: kindToken, mode: 0o600, uid: me, gid: myGroup},
		{name: "file readable by all", what: kindToken, mode: 0o644, uid: me, gid: myGroup},
		{name: "file owned by root, writable by our group", what: kindToken, mode: 0o660, uid: 0, gid: myGroup},
		{name: "root's own files", what: kindLock, mode: 0o600, uid: 0, gid: 0, root: true},

		{name: "world-writable directory", what: kindDir, mode: fs.ModeDir | 0o777, uid: me, gid: myGroup,
			wantError: "tokenstore: token store directory /x/state is writable by other users: chmod o-w /x/state"},
		{name: "sticky world-writable directory (/tmp)", what: kindDir, mode: fs.ModeDir | fs.ModeSticky | 0o777, uid: 0, gid: 0,
			wantError: "tokenstore: token store directory /x/state is writable by other users: keep the token file in a directory of its own, e.g. mkdir -m 700 /x/state/coop-proxy"},
		{name: "world- and group-writable file", what: kindToken, mode: 0o666, uid: me, gid: other,
			wantError: "tokenstore: token file /x/state is writable by other users and by group 1234: chmod go-w /x/state"},
		{name: "world-writable lock file", what: kindLock, mode: 0o602, uid: me, gid: myGroup,
			wantError: "tokenstore: lock file /x/state is writable by other users: chmod o-w /x/state"},
		{name: "directory writable by another group", what: kindDir, mode: fs.ModeDir | 0o770, uid: me, gid: other,
			wantError: "tokenstore: token store directory /x/state is writable by group 1234, not this process's group 1000: chmod g-w /x/state"},
		{name: "directory owned by another user", what: kindDir, mode: fs.ModeDir | 0o700, uid: other, gid: other,
			wantError: "tokenstore: token store directory /x/state is owned by uid 1234, not 1000: chown 1000 /x/state"},
		{name: "token file owned by another user", what: kindToken, mode: 0o600, uid: other, gid: myGroup,
			wantError: "tokenstore: token file /x/state is owned by uid 1234, not 1000: chown 1000 /x/state"},
		{name: "running as root, file owned by another user", what: kindToken, mode: 0o600, uid: other, gid: other, root: true,
			wantError: "tokenstore: token file /x/state is owned by uid 1234, not 0: chown 0 /x/state"},
		{name: "token file is a link", what: kindToken, mode: fs.ModeSymlink | 0o777, uid: me, gid: myGroup,
			wantError: "tokenstore: token file /x/state is a symbolic link: replace the link with the file it points to"},
		{name: "lock file is a link", what: kindLock, mode: fs.ModeSymlink | 0o777, uid: me, gid: myGroup,
			wantError: "tokenstore: lock file /x/state is a symbolic link: rm /x/state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			euid, egid := uint32(me), uint32(myGroup)
			if tt.root {
				euid, egid = 0, 0
			}
			err := checkPerm(tt.what, p, tt.mode, tt.uid, tt.gid, euid, egid)
			if tt.wantError == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %q", tt.wantError)
			}
			if err.Error() != tt.wantError {
				t.Errorf("error\n%s\nwant\n%s", err, tt.wantError)
			}
			if err.Path != p {
				t.Errorf("Path = %q, want %q", err.Path, p)
			}
		})
	}
}

// openUnsafe opens path and returns the *UnsafeError it must fail with.
func openUnsafe(t *testing.T, path string) *UnsafeError {
	t.Helper()
	s, err := Open(path)
	ue, ok := errors.AsType[*UnsafeError](err)
	if !ok {
		t.Fatalf("Open = %v, %v; want an *UnsafeError", s, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
	return ue
}

func TestOpenRefusesWorldWritableDirectory(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tokens.json")
	ue := openUnsafe(t, path)
	if ue.Path != dir || ue.Fix != "chmod o-w "+dir {
		t.Errorf("error %v: Path %q, Fix %q", ue, ue.Path, ue.Fix)
	}
	// The fix it names is enough.
	if err := os.Chmod(dir, 0o775); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path); err != nil {
		t.Errorf("after %s: %v", ue.Fix, err)
	}
}

// asRoot skips a test that needs to give files away to another user.
func asRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("giving a file to another user needs root")
	}
}

func TestOpenRefusesStoreOwnedByAnotherUser(t *testing.T) {
	t.Parallel()
	asRoot(t)
	const other = 1234
	for _, target := range []string{"directory", "token file", "lock file"} {
		t.Run(target, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			put(t, s, testKey, sampleRecord()) // creates both files
			p := map[string]string{"directory": filepath.Dir(s.Path()), "token file": s.Path(), "lock file": s.lockPath}[target]
			if err := os.Chown(p, other, other); err != nil {
				t.Fatal(err)
			}
			ue := openUnsafe(t, s.Path())
			if ue.Path != p || !strings.Contains(ue.Problem, "owned by uid 1234") || ue.Fix != "chown 0 "+p {
				t.Errorf("error %v: Path %q, Fix %q", ue, ue.Path, ue.Fix)
			}
		})
	}
}

// The store of issue 7's report: a directory mode 0777 owned by another
// user, who planted a token file there.
func TestOpenRefusesAnotherUsersWorldWritableDirectoryWithAPlantedToken(t *testing.T) {
	t.Parallel()
	asRoot(t)
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := Encode(map[string]Record{testKey.String(): {AccessToken: "at-planted", RefreshToken: "rt-planted"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, path} {
		if err := os.Chown(p, 1234, 1234); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	ue := openUnsafe(t, path)
	if want := "tokenstore: token store directory " + dir + " is owned by uid 1234, not 0: chown 0 " + dir; ue.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", ue, want)
	}
}

func TestOpenRefusesStoreWritableByAnotherGroup(t *testing.T) {
	t.Parallel()
	asRoot(t)
	s := newStore(t)
	put(t, s, testKey, sampleRecord())
	if err := os.Chown(s.Path(), 0, 1234); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(s.Path(), 0o660); err != nil {
		t.Fatal(err)
	}
	ue := openUnsafe(t, s.Path())
	if ue.Path != s.Path() || ue.Fix != "chmod g-w "+s.Path() {
		t.Errorf("error %v", ue)
	}
	// Our own group may write (Kubernetes' fsGroup).
	if err := os.Chown(s.Path(), 0, os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Path()); err != nil {
		t.Errorf("group-writable file of our group refused: %v", err)
	}
}

func TestTokenPlantedAfterOpenIsRefused(t *testing.T) {
	t.Parallel()
	asRoot(t)
	s := newStore(t)
	put(t, s, testKey, sampleRecord())
	// Another user replaces the token file, in a directory that was safe
	// when the store was opened.
	planted := Record{AccessToken: "at-planted", RefreshToken: "rt-planted"}
	data, err := Encode(map[string]Record{testKey.String(): planted})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path()+".new", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.Path()+".new", 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.Path()+".new", s.Path()); err != nil {
		t.Fatal(err)
	}
	r, _, err := s.Load(t.Context(), testKey)
	if _, ok := errors.AsType[*UnsafeError](err); !ok || r.AccessToken != "" {
		t.Errorf("Load = %v, %v; want an *UnsafeError", r, err)
	}
	_, err = s.Update(t.Context(), testKey, func(cur Record, _ bool) (*Record, error) {
		t.Errorf("Update called fn with %v", cur)
		return nil, nil
	})
	if _, ok := errors.AsType[*UnsafeError](err); !ok {
		t.Errorf("Update: %v; want an *UnsafeError", err)
	}
}

func TestSymlinksAreNotFollowed(t *testing.T) {
	t.Parallel()
	for _, link := range []string{"token file", "lock file"} {
		t.Run(link, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			put(t, s, testKey, sampleRecord())
			p := map[string]string{"token file": s.Path(), "lock file": s.lockPath}[link]
			target := filepath.Join(t.TempDir(), "target")
			data, err := Encode(map[string]Record{testKey.String(): {AccessToken: "at-planted"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(target, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}

			// Planted before Open: Open refuses it.
			ue := openUnsafe(t, s.Path())
			if ue.Path != p || !strings.HasSuffix(ue.Problem, "is a symbolic link") {
				t.Errorf("Open: %v", ue)
			}
			// Planted after Open: every operation refuses it.
			r, _, err := s.Load(t.Context(), testKey)
			if ue, ok := errors.AsType[*UnsafeError](err); !ok || ue.Path != p || r.AccessToken != "" {
				t.Errorf("Load = %v, %v; want an *UnsafeError for %s", r, err, p)
			}
			if _, err := s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) {
				t.Error("Update called fn")
				return nil, nil
			}); err == nil {
				t.Error("Update succeeded")
			}
			if got, err := os.ReadFile(target); err != nil || string(got) != string(data) {
				t.Errorf("link target changed: %v", err)
			}
		})
	}
	// A dangling link where the lock file goes: not created through.
	s := newStore(t)
	target := filepath.Join(t.TempDir(), "created-through-link")
	if err := os.Symlink(target, s.lockPath); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) { return nil, nil }); err == nil {
		t.Error("Update succeeded")
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file created through the link: %v", err)
	}
}

func TestLeftoverSymlinkIsRemovedNotFollowed(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithRecoverHandler(func(path, from string) { t.Errorf("recovered from %s", from) }))
	want := put(t, s, testKey, sampleRecord())
	journal := journalFor(t, s, rotated())
	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, journal, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, s.Path()+".tmp-1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := load(t, s, testKey); !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %v, want the token file's record", got)
	}
	if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
		t.Errorf("directory holds %q", names)
	}
	if data, err := os.ReadFile(target); err != nil || !bytes.Equal(data, journal) {
		t.Errorf("link target disturbed: %v", err)
	}
}

// finishesSoon runs op and fails the test when it has not returned within
// a bound far above any scheduling delay (an open(2) of a FIFO blocks
// until a writer comes, which none will).
func finishesSoon(t *testing.T, what string, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still blocked after 5s", what)
		return nil
	}
}

func TestFIFOsInTheStoreNeverBlock(t *testing.T) {
	t.Parallel()
	t.Run("token file", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := syscall.Mkfifo(s.Path(), 0o600); err != nil {
			t.Fatal(err)
		}
		err := finishesSoon(t, "Load", func() error { _, _, err := s.Load(t.Context(), testKey); return err })
		u, ok := errors.AsType[*UnsafeError](err)
		if !ok || u.Path != s.Path() || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("Load: %v; want an *UnsafeError naming %s as not a regular file", err, s.Path())
		}
	})
	t.Run("lock file", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := syscall.Mkfifo(s.Path()+".lock", 0o600); err != nil {
			t.Fatal(err)
		}
		err := finishesSoon(t, "Update", func() error {
			_, err := s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) { r := sampleRecord(); return &r, nil })
			return err
		})
		if _, ok := errors.AsType[*UnsafeError](err); !ok || !strings.Contains(err.Error(), s.Path()+".lock") {
			t.Errorf("Update: %v; want an *UnsafeError naming the lock file", err)
		}
	})
	t.Run("leftover temporary file", func(t *testing.T) {
		t.Parallel()
		s := newStore(t, WithRecoverHandler(func(path, from string) { t.Errorf("recovered from %s", from) }))
		want := put(t, s, testKey, sampleRecord())
		if err := syscall.Mkfifo(s.Path()+".tmp-1", 0o600); err != nil {
			t.Fatal(err)
		}
		var got Record
		err := finishesSoon(t, "Load", func() error { var err error; got, _, err = s.Load(t.Context(), testKey); return err })
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Load = %v, %v; want the token file's record", got, err)
		}
		if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
			t.Errorf("directory holds %q", names)
		}
	})
}
