package tokenstore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = Key{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "authorization_code", Scopes: []string{"farm:read"}}

// newStore opens a store in a directory Open has to create.
func newStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", "tokens.json"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// put stores r under k and returns what Update returned.
func put(t *testing.T, s *Store, k Key, r Record) Record {
	t.Helper()
	got, err := s.Update(t.Context(), k, func(Record, bool) (*Record, error) { return &r, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return got
}

func load(t *testing.T, s *Store, k Key) (Record, bool) {
	t.Helper()
	r, ok, err := s.Load(t.Context(), k)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r, ok
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if _, ok := load(t, s, testKey); ok {
		t.Fatal("empty store has a record")
	}
	before := time.Now()
	want := sampleRecord()
	got := put(t, s, testKey, want)
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(time.Now()) {
		t.Errorf("UpdatedAt = %v, want the time of the write", got.UpdatedAt)
	}
	want.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Update returned %#v, want %#v", got, want)
	}

	other, err := Open(s.Path()) // as another process would
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*Store{s, other} {
		r, ok := load(t, st, Key{TokenURL: testKey.TokenURL, ClientID: testKey.ClientID, GrantType: testKey.GrantType, Scopes: []string{"farm:read", "farm:read"}})
		if !ok || !reflect.DeepEqual(r, want) {
			t.Errorf("Load = %#v, %v; want %#v", r, ok, want)
		}
	}
	keys, err := other.Keys(t.Context())
	if err != nil || !slices.Equal(keys, []string{testKey.String()}) {
		t.Errorf("Keys = %q, %v", keys, err)
	}
}

func TestWritesLeaveOnlyDataAndLockFiles(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	for i := range 5 {
		put(t, s, Key{ClientID: strconv.Itoa(i)}, sampleRecord())
	}
	if _, err := s.Delete(t.Context(), Key{ClientID: "0"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"tokens.json", "tokens.json.lock"}
	if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}
}

type testError struct{ code int }

func (e *testError) Error() string { return "test error " + strconv.Itoa(e.code) }

func TestUpdateCallbackResults(t *testing.T) {
	t.Parallel()
	next := Record{AccessToken: "new-access", RefreshToken: "new-refresh", Scopes: []string{"farm:read"}}
	tests := []struct {
		name      string
		present   bool
		next      *Record
		err       error
		want      Record
		wantWrite bool
	}{
		{name: "nil on absent record writes nothing and returns zero", next: nil, want: Record{}},
		{name: "nil on present record writes nothing and returns it", present: true}, // want: what is stored
		{name: "error on absent record is passed through", err: &testError{1}},
		{name: "error on present record is passed through", present: true, err: &testError{2}},
		{name: "next on absent record is written", next: &next, want: next, wantWrite: true},
		{name: "next on present record replaces it", present: true, next: &next, want: next, wantWrite: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			var stored Record
			if tt.present {
				stored = put(t, s, testKey, sampleRecord())
				if tt.next == nil && tt.err == nil {
					tt.want = stored
				}
			}
			before, _ := os.ReadFile(s.Path())

			calls := 0
			got, err := s.Update(t.Context(), testKey, func(cur Record, ok bool) (*Record, error) {
				calls++
				if ok != tt.present {
					t.Errorf("fn got ok=%v, want %v", ok, tt.present)
				}
				if tt.present && !reflect.DeepEqual(cur, stored) {
					t.Errorf("fn got %#v, want %#v", cur, stored)
				}
				return tt.next, tt.err
			})
			if calls != 1 {
				t.Errorf("fn called %d times", calls)
			}

			if tt.err != nil {
				var te *testError
				if !errors.As(err, &te) || te != tt.err {
					t.Errorf("error = %v, want fn's error unchanged", err)
				}
				if !reflect.DeepEqual(got, Record{}) {
					t.Errorf("on error Update returned %#v", got)
				}
			} else if err != nil {
				t.Fatalf("Update: %v", err)
			}

			after, _ := os.ReadFile(s.Path())
			if !tt.wantWrite {
				if string(after) != string(before) {
					t.Errorf("file changed:\n%s\n->\n%s", before, after)
				}
				if tt.err == nil && !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Update returned %#v, want %#v", got, tt.want)
				}
				return
			}
			if got.UpdatedAt.IsZero() {
				t.Error("UpdatedAt not set")
			}
			want := tt.want
			want.UpdatedAt = got.UpdatedAt
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Update returned %#v, want %#v", got, want)
			}
			if r, _ := load(t, s, testKey); !reflect.DeepEqual(r, want) {
				t.Errorf("stored %#v, want %#v", r, want)
			}
		})
	}
}

