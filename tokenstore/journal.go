package tokenstore

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// tempInfix is what follows the token file's name in its temporary files.
const tempInfix = ".tmp-"

// createTemp creates an empty temporary file (mode 0600) beside the token
// file, for write.
func (s *Store) createTemp() (*os.File, error) {
	return os.CreateTemp(filepath.Dir(s.path), filepath.Base(s.path)+tempInfix+"*")
}

// discard closes and removes a temporary file that will not be renamed
// into place; nil is ignored.
func discard(tmp *os.File) {
	if tmp != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
	}
}

// leftovers returns the paths of the token file's temporary files. Seen
// under the lock (shared or exclusive), they were left by a writer that died:
// a live writer holds the exclusive lock while its file exists.
func (s *Store) leftovers() ([]string, error) {
	dir := filepath.Dir(s.path)
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: listing the directory of %s: %w", s.path, err)
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("tokenstore: listing the directory of %s: %w", s.path, err)
	}
	var paths []string
	for _, name := range names {
		if strings.HasPrefix(name, filepath.Base(s.path)+tempInfix) {
			paths = append(paths, filepath.Join(dir, name))
		}
	}
	return paths, nil
}

// recover finishes the write of a writer that died, with the exclusive lock
// held and c the token file as just read. A leftover temporary file that is
// complete (its checksum matches), written over the token file as it is now
// (it replaces c's checksum) and newer (a higher generation) holds what that
// writer was storing, maybe a rotated refresh token that exists nowhere
// else: it is synced and renamed into place, and c becomes its content. The
// other leftovers (cut short, empty, older, or written over another file,
// say one an operator put in place since) are removed.
func (s *Store) recover(c *contents) error {
	paths, err := s.leftovers()
	if err != nil || len(paths) == 0 {
		return err
	}
	var from string
	base := c.sum
	for _, p := range paths {
		j, err := readJournal(p)
		if err == nil && j.replaces == base && j.generation > c.generation {
			from, c.grants, c.generation, c.sum = p, j.grants, j.generation, j.sum
		}
	}
	if from != "" {
		if err := s.install(from); err != nil {
			return fmt.Errorf("tokenstore: recovering token file %s from %s: %w", s.path, from, err)
		}
		if s.onRecover != nil {
			s.onRecover(s.path, from)
		}
	}
	for _, p := range paths {
		if p != from {
			// Best effort: a leftover that stays is harmless, being
			// examined and removed again by the next operation.
			_ = os.Remove(p)
		}
	}
	return nil
}

// journal is a temporary file's content and header.
type journal struct {
	contents
	replaces string
}

// readJournal reads and verifies a leftover temporary file.
func readJournal(path string) (journal, error) {
	f, err := openChecked(kindTemp, path, os.O_RDONLY, 0)
	if err != nil {
		return journal{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return journal{}, err
	}
	m, h, err := decode(data)
	if err != nil {
		return journal{}, err
	}
	return journal{contents{grants: m, generation: h.generation, sum: checksum(data)}, h.replaces}, nil
}

// install makes the recovered temporary file the token file: its
// writer may have died before syncing it, so it is synced before the rename.
func (s *Store) install(from string) error {
	f, err := openChecked(kindTemp, from, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(from, s.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(s.path))
	}
	return err
}
