//go:build unix

package login

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// fakeCommand puts an executable name on a fresh PATH that writes its
// arguments to the returned FIFO.
func fakeCommand(t *testing.T, name string) (fifo string) {
	t.Helper()
	dir := t.TempDir()
	fifo = filepath.Join(dir, "args")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"$@\" > '" + fifo + "'\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return fifo
}

func readFIFO(t *testing.T, fifo string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(wait):
		t.Fatal("the browser command did not run")
		return ""
	}
}

// On Linux (where the tests run) the system's way is xdg-open; the other
// systems' choices are TestBrowserCommands'.
func TestBrowserOpener(t *testing.T) {
	const u = "http://coop.example/authorize?a=1&b=2"
	tests := []struct {
		name, command, browser, want string
	}{
		{"xdg-open", "xdg-open", "", u + "\n"},
		{"$BROWSER with the URL appended", "mybrowser", "nothere:mybrowser --new-window", "--new-window " + u + "\n"},
		{"$BROWSER with %s", "mybrowser", "mybrowser --url=%s --private", "--url=" + u + " --private\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fifo := fakeCommand(t, tt.command)
			t.Setenv("BROWSER", tt.browser)
			open := BrowserOpener()
			if open == nil {
				t.Fatal("no opener")
			}
			if err := open(u); err != nil {
				t.Fatal(err)
			}
			if got := readFIFO(t, fifo); got != tt.want {
				t.Errorf("ran with %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBrowserOpenerIsNilWithoutABrowser(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("BROWSER", "nothere")
	if BrowserOpener() != nil {
		t.Error("an opener without any browser command")
	}
}