func TestUpdateWriteFailureReturnsNewRecordAndWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		next Record
		// sabotage runs inside fn, with the lock held, just before the write.
		sabotage func(t *testing.T, path string)
		// keepsOld: the old file content is still in place afterwards.
		keepsOld bool
	}{
		{
			name: "file path replaced by a directory",
			next: Record{AccessToken: secretAccess + "-2", RefreshToken: secretRefresh + "-2"},
			sabotage: func(t *testing.T, path string) {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:     "token with a line break",
			next:     Record{AccessToken: secretAccess + "\r\n", RefreshToken: secretRefresh},
			keepsOld: true,
		},
		{
			name:     "record over 1 MiB",
			next:     Record{AccessToken: "SECRET" + strings.Repeat("x", maxFileSize), RefreshToken: secretRefresh},
			keepsOld: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			put(t, s, testKey, sampleRecord())
			old, err := os.ReadFile(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) {
				if tt.sabotage != nil {
					tt.sabotage(t, s.Path())
				}
				return &tt.next, nil
			})
			var we *WriteError
			if !errors.As(err, &we) {
				t.Fatalf("error = %v, want a *WriteError", err)
			}
			if we.Path != s.Path() || !strings.Contains(err.Error(), s.Path()) {
				t.Errorf("error does not name the file: %v", err)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error reveals a token: %.200s", err)
			}
			if got.AccessToken != tt.next.AccessToken || got.RefreshToken != tt.next.RefreshToken || got.UpdatedAt.IsZero() {
				t.Errorf("Update returned %v, want the new record", got)
			}
			if tt.keepsOld {
				if now, _ := os.ReadFile(s.Path()); string(now) != string(old) {
					t.Error("the failed write changed the file")
				}
			}
			for _, name := range dirNames(t, filepath.Dir(s.Path())) {
				if strings.Contains(name, ".tmp") {
					t.Errorf("temporary file left behind: %s", name)
				}
			}
		})
	}
}

