package tokenstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Environment of a helper process started by helper().
const (
	envMode    = "TOKENSTORE_HELPER"         // "increment" or "rotate"
	envPath    = "TOKENSTORE_HELPER_PATH"    // the token file
	envCount   = "TOKENSTORE_HELPER_COUNT"   // increment: how many
	envReady   = "TOKENSTORE_HELPER_READY"   // rotate: created once inside Update
	envRelease = "TOKENSTORE_HELPER_RELEASE" // rotate: Update returns once this exists
)

const rotatedByHelper = "access-rotated-by-helper"

// TestHelperProcess is the body of the processes the cross-process tests
// start; run directly it does nothing.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(envMode)
	if mode == "" {
		return
	}
	s, err := Open(os.Getenv(envPath))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch mode {
	case "increment":
		n, err := strconv.Atoi(os.Getenv(envCount))
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if err := increment(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	case "rotate":
		// Refresh the grant slowly: the lock is held until the test says so.
		_, err := s.Update(ctx, testKey, func(cur Record, _ bool) (*Record, error) {
			if err := os.WriteFile(os.Getenv(envReady), nil, 0o600); err != nil {
				return nil, err
			}
			if err := waitForFile(ctx, os.Getenv(envRelease)); err != nil {
				return nil, err
			}
			cur.AccessToken, cur.RefreshToken = rotatedByHelper, "refresh-rotated-by-helper"
			return &cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("unknown helper mode %q", mode)
	}
}

// helper starts this test binary as a helper process in the given mode.
func helper(t *testing.T, path, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), append(env, envMode+"="+mode, envPath+"="+path)...)
	out := &bytes.Buffer{} // read only after Wait
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd
}

// waitHelper waits for cmd and fails the test if it failed.
func waitHelper(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Wait(); err != nil {
		t.Errorf("helper process: %v\n%s", err, cmd.Stdout.(*bytes.Buffer).String())
	}
}

func waitForFile(ctx context.Context, path string) error {
	for {
		if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func TestCrossProcessUpdatesLoseNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	const processes, increments = 4, 50
	var cmds []*exec.Cmd
	for range processes {
		cmds = append(cmds, helper(t, s.Path(), "increment", envCount+"="+strconv.Itoa(increments)))
	}
	for _, cmd := range cmds {
		waitHelper(t, cmd)
	}
	r, ok := load(t, s, testKey)
	if want := strconv.Itoa(processes * increments); !ok || r.AccessToken != want {
		t.Errorf("counter = %q, want %s", r.AccessToken, want)
	}
}

func TestCrossProcessUpdateWaitsForHolderAndSeesItsRotation(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	put(t, s, testKey, sampleRecord())
	dir := t.TempDir()
	ready, release := filepath.Join(dir, "ready"), filepath.Join(dir, "release")
	cmd := helper(t, s.Path(), "rotate", envReady+"="+ready, envRelease+"="+release)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := waitForFile(ctx, ready); err != nil {
		t.Fatal(err)
	}

	type result struct {
		cur, got Record
		calls    int
		err      error
	}
	done := make(chan result, 1)
	go func() {
		var res result
		res.got, res.err = s.Update(ctx, testKey, func(cur Record, ok bool) (*Record, error) {
			res.calls++
			res.cur = cur
			if ok && cur.AccessToken == rotatedByHelper {
				return nil, nil // another process already refreshed: use its tokens
			}
			r := Record{AccessToken: "refreshed-twice"}
			return &r, nil
		})
		done <- res
	}()

	select {
	case res := <-done:
		t.Fatalf("Update did not wait for the process holding the lock: fn saw %v, Update returned %v, %v", res.cur, res.got, res.err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.WriteFile(release, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := <-done
	waitHelper(t, cmd)
	if res.err != nil {
		t.Fatalf("Update: %v", res.err)
	}
	if res.calls != 1 || res.cur.AccessToken != rotatedByHelper || res.got.AccessToken != rotatedByHelper {
		t.Errorf("fn called %d times with %v; Update returned %v; want the helper's rotated record", res.calls, res.cur, res.got)
	}
	if r, _ := load(t, s, testKey); r.AccessToken != rotatedByHelper || r.RefreshToken != "refresh-rotated-by-helper" {
		t.Errorf("stored %v, want the helper's rotated record", r)
	}
}
