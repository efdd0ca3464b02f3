//go:build unix

package redisstore

import (
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// open opens a Store on srv with o (URL and Log filled in), closed when t
// ends.
func open(t *testing.T, srv *redistest.Server, o Options) *Store {
	t.Helper()
	if o.URL == "" {
		o.URL = srv.URL()
	}
	if o.Log == nil {
		o.Log = zaptest.NewLogger(t)
	}
	s, err := Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// servers holds each contract test's redis-server, which its stores share.
var servers sync.Map // *testing.T → *redistest.Server

// serverOf is t's redis-server, started with o by the first call.
func serverOf(t *testing.T, o redistest.Options) *redistest.Server {
	if s, ok := servers.Load(t); ok {
		return s.(*redistest.Server)
	}
	s := redistest.Start(t, o)
	servers.Store(t, s)
	t.Cleanup(func() { servers.Delete(t) })
	return s
}

func TestContractSealed(t *testing.T) {
	keys := [][]byte{newKey()}
	storetest.Run(t, func(t *testing.T) tokenstore.Backend {
		return open(t, serverOf(t, redistest.Options{}), Options{SealKeys: keys, LockTTL: 5 * time.Second})
	})
}

func TestContractPlaintext(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenstore.Backend {
		return open(t, serverOf(t, redistest.Options{}), Options{Plaintext: true, LockTTL: 5 * time.Second})
	})
}

// logs returns a logger that keeps what it logs, at Info and above.
func logs() (*zap.Logger, *observer.ObservedLogs) {
	core, l := observer.New(zap.InfoLevel)
	return zap.New(core), l
}
