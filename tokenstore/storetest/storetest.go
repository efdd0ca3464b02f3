// Package storetest checks that a tokenstore.Backend keeps the contract of
// (*tokenstore.Store).Update and its companions: the locked
// read-modify-write that the token stack relies on to refresh a grant whose
// refresh tokens rotate exactly once between all processes and replicas.
// Every backend's tests run it against the real thing (a token file, a
// redis-server).
package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// Open returns a new Backend on the store under test. Every call within
// one test opens the same store again (another process or replica), as
// another Store on the same file or on the same Redis does; t.Cleanup
// closes it.
type Open func(t *testing.T) tokenstore.Backend

// Run runs the contract's tests as subtests of t. Each subtest works on a
// store of its own: open is called with the subtest's t.
func Run(t *testing.T, open Open) {
	t.Run("FnError", func(t *testing.T) { fnError(t, open) })
	t.Run("FnNil", func(t *testing.T) { fnNil(t, open) })
	t.Run("FnNext", func(t *testing.T) { fnNext(t, open) })
	t.Run("WrittenAfterCtxEnds", func(t *testing.T) { writtenAfterCtxEnds(t, open) })
	t.Run("OtherKeysKept", func(t *testing.T) { otherKeysKept(t, open) })
	t.Run("LoadKeysDelete", func(t *testing.T) { loadKeysDelete(t, open) })
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open) })
	t.Run("Serialised", func(t *testing.T) { serialised(t, open) })
	t.Run("CancelWhileWaiting", func(t *testing.T) { cancelWhileWaiting(t, open) })
	t.Run("Info", func(t *testing.T) { info(t, open) })
}

// Keys are the grants the tests write: A sorts before B.
var (
	KeyA = tokenstore.Key{TokenURL: "https://auth.example/token", ClientID: "client-a", GrantType: "authorization_code", Scopes: []string{"farm:read"}}
	KeyB = tokenstore.Key{TokenURL: "https://auth.example/token", ClientID: "client-b", GrantType: "client_credentials", Params: "resource=https%3A%2F%2Fapi.example"}
)

// Put stores r under k through Update and returns what Update returned.
func Put(t *testing.T, b tokenstore.Backend, k tokenstore.Key, r tokenstore.Record) tokenstore.Record {
	t.Helper()
	got, err := b.Update(t.Context(), k, func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &r, nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	return got
}

// Load returns the record under k, failing t on an error.
func Load(t *testing.T, b tokenstore.Backend, k tokenstore.Key) (tokenstore.Record, bool) {
	t.Helper()
	r, ok, err := b.Load(t.Context(), k)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r, ok
}

func fnError(t *testing.T, open Open) {
	b := open(t)
	was := Put(t, b, KeyA, tokenstore.Record{AccessToken: "at-1", RefreshToken: "rt-1"})
	refused := errors.New("token endpoint refused")
	got, err := b.Update(t.Context(), KeyA, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		return &tokenstore.Record{AccessToken: "at-2"}, refused
	})
	if err != refused { //nolint:errorlint // the contract: fn's error unchanged
		t.Fatalf("Update returned error %v, want fn's error unchanged", err)
	}
	if !reflect.DeepEqual(got, tokenstore.Record{}) {
		t.Errorf("Update returned %v with fn's error, want the zero Record", got)
	}
	if r, _ := Load(t, b, KeyA); !r.UpdatedAt.Equal(was.UpdatedAt) || r.AccessToken != "at-1" {
		t.Errorf("after fn's error the store holds %v, want %v", r, was)
	}
}

func fnNil(t *testing.T, open Open) {
	b := open(t)
	got, err := b.Update(t.Context(), KeyA, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if ok {
			t.Errorf("fn got ok with an empty store: %v", cur)
		}
		return nil, nil
	})
	if err != nil || !reflect.DeepEqual(got, tokenstore.Record{}) {
		t.Fatalf("Update with nil from fn on an empty store = %v, %v; want the zero Record, nil", got, err)
	}
	if _, ok := Load(t, b, KeyA); ok {
		t.Fatal("fn returned nil but a record was written")
	}
	was := Put(t, b, KeyA, tokenstore.Record{AccessToken: "at-1"})
	got, err = b.Update(t.Context(), KeyA, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if !ok || cur.AccessToken != "at-1" {
			t.Errorf("fn got %v, %v; want the stored record", cur, ok)
		}
		return nil, nil
	})
	if err != nil || got.AccessToken != "at-1" || !got.UpdatedAt.Equal(was.UpdatedAt) {
		t.Fatalf("Update with nil from fn = %v, %v; want the current record %v", got, err, was)
	}
	if r, _ := Load(t, b, KeyA); !r.UpdatedAt.Equal(was.UpdatedAt) {
		t.Errorf("fn returned nil but the record was written again (UpdatedAt %v, was %v)", r.UpdatedAt, was.UpdatedAt)
	}
}

