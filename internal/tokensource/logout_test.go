//go:build unix

package tokensource

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/redisstore"
)

// failingWrites is a real backend whose writes fail while fail is set (a
// full disk, a fenced write): fn runs under the backend's lock, nothing is
// written, and Update returns fn's record with a *tokenstore.WriteError.
type failingWrites struct {
	tokenstore.Backend
	fail atomic.Bool
}

func (f *failingWrites) Update(ctx context.Context, k tokenstore.Key, fn func(tokenstore.Record, bool) (*tokenstore.Record, error)) (tokenstore.Record, error) {
	if !f.fail.Load() {
		return f.Backend.Update(ctx, k, fn)
	}
	var next *tokenstore.Record
	cur, err := f.Backend.Update(ctx, k, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		n, err := fn(cur, ok)
		next = n
		return nil, err
	})
	if err != nil || next == nil {
		return cur, err
	}
	return *next, &tokenstore.WriteError{Path: "test", Err: errors.New("no space left on device")}
}

// backends opens each kind of token store for a test: the file, and
// Redis (a real redis-server).
var backends = map[string]func(t *testing.T) tokenstore.Backend{
	"file": func(t *testing.T) tokenstore.Backend {
		st, err := tokenstore.Open(filepath.Join(t.TempDir(), "tokens.json"))
		if err != nil {
			t.Fatal(err)
		}
		return st
	},
	"redis": func(t *testing.T) tokenstore.Backend {
		srv := redistest.Start(t, redistest.Options{})
		st, err := redisstore.Open(t.Context(), redisstore.Options{URL: srv.URL(), Plaintext: true, LockTTL: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
}

// Tokens refreshed from the stored grant but not yet written when the
// farmer logs out are dropped, not written over the logout; a first fetch
// of client credentials not yet written is written to a store without it.
func TestStoredPendingTokensAndALogout(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Run("refreshed, then logged out", func(t *testing.T) {
				g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, farmer: true, live: "refresh-login"}
				core, logged := observer.New(zap.InfoLevel)
				st := &failingWrites{Backend: open(t)}
				s := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Now: g.clock.Now, Log: zap.New(core)}
				if _, err := st.Backend.Update(t.Context(), farmerKey, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
					r := freshGrant(g.clock.Now())
					return &r, nil
				}); err != nil {
					t.Fatal(err)
				}
				st.fail.Store(true)
				// the access token rejected: a refresh (the store stamps its own time on the record)
				if rec, err := s.Token(t.Context(), "access-login"); err != nil || rec.RefreshToken != "refresh-1" || s.Durable() {
					t.Fatalf("refresh with the write failing: %v, %v, durable %v; want the new tokens pending", rec, err, s.Durable())
				}
				st.fail.Store(false)
				if _, err := st.Delete(t.Context(), farmerKey); err != nil {
					t.Fatal(err)
				}
				if err := s.Flush(t.Context()); err != nil {
					t.Fatalf("Flush: %v", err)
				}
				if r, ok, err := st.Load(t.Context(), farmerKey); ok || err != nil || !s.Durable() {
					t.Fatalf("after the logout and Flush the store holds %v, %v, %v (durable %v); want nothing", r, ok, err, s.Durable())
				}
				if logged.FilterMessageSnippet("(a logout)").Len() != 1 {
					t.Errorf("the dropped tokens were not logged: %v", logged.All())
				}
				var te *Error
				if _, err := s.Token(t.Context(), ""); !errors.As(err, &te) || te.Code != LoginRequired {
					t.Errorf("Token after the logout = %v; want %s", err, LoginRequired)
				}
			})
			t.Run("first fetch, grant absent", func(t *testing.T) {
				g := &fakeGrant{clock: newClock(), life: time.Hour}
				st := &failingWrites{Backend: open(t)}
				s := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Now: g.clock.Now, Log: zap.NewNop()}
				st.fail.Store(true)
				if rec, err := s.Token(t.Context(), ""); err != nil || rec.AccessToken != "access-1" || s.Durable() {
					t.Fatalf("first fetch with the write failing: %v, %v, durable %v", rec, err, s.Durable())
				}
				st.fail.Store(false)
				if err := s.Flush(t.Context()); err != nil {
					t.Fatalf("Flush: %v", err)
				}
				if r, ok, err := st.Load(t.Context(), testKey); !ok || err != nil || r.AccessToken != "access-1" || !s.Durable() {
					t.Fatalf("after Flush the store holds %v, %v, %v (durable %v); want access-1", r, ok, err, s.Durable())
				}
			})
		})
	}
}
