package tokenstore_test

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// TestBackendContract runs the Backend contract on the token file: every
// open is another Store on the same file, as another process has.
func TestBackendContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenstore.Backend {
		path := filePath(t)
		s, err := tokenstore.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

// paths holds the token file of each test, so that a test's stores share it.
var paths sync.Map // *testing.T → string

func filePath(t *testing.T) string {
	p, loaded := paths.LoadOrStore(t, filepath.Join(t.TempDir(), "tokens.json"))
	if !loaded {
		t.Cleanup(func() { paths.Delete(t) })
	}
	return p.(string)
}