func fnNext(t *testing.T, open Open) {
	b := open(t)
	before := time.Now()
	got := Put(t, b, KeyA, tokenstore.Record{AccessToken: "at-1", RefreshToken: "rt-1"})
	if got.UpdatedAt.Before(before.Add(-time.Second)) || got.UpdatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("UpdatedAt = %v, want about now (%v)", got.UpdatedAt, before)
	}
	other := open(t) // another process sees the write
	r, ok := Load(t, other, KeyA)
	if !ok || !reflect.DeepEqual(r, got) {
		t.Errorf("Load after Update = %v, %v; want %v", r, ok, got)
	}
	got2, err := other.Update(t.Context(), KeyA, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
		if !ok || !reflect.DeepEqual(cur, got) {
			t.Errorf("fn got %v, %v; want the record just written %v", cur, ok, got)
		}
		cur.AccessToken = "at-2"
		return &cur, nil
	})
	if err != nil || got2.AccessToken != "at-2" {
		t.Fatalf("second Update = %v, %v", got2, err)
	}
	if r, _ := Load(t, b, KeyA); r.AccessToken != "at-2" {
		t.Errorf("first store loads %v after the second wrote at-2", r)
	}
}

func writtenAfterCtxEnds(t *testing.T, open Open) {
	b := open(t)
	ctx, cancel := context.WithCancel(t.Context())
	got, err := b.Update(ctx, KeyA, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		cancel() // the caller gave up while the token endpoint answered
		return &tokenstore.Record{RefreshToken: "rt-rotated"}, nil
	})
	if err != nil || got.RefreshToken != "rt-rotated" {
		t.Fatalf("Update whose ctx ended in fn = %v, %v; want the record written", got, err)
	}
	if r, ok := Load(t, open(t), KeyA); !ok || r.RefreshToken != "rt-rotated" {
		t.Errorf("Load = %v, %v; a rotated refresh token must be written even after ctx ended", r, ok)
	}
}

func otherKeysKept(t *testing.T, open Open) {
	b := open(t)
	a := Put(t, b, KeyA, tokenstore.Record{AccessToken: "at-a"})
	Put(t, b, KeyB, tokenstore.Record{AccessToken: "at-b"})
	Put(t, b, KeyB, tokenstore.Record{AccessToken: "at-b2"})
	if r, ok := Load(t, b, KeyA); !ok || !reflect.DeepEqual(r, a) {
		t.Errorf("grant A after writes to B = %v, %v; want %v", r, ok, a)
	}
	if _, err := b.Delete(t.Context(), KeyB); err != nil {
		t.Fatal(err)
	}
	if r, ok := Load(t, b, KeyA); !ok || !reflect.DeepEqual(r, a) {
		t.Errorf("grant A after deleting B = %v, %v; want %v", r, ok, a)
	}
}

