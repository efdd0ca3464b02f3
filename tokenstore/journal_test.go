package tokenstore

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// recoveryOps are the operations that must deal with a dead writer's
// temporary files; each reports the record under testKey it saw, if any.
var recoveryOps = map[string]func(t *testing.T, s *Store) (Record, bool){
	"Load": func(t *testing.T, s *Store) (Record, bool) { return load(t, s, testKey) },
	"Keys": func(t *testing.T, s *Store) (Record, bool) {
		keys, err := s.Keys(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(keys, testKey.String()) {
			return Record{}, false
		}
		return load(t, s, testKey)
	},
	"Update": func(t *testing.T, s *Store) (Record, bool) {
		var seen Record
		var found bool
		if _, err := s.Update(t.Context(), testKey, func(cur Record, ok bool) (*Record, error) {
			seen, found = cur, ok
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		return seen, found
	},
	"Delete": func(t *testing.T, s *Store) (Record, bool) {
		// Delete another key: what it keeps of testKey is what it saw.
		if _, err := s.Delete(t.Context(), Key{ClientID: "other"}); err != nil {
			t.Fatal(err)
		}
		return load(t, s, testKey)
	},
}

// deadWriter leaves in s's directory the temporary file that a writer
// storing next over the current token file leaves when killed just before
// its rename, and returns its path and content.
func deadWriter(t *testing.T, s *Store, next Record) (string, []byte) {
	t.Helper()
	journal := journalFor(t, s, next)
	tmp := s.Path() + ".tmp-123456789"
	if err := os.WriteFile(tmp, journal, 0o600); err != nil {
		t.Fatal(err)
	}
	return tmp, journal
}

// journalFor is the content of the temporary file a writer storing next
// over s's current token file writes.
func journalFor(t *testing.T, s *Store, next Record) []byte {
	t.Helper()
	data, err := os.ReadFile(s.Path())
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	m, h, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	m[testKey.String()] = next
	journal, err := encode(m, header{generation: h.generation + 1, replaces: checksum(data)})
	if err != nil {
		t.Fatal(err)
	}
	return journal
}

func rotated() Record {
	r := sampleRecord()
	r.AccessToken, r.RefreshToken = "at-SECRET-rotated", "rt-SECRET-rotated"
	return r
}

func TestDeadWritersTemporaryFileIsRecovered(t *testing.T) {
	t.Parallel()
	for oname, op := range recoveryOps {
		for _, old := range []string{"no token file", "file without checksum (written before the journal)", "file with checksum"} {
			t.Run(oname+"/"+old, func(t *testing.T) {
				t.Parallel()
				var recoveries [][2]string
				s := newStore(t, WithRecoverHandler(func(path, from string) {
					recoveries = append(recoveries, [2]string{path, from})
				}))
				switch old {
				case "file without checksum (written before the journal)":
					v1 := `{"version":1,"grants":{"` + testKey.String() + `":{"access_token":"at-old","refresh_token":"rt-old"}}}`
					if err := os.WriteFile(s.Path(), []byte(v1), 0o600); err != nil {
						t.Fatal(err)
					}
				case "file with checksum":
					put(t, s, testKey, sampleRecord())
				}
				tmp, journal := deadWriter(t, s, rotated())

				got, ok := op(t, s)
				if !ok || got.RefreshToken != rotated().RefreshToken {
					t.Errorf("%s saw %v, %v; want the dead writer's rotated record", oname, got, ok)
				}
				if len(recoveries) != 1 || recoveries[0] != [2]string{s.Path(), tmp} {
					t.Errorf("recover handler calls %q, want one with (%s, %s)", recoveries, s.Path(), tmp)
				}
				if data, _ := os.ReadFile(s.Path()); !bytes.Equal(data, journal) {
					t.Errorf("token file is not the recovered temporary file:\n%s", data)
				}
				if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
					t.Errorf("directory holds %q", names)
				}
				// The next write continues from the recovered generation.
				put(t, s, testKey, sampleRecord())
				data, _ := os.ReadFile(s.Path())
				if _, h, err := decode(data); err != nil || h.generation != generationOf(t, journal)+1 {
					t.Errorf("after recovery and a write: generation %d, %v", h.generation, err)
				}
			})
		}
	}
}

func generationOf(t *testing.T, data []byte) uint64 {
	t.Helper()
	_, h, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return h.generation
}

func TestLeftoversThatAreNotANewerCompleteJournalAreRemoved(t *testing.T) {
	t.Parallel()
	// Each returns the content of a leftover, given the store's token file.
	leftovers := map[string]func(t *testing.T, s *Store) []byte{
		"empty (killed before writing)": func(*testing.T, *Store) []byte { return nil },
		"cut short": func(t *testing.T, s *Store) []byte {
			j := journalFor(t, s, rotated())
			return j[:len(j)-5]
		},
		"cut short before the checksum": func(t *testing.T, s *Store) []byte {
			j := journalFor(t, s, rotated())
			i := bytes.LastIndex(j, []byte(`,`))
			return append(j[:i:i], "\n}\n"...)
		},
		"damaged (checksum mismatch)": func(t *testing.T, s *Store) []byte {
			j := journalFor(t, s, rotated())
			return bytes.Replace(j, []byte("rt-SECRET-rotated"), []byte("rt-SECRET-rotatee"), 1)
		},
		"older generation": func(t *testing.T, s *Store) []byte {
			data, _ := os.ReadFile(s.Path())
			m := map[string]Record{testKey.String(): rotated()}
			j, err := encode(m, header{generation: generationOf(t, data), replaces: checksum(data)})
			if err != nil {
				t.Fatal(err)
			}
			return j
		},
		"written over another token file": func(t *testing.T, s *Store) []byte {
			data, _ := os.ReadFile(s.Path())
			m := map[string]Record{testKey.String(): rotated()}
			j, err := encode(m, header{generation: generationOf(t, data) + 1, replaces: checksum([]byte("another file"))})
			if err != nil {
				t.Fatal(err)
			}
			return j
		},
		"without checksum": func(t *testing.T, s *Store) []byte {
			return []byte(`{"version":1,"grants":{"` + testKey.String() + `":{"refresh_token":"rt-SECRET-rotated"}}}`)
		},
	}
	for lname, leftover := range leftovers {
		for oname, op := range recoveryOps {
			t.Run(lname+"/"+oname, func(t *testing.T) {
				t.Parallel()
				s := newStore(t, WithRecoverHandler(func(path, from string) { t.Errorf("recovered from %s", from) }))
				want := put(t, s, testKey, sampleRecord())
				content := leftover(t, s)
				for _, name := range []string{"tokens.json.tmp-1", "tokens.json.tmp-2"} {
					if err := os.WriteFile(filepath.Join(filepath.Dir(s.Path()), name), content, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				if got, ok := op(t, s); !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("%s saw %v, %v; want the token file's record", oname, got, ok)
				}
				if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
					t.Errorf("directory holds %q", names)
				}
			})
		}
	}
}

func TestEveryWriteIsTheNextGenerationOverTheLast(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	prev := []byte(nil)
	for i := range 3 {
		if i == 2 {
			if _, err := s.Delete(t.Context(), testKey); err != nil {
				t.Fatal(err)
			}
		} else {
			put(t, s, testKey, sampleRecord())
		}
		data, err := os.ReadFile(s.Path())
		if err != nil {
			t.Fatal(err)
		}
		_, h, err := decode(data)
		if err != nil {
			t.Fatal(err)
		}
		if want := (header{generation: uint64(i + 1), replaces: checksum(prev)}); h != want {
			t.Errorf("write %d: header %+v, want %+v", i+1, h, want)
		}
		prev = data
	}
}

func TestUpdateWithoutWriteLeavesNoTemporaryFile(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	put(t, s, testKey, sampleRecord())
	for _, res := range []error{nil, &testError{1}} {
		_, _ = s.Update(t.Context(), testKey, func(Record, bool) (*Record, error) {
			if names := dirNames(t, filepath.Dir(s.Path())); !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "tokens.json.tmp-") }) {
				t.Errorf("no temporary file ready while fn runs: %q", names)
			}
			return nil, res
		})
		if names := dirNames(t, filepath.Dir(s.Path())); !slices.Equal(names, []string{"tokens.json", "tokens.json.lock"}) {
			t.Errorf("fn returning (nil, %v): directory holds %q", res, names)
		}
	}
}