func TestUpdateWritesEvenIfContextEndsDuringCallback(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	_, err := s.Update(ctx, testKey, func(Record, bool) (*Record, error) {
		cancel() // the refresh answer arrived as the caller gave up
		r := sampleRecord()
		return &r, nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if r, ok := load(t, s, testKey); !ok || r.RefreshToken != secretRefresh {
		t.Errorf("rotated record not written: %v, %v", r, ok)
	}
}

func TestUpdateAndDeleteKeepOtherKeys(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	keys := []Key{
		{ClientID: "a", GrantType: "client_credentials"},
		{ClientID: "b", GrantType: "client_credentials"},
		{ClientID: "c", GrantType: "authorization_code"},
	}
	want := map[string]Record{}
	for i, k := range keys {
		r := sampleRecord()
		r.AccessToken = "token-" + strconv.Itoa(i)
		want[k.String()] = put(t, s, k, r)
	}

	r := sampleRecord()
	r.AccessToken = "rotated"
	want[keys[0].String()] = put(t, s, keys[0], r)
	if existed, err := s.Delete(t.Context(), keys[1]); err != nil || !existed {
		t.Fatalf("Delete = %v, %v", existed, err)
	}
	delete(want, keys[1].String())

	data, err := os.ReadFile(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("file holds %v, want %v", got, want)
	}
}

func TestDeleteReportsWhetherTheRecordExisted(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if existed, err := s.Delete(t.Context(), testKey); err != nil || existed {
		t.Errorf("Delete on empty store = %v, %v", existed, err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Delete of nothing created the file: %v", err)
	}
	put(t, s, testKey, sampleRecord())
	if existed, err := s.Delete(t.Context(), testKey); err != nil || !existed {
		t.Errorf("Delete = %v, %v; want true, nil", existed, err)
	}
	if _, ok := load(t, s, testKey); ok {
		t.Error("record still there after Delete")
	}
}

type corruption struct{ path, movedTo string }

func TestCorruptFileIsMovedAsideAndStoreStartsEmpty(t *testing.T) {
	t.Parallel()
	valid, err := Encode(map[string]Record{testKey.String(): sampleRecord()})
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string][]byte{
		"garbage":         []byte("\x00\x01 this is not json"),
		"truncated JSON":  valid[:len(valid)-10],
		"wrong version":   []byte(`{"version":99,"grants":{}}`),
		"over 1 MiB":      append(slices.Clone(valid), make([]byte, maxFileSize)...),
		"control in body": []byte(`{"version":1,"grants":{"k":{"access_token":"a\nb"}}}`),
	}
	ops := map[string]func(t *testing.T, s *Store) error{
		"Load": func(t *testing.T, s *Store) error {
			_, ok, err := s.Load(t.Context(), testKey)
			if ok {
				t.Error("Load found a record in a corrupt file")
			}
			return err
		},
		"Keys": func(t *testing.T, s *Store) error {
			keys, err := s.Keys(t.Context())
			if len(keys) != 0 {
				t.Errorf("Keys = %q", keys)
			}
			return err
		},
		"Update": func(t *testing.T, s *Store) error {
			_, err := s.Update(t.Context(), testKey, func(_ Record, ok bool) (*Record, error) {
				if ok {
					t.Error("Update found a record in a corrupt file")
				}
				return nil, nil
			})
			return err
		},
		"Delete": func(t *testing.T, s *Store) error {
			existed, err := s.Delete(t.Context(), testKey)
			if existed {
				t.Error("Delete found a record in a corrupt file")
			}
			return err
		},
	}
	for cname, content := range contents {
		for oname, op := range ops {
			t.Run(cname+"/"+oname, func(t *testing.T) {
				t.Parallel()
				var (
					mu    sync.Mutex
					calls []corruption
				)
				s := newStore(t, WithCorruptHandler(func(path, movedTo string, err error) {
					mu.Lock()
					defer mu.Unlock()
					calls = append(calls, corruption{path, movedTo})
					if err == nil || strings.Contains(err.Error(), "SECRET") {
						t.Errorf("handler got cause %v", err)
					}
				}))
				if err := os.WriteFile(s.Path(), content, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := op(t, s); err != nil {
					t.Fatalf("%s on a corrupt file: %v", oname, err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(calls) != 1 || calls[0].path != s.Path() || !strings.HasPrefix(calls[0].movedTo, s.Path()+".corrupt-") {
					t.Fatalf("handler calls %v", calls)
				}
				if moved, err := os.ReadFile(calls[0].movedTo); err != nil || string(moved) != string(content) {
					t.Errorf("moved-aside file: %v (content kept: %v)", err, string(moved) == string(content))
				}
				// The store is usable again.
				want := put(t, s, testKey, sampleRecord())
				if r, ok := load(t, s, testKey); !ok || !reflect.DeepEqual(r, want) {
					t.Errorf("after recovery Load = %v, %v", r, ok)
				}
				if len(calls) != 1 {
					t.Errorf("handler called again: %v", calls)
				}
			})
		}
	}
}

func TestEmptyFileIsAnEmptyStore(t *testing.T) {
	t.Parallel()
	s := newStore(t, WithCorruptHandler(func(string, string, error) { t.Error("empty file reported as corrupt") }))
	if err := os.WriteFile(s.Path(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok := load(t, s, testKey); ok {
		t.Error("empty file has a record")
	}
	if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
		t.Errorf("directory holds %q", names)
	}
}

func TestUnreadablePathIsAnErrorNamingIt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) string // returns the store path
	}{
		{"path is a directory", func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "tokens.json")
			if err := os.Mkdir(p, 0o700); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"parent is a file", func(t *testing.T) string {
			parent := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(parent, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(parent, "tokens.json")
		}},
	}
	ops := map[string]func(t *testing.T, s *Store) error{
		"Load": func(t *testing.T, s *Store) error { _, _, err := s.Load(t.Context(), testKey); return err },
		"Keys": func(t *testing.T, s *Store) error { _, err := s.Keys(t.Context()); return err },
		"Update": func(t *testing.T, s *Store) error {
			_, err := s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) {
				t.Error("fn called on an unreadable store")
				return nil, nil
			})
			return err
		},
		"Delete": func(t *testing.T, s *Store) error { _, err := s.Delete(t.Context(), testKey); return err },
	}
	for _, tt := range tests {
		for oname, op := range ops {
			t.Run(tt.name+"/"+oname, func(t *testing.T) {
				t.Parallel()
				path := tt.setup(t)
				s, err := Open(path, WithCorruptHandler(func(string, string, error) { t.Error("unreadable file reported as corrupt") }))
				if err != nil {
					t.Fatalf("Open refused %s: %v", path, err)
				}
				err = op(t, s)
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error does not name %s: %v", path, err)
				}
				if _, ok := errors.AsType[*CorruptError](err); ok {
					t.Errorf("unreadable file reported as corrupt: %v", err)
				}
			})
		}
	}
	// The directory was not moved aside.
	p := tests[0].setup(t)
	s, _ := Open(p)
	_, _, _ = s.Load(t.Context(), testKey)
	if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
		t.Errorf("directory at the store path disturbed: %v", err)
	}
}