func loadKeysDelete(t *testing.T, open Open) {
	b := open(t)
	if keys, err := b.Keys(t.Context()); err != nil || len(keys) != 0 {
		t.Fatalf("Keys of an empty store = %q, %v", keys, err)
	}
	if _, ok := Load(t, b, KeyA); ok {
		t.Fatal("Load found a grant in an empty store")
	}
	Put(t, b, KeyB, tokenstore.Record{AccessToken: "at-b"})
	Put(t, b, KeyA, tokenstore.Record{AccessToken: "at-a"})
	want := []string{KeyA.String(), KeyB.String()}
	slices.Sort(want)
	if keys, err := b.Keys(t.Context()); err != nil || !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, %v; want %q", keys, err, want)
	}
	other := open(t)
	if existed, err := other.Delete(t.Context(), KeyA); err != nil || !existed {
		t.Fatalf("Delete of a stored grant = %v, %v; want true, nil", existed, err)
	}
	if existed, err := b.Delete(t.Context(), KeyA); err != nil || existed {
		t.Fatalf("second Delete = %v, %v; want false, nil", existed, err)
	}
	if _, ok := Load(t, b, KeyA); ok {
		t.Error("Load found a deleted grant")
	}
	if keys, err := b.Keys(t.Context()); err != nil || !slices.Equal(keys, []string{KeyB.String()}) {
		t.Errorf("Keys after Delete = %q, %v; want only B", keys, err)
	}
	// A deleted grant can be stored again (a new login after a logout).
	Put(t, other, KeyA, tokenstore.Record{AccessToken: "at-a2"})
	if r, ok := Load(t, b, KeyA); !ok || r.AccessToken != "at-a2" {
		t.Errorf("Load after a new login = %v, %v", r, ok)
	}
}

func roundTrip(t *testing.T, open Open) {
	b := open(t)
	in := tokenstore.Record{
		AccessToken:    "at-round-trip",
		TokenType:      "DPoP",
		RefreshToken:   "rt-round-trip",
		Expiry:         time.Date(2031, 2, 3, 4, 5, 6, 789000000, time.UTC),
		Scopes:         []string{"farm:read", "farm:write"},
		UserID:         42,
		Email:          "farmer@example.com",
		GrantedAt:      time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		DPoPJKT:        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
		DPoPKey:        []byte{0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0xff},
		RefusedRefresh: tokenstore.RefusedHash("rt-refused"),
	}
	got := Put(t, b, KeyA, in)
	want := in
	want.UpdatedAt = got.UpdatedAt
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Update returned %#v, want %#v", got, want)
	}
	r, ok := Load(t, open(t), KeyA)
	if !ok || !reflect.DeepEqual(r, want) || !slices.Equal(r.DPoPKey, in.DPoPKey) {
		t.Errorf("Load = %#v, %v; want %#v", r, ok, want)
	}
}

// serialised runs increments of a counter (UserID) from several goroutines
// in each of several stores: a lost update shows as a smaller count.
func serialised(t *testing.T, open Open) {
	const stores, goroutines, each = 4, 2, 25
	var wg sync.WaitGroup
	errs := make(chan error, stores*goroutines)
	for range stores {
		b := open(t)
		for range goroutines {
			wg.Go(func() {
				for range each {
					_, err := b.Update(t.Context(), KeyA, func(cur tokenstore.Record, ok bool) (*tokenstore.Record, error) {
						cur.UserID++
						return &cur, nil
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update: %v", err)
	}
	if r, _ := Load(t, open(t), KeyA); r.UserID != stores*goroutines*each {
		t.Errorf("counter = %d after %d increments: updates were lost", r.UserID, stores*goroutines*each)
	}
}

func cancelWhileWaiting(t *testing.T, open Open) {
	holder, waiter := open(t), open(t)
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := holder.Update(t.Context(), KeyA, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
			close(holding)
			<-release
			return nil, nil
		})
		done <- err
	}()
	defer func() {
		close(release)
		if err := <-done; err != nil {
			t.Errorf("holder's Update: %v", err)
		}
	}()
	<-holding
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := waiter.Update(ctx, KeyA, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		t.Error("fn ran while another store held the lock")
		return nil, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update cancelled while waiting returned %v, want ctx's error", err)
	}
	// Generous for a loaded machine; the lock holder keeps it far longer.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Update returned %v after it was cancelled", d)
	}
}

func info(t *testing.T, open Open) {
	b := open(t)
	i, err := b.Info(t.Context(), KeyA)
	if err != nil || i.Backend == "" || !i.WrittenAt.IsZero() {
		t.Fatalf("Info of a missing grant = %+v, %v; want a backend and no write time", i, err)
	}
	got := Put(t, b, KeyA, tokenstore.Record{AccessToken: "at"})
	i, err = open(t).Info(t.Context(), KeyA)
	if err != nil || !i.WrittenAt.Equal(got.UpdatedAt) {
		t.Errorf("Info after a write = %+v, %v; want WrittenAt %v", i, err, got.UpdatedAt)
	}
}
