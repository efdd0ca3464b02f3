//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The file's routes say where tokens and the client's credentials go: one
// that another user can write would let that user add a route to a server
// of theirs, with the farmer's grant. A link is followed (Kubernetes mounts
// a ConfigMap's files as links).
func TestAConfigurationFileOthersCanWriteIsRefused(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "coop-proxy.yaml")
	if err := os.WriteFile(file, []byte("routes:\n  - name: a\n    client_id: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, link} {
		if _, err := load(t, nil, map[string]string{"CONFIG": path, "STORE": filepath.Join(dir, "t.json")}, Needs{}); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	if err := os.Chmod(file, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, link} {
		_, err := load(t, nil, map[string]string{"CONFIG": path, "STORE": filepath.Join(dir, "t.json")}, Needs{})
		if err == nil || !strings.Contains(err.Error(), "writable by other users") || !strings.Contains(err.Error(), "chmod o-w") {
			t.Fatalf("%s, mode 0666: %v", path, err)
		}
	}
}

// A configuration file that is not a regular file is refused at once: a
// FIFO put at its path would block the read (and a reload, and with it
// the shutdown that waits for the watcher) until someone writes to it.
func TestAConfigurationFileThatIsAFIFOIsRefusedAtOnce(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "coop-proxy.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := load(t, nil, map[string]string{"CONFIG": fifo, "STORE": filepath.Join(dir, "t.json")}, Needs{})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("%v", err)
		}
	case <-time.After(5 * time.Second):
		w, _ := os.OpenFile(fifo, os.O_WRONLY, 0) // unblock the read
		w.Close()
		t.Fatal("the load waited on the FIFO")
	}
}

// A FIFO at a key, certificate or secret file's path (a mistake, or
// planted) must not hang the load: check-config, start and every reload
// after it would wait forever for a writer that never comes.
func TestAFIFOAsACredentialFileIsAnErrorNotAHang(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range []map[string]string{
		{"CLIENT_ID": "app", "CLIENT_SECRET_FILE": fifo},
		{"CLIENT_ID": "app", "AUTH_STYLE": "private_key_jwt", "CLIENT_KEY_FILE": fifo},
		{"CLIENT_ID": "app", "CLIENT_SECRET": "s", "DPOP": "true", "DPOP_KEY_FILE": fifo},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := load(t, nil, env, Everything)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), fifo) {
				t.Errorf("%v: %v; want a problem naming %s", env, err, fifo)
			}
		case <-time.After(5 * time.Second):
			// Unblock the open so the goroutine ends.
			if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				_ = f.Close()
			}
			t.Fatalf("%v: reading a FIFO as a credential file did not end", env)
		}
	}
}
