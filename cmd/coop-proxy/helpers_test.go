package main

import (
	"context"
	"net"
	"testing"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// storedRecord reads the configured grant's record from the store.
func storedRecord(t *testing.T, cfg *config.Settings) tokenstore.Record {
	t.Helper()
	st, err := server.OpenStore(cfg.Store, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := st.Load(context.Background(), server.StoreKey(&cfg.Route))
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
