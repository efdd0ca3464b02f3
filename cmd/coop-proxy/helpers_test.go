package main

import (
	"context"
	"flag"
	"io"
	"net"
	"testing"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

func newFlagSet() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// storedRecord reads the configured grant's record from the store.
func storedRecord(t *testing.T, cfg *Config) tokenstore.Record {
	t.Helper()
	st, err := openStore(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := st.Load(context.Background(), storeKey(cfg))
	if err != nil || !ok {
		t.Fatalf("store: %v, found %v", err, ok)
	}
	return rec
}

// freeRedirectURI is a loopback redirect URI on a port free right now.
func freeRedirectURI(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "http://" + ln.Addr().String() + "/callback"
}