// holdLock takes the store's lock as another process would, until the test ends.
func holdLock(t *testing.T, s *Store, how lockMode) {
	t.Helper()
	f, err := lockFile(t.Context(), s.lockPath, how)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// holdInUpdate keeps st inside an Update callback until the test ends.
func holdInUpdate(t *testing.T, st *Store) {
	t.Helper()
	held, release, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_, _ = st.Update(context.Background(), testKey, func(Record, bool) (*Record, error) {
			close(held)
			<-release
			return nil, nil
		})
	}()
	<-held
	t.Cleanup(func() { close(release); <-done })
}

func TestWaitingForTheLockEndsWithTheContext(t *testing.T) {
	t.Parallel()
	holders := map[string]func(t *testing.T, s *Store){
		"exclusive lock by another process":    func(t *testing.T, s *Store) { holdLock(t, s, lockExclusive) },
		"Update in progress on the same Store": func(t *testing.T, s *Store) { holdInUpdate(t, s) },
		"Update in progress on another Store": func(t *testing.T, s *Store) {
			other, err := Open(s.Path())
			if err != nil {
				t.Fatal(err)
			}
			holdInUpdate(t, other)
		},
		"shared lock by another process": func(t *testing.T, s *Store) { holdLock(t, s, lockShared) },
	}
	ops := map[string]func(ctx context.Context, s *Store) error{
		"Load": func(ctx context.Context, s *Store) error { _, _, err := s.Load(ctx, testKey); return err },
		"Keys": func(ctx context.Context, s *Store) error { _, err := s.Keys(ctx); return err },
		"Update": func(ctx context.Context, s *Store) error {
			_, err := s.Update(ctx, testKey, func(Record, bool) (*Record, error) {
				r := sampleRecord()
				return &r, nil
			})
			return err
		},
		"Delete": func(ctx context.Context, s *Store) error { _, err := s.Delete(ctx, testKey); return err },
	}
	for hname, hold := range holders {
		for oname, op := range ops {
			// Readers share the lock with a reader.
			wantWait := !strings.HasPrefix(hname, "shared") || oname == "Update" || oname == "Delete"
			t.Run(hname+"/"+oname, func(t *testing.T) {
				t.Parallel()
				s := newStore(t)
				hold(t, s)
				const wait = 50 * time.Millisecond
				start := time.Now()
				ctx, cancel := context.WithTimeout(t.Context(), wait)
				defer cancel()
				err := op(ctx, s)
				if !wantWait {
					if err != nil {
						t.Errorf("reader blocked by a reader: %v", err)
					}
					return
				}
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("error = %v, want context.DeadlineExceeded", err)
				}
				if !strings.Contains(err.Error(), s.Path()) {
					t.Errorf("error does not name the store: %v", err)
				}
				if elapsed := time.Since(start); elapsed < wait {
					t.Errorf("gave up after %v, before the context ended", elapsed)
				}
			})
		}
	}
}

func TestConcurrentUpdatesInOneProcessLoseNothing(t *testing.T) {
	t.Parallel()
	first := newStore(t)
	second, err := Open(first.Path())
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, increments = 8, 25
	var wg sync.WaitGroup
	for i := range goroutines {
		s := []*Store{first, second}[i%2]
		wg.Go(func() {
			for range increments {
				if err := increment(t.Context(), s); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if r, _ := load(t, first, testKey); r.AccessToken != strconv.Itoa(goroutines*increments) {
		t.Errorf("counter = %q, want %d", r.AccessToken, goroutines*increments)
	}
}

// increment adds one to the counter kept in testKey's AccessToken.
func increment(ctx context.Context, s *Store) error {
	_, err := s.Update(ctx, testKey, func(cur Record, _ bool) (*Record, error) {
		n := 0
		if cur.AccessToken != "" {
			var err error
			if n, err = strconv.Atoi(cur.AccessToken); err != nil {
				return nil, err
			}
		}
		cur.AccessToken = strconv.Itoa(n + 1)
		return &cur, nil
	})
	return err
}

// A shared store's write error names the store, not a token file.
func TestWriteErrorNamesTheStore(t *testing.T) {
	for path, want := range map[string]string{
		"/var/lib/coop-proxy/tokens.json": "tokenstore: writing token file /var/lib/coop-proxy/tokens.json: boom",
		"redis://127.0.0.1:6379/0":        "tokenstore: writing token store redis://127.0.0.1:6379/0: boom",
	} {
		if got := (&WriteError{Path: path, Err: errors.New("boom")}).Error(); got != want {
			t.Errorf("WriteError for %s = %q, want %q", path, got, want)
		}
	}
}
