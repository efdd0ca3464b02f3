package tokensource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

func freshGrant(now time.Time) tokenstore.Record {
	return tokenstore.Record{AccessToken: "access-login", RefreshToken: "refresh-login", Expiry: now.Add(time.Hour), UserID: 1, Email: "brent@example.com", GrantedAt: now, UpdatedAt: now}
}

func newStored(g *fakeGrant) (*Stored, *memStore) {
	st := newMemStore()
	return &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Now: g.clock.Now, Log: zap.NewNop()}, st
}

func TestStoredReusesAValidStoredToken(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	s, st := newStored(g)
	st.put(testKey, tokenstore.Record{AccessToken: "from-disk", Expiry: g.clock.Now().Add(time.Hour)})
	rec, err := s.Token(context.Background(), "")
	if err != nil || rec.AccessToken != "from-disk" || g.calls.Load() != 0 {
		t.Fatalf("got %v, %v after %d fetches; want the stored token and no fetch", rec, err, g.calls.Load())
	}
}

func TestStoredFetchesWhenStoredTokenIsNearExpiryOrRejected(t *testing.T) {
	for name, stored := range map[string]tokenstore.Record{
		"inside the margin": {AccessToken: "old", Expiry: newClock().Now().Add(4 * time.Minute)},
		"rejected":          {AccessToken: "rejected", Expiry: newClock().Now().Add(time.Hour)},
		"expired":           {AccessToken: "old", Expiry: newClock().Now().Add(-time.Second)},
	} {
		t.Run(name, func(t *testing.T) {
			g := &fakeGrant{clock: newClock(), life: time.Hour}
			s, st := newStored(g)
			st.put(testKey, stored)
			rec, err := s.Token(context.Background(), "rejected")
			if err != nil || rec.AccessToken != "access-1" {
				t.Fatalf("got %v, %v", rec, err)
			}
			if onDisk, _ := st.get(testKey); onDisk.AccessToken != "access-1" {
				t.Fatalf("new token not written before use: store holds %v", onDisk)
			}
		})
	}
}

func TestStoredRotatedRefreshTokenSurvivesAFailedWrite(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, live: "refresh-login"}
	s, st := newStored(g)
	st.put(testKey, freshGrant(g.clock.Now()))
	g.clock.Advance(56 * time.Minute)

	st.failWrite.Store(true) // the disk fails right after COOP rotated
	rec, err := s.Token(context.Background(), "")
	if err != nil || rec.AccessToken != "access-1" || rec.RefreshToken != "refresh-1" {
		t.Fatalf("refresh with a failing write: %v, %v", rec, err)
	}
	if s.Durable() {
		t.Fatal("Durable() = true with the write failed")
	}
	if onDisk, _ := st.get(testKey); onDisk.RefreshToken != "refresh-login" {
		t.Fatalf("store changed despite the failure: %v", onDisk)
	}
	// The next refresh must use the rotated token held in memory, not the
	// dead one still on disk.
	g.clock.Advance(56 * time.Minute)
	rec, err = s.Token(context.Background(), "")
	if err != nil || rec.RefreshToken != "refresh-2" {
		t.Fatalf("second refresh from memory: %v, %v", rec, err)
	}
	if err := s.Flush(context.Background()); err == nil {
		t.Fatal("Flush succeeded while the disk still fails")
	}
	st.failWrite.Store(false) // the disk is back
	if err := s.Flush(context.Background()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	onDisk, _ := st.get(testKey)
	if onDisk.RefreshToken != "refresh-2" || onDisk.Email != "brent@example.com" || !s.Durable() {
		t.Fatalf("after Flush: store %v, durable %v", onDisk, s.Durable())
	}
}

func TestStoredWorksFromMemoryWhenTheStoreIsUnusable(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour}
	s, st := newStored(g)
	st.failAll.Store(true)
	rec, err := s.Token(context.Background(), "")
	if err != nil || rec.AccessToken != "access-1" || s.Durable() {
		t.Fatalf("got %v, %v, durable %v", rec, err, s.Durable())
	}
	if rec, _ := s.Token(context.Background(), ""); rec.AccessToken != "access-1" || g.calls.Load() != 1 {
		t.Fatalf("second call fetched again: %v after %d fetches", rec, g.calls.Load())
	}
}

func TestStoredDeadGrantCostsOneRequest(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, live: "something-else"}
	s, st := newStored(g)
	dead := freshGrant(g.clock.Now())
	dead.Expiry = g.clock.Now() // the access token is spent too
	st.put(testKey, dead)
	for range 3 {
		_, err := s.Token(context.Background(), "")
		var te *Error
		if !errors.As(err, &te) || te.Code != LoginRequired {
			t.Fatalf("dead grant: %v", err)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("refresh requests for a dead grant = %d, want 1", n)
	}
	// A new login replaces it.
	g.live = "refresh-new"
	fresh := freshGrant(g.clock.Now())
	fresh.AccessToken, fresh.RefreshToken, fresh.Expiry = "access-new", "refresh-new", g.clock.Now()
	st.put(testKey, fresh)
	if rec, err := s.Token(context.Background(), ""); err != nil || rec.RefreshToken != "refresh-1" {
		t.Fatalf("after a new login: %v, %v", rec, err)
	}
}

func TestStoredUsesAnotherProcessRotation(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, live: "refresh-login"}
	s, st := newStored(g)
	st.put(testKey, freshGrant(g.clock.Now()))
	g.clock.Advance(56 * time.Minute)
	// Another process refreshed first: the file now holds its result.
	other := freshGrant(g.clock.Now())
	other.AccessToken, other.RefreshToken = "access-other", "refresh-other"
	st.put(testKey, other)
	rec, err := s.Token(context.Background(), "")
	if err != nil || rec.AccessToken != "access-other" || g.calls.Load() != 0 {
		t.Fatalf("got %v, %v after %d refreshes; want the other process's token and no refresh", rec, err, g.calls.Load())
	}
}

func TestStoredLockedStoreIsNotLoginRequired(t *testing.T) {
	clock := newClock()
	st := newMemStore()
	st.put(AuthorizationCodeKey("http://coop.test/token", "Brent's Lazy CRON Job"), freshGrant(clock.Now()))
	st.failAll.Store(true) // another process holds the lock past the fetch timeout
	s := &Stored{Store: st, Margin: 5 * time.Minute, Now: clock.Now, Log: zap.NewNop(), Grant: &Refresh{Config: &oauth2.Config{
		ClientID: "Brent's Lazy CRON Job", Endpoint: oauth2.Endpoint{TokenURL: "http://coop.test/token"}}}}
	_, err := s.Token(context.Background(), "")
	var te *Error
	if !errors.As(err, &te) || te.Code != Unavailable {
		t.Fatalf("store locked: %v, want %s", err, Unavailable)
	}
	if !strings.Contains(te.Description, storeLockPath) || strings.Contains(te.Description, "no farmer") {
		t.Fatalf("description %q, want the store's trouble and its path, not a missing login", te.Description)
	}
}

// DPoP switched on for a grant stored as bearer tokens, at a provider that
// answers the refresh's proof with Bearer tokens (it does not do DPoP for
// the client): the answer is refused, but its rotated refresh token is the
// grant's only live one. It must reach the store, so that following the
// error's advice (DPoP off again) finds a grant that still works.
func TestStoredKeepsARotatedRefreshTokenOfAnAnswerItCannotUse(t *testing.T) {
	var mu sync.Mutex
	live, n := "refresh-login", 0
	srv := tokenServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.FormValue("refresh_token") != live {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		n++
		live = fmt.Sprintf("refresh-%d", n)
		_, _ = fmt.Fprintf(w, `{"access_token":"access-%d","token_type":"Bearer","expires_in":3600,"refresh_token":%q}`, n, live)
	})
	g := refreshGrant(srv.URL, NewHTTPClient(time.Minute))
	st := newMemStore()
	st.put(g.Key(), tokenstore.Record{AccessToken: "access-login", TokenType: "Bearer", RefreshToken: "refresh-login", Expiry: time.Now().Add(-time.Minute)})

	on := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Log: zap.NewNop(), DPoP: &dpop.Keys{}}
	if _, err := on.Token(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "Bearer") {
		t.Fatalf("%v; want the Bearer answer refused", err)
	}
	if rec, _ := st.get(g.Key()); rec.RefreshToken != "refresh-1" || rec.AccessToken != "" {
		t.Errorf("the store holds refresh token %q, access token %q; want the rotated refresh-1 and no access token", rec.RefreshToken, rec.AccessToken)
	}
	off := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Log: zap.NewNop()}
	if rec, err := off.Token(context.Background(), ""); err != nil || rec.AccessToken != "access-2" {
		t.Fatalf("DPoP off again: %v, %v; want the grant to work", rec, err)
	}
}

// A refresh token the token endpoint refused is recorded in the grant, so
// that another process or replica sharing the store never sends it again;
// the refusal still reaches the caller.
func TestStoredRefusedRefreshTokenIsRecordedForEveryReplica(t *testing.T) {
	g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, live: "something-else"}
	s, st := newStored(g)
	dead := freshGrant(g.clock.Now())
	dead.Expiry = g.clock.Now()
	st.put(testKey, dead)
	_, err := s.Token(context.Background(), "")
	var te *Error
	if !errors.As(err, &te) || te.Code != LoginRequired {
		t.Fatalf("dead grant: %v, want %s", err, LoginRequired)
	}
	rec, _ := st.get(testKey)
	if rec.RefusedRefresh != tokenstore.RefusedHash("refresh-login") || rec.RefreshToken != "refresh-login" || rec.Email != dead.Email {
		t.Fatalf("store after the refusal: %v; want the grant with its refresh token marked refused", rec)
	}
	other := &Stored{Grant: g, Store: st, Margin: 5 * time.Minute, Now: g.clock.Now, Log: zap.NewNop()}
	if _, err := other.Token(context.Background(), ""); !errors.As(err, &te) || te.Code != LoginRequired {
		t.Fatalf("another replica: %v, want %s", err, LoginRequired)
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("the refused refresh token was sent %d times, want 1", n)
	}
}

// A shared store out of reach: a farmer's grant is never refreshed without
// its lock (store_unavailable, no request to the token endpoint), while
// client credentials fetch a token of their own, counted, and not kept
// pending (there is nothing to lose).
func TestStoredSharedStoreUnavailable(t *testing.T) {
	t.Run("authorization code", func(t *testing.T) {
		g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, farmer: true, live: "refresh-login"}
		s, st := newStored(g)
		st.put(farmerKey, freshGrant(g.clock.Now()))
		g.clock.Advance(56 * time.Minute)
		st.shared.Store(true)
		st.down.Store(true)
		_, err := s.Token(context.Background(), "")
		var te *Error
		if !errors.As(err, &te) || te.Code != StoreUnavailable || !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Fatalf("got %v, want %s wrapping the store's error", err, StoreUnavailable)
		}
		if n := g.calls.Load(); n != 0 {
			t.Fatalf("%d refreshes without the lock", n)
		}
	})
	t.Run("client credentials", func(t *testing.T) {
		g := &fakeGrant{clock: newClock(), life: time.Hour}
		s, st := newStored(g)
		own := 0
		s.OnOwnFetch = func() { own++ }
		st.shared.Store(true)
		st.down.Store(true)
		rec, err := s.Token(context.Background(), "")
		if err != nil || rec.AccessToken != "access-1" || own != 1 || !s.Durable() {
			t.Fatalf("got %v, %v, own fetches %d, durable %v; want a token of its own, counted, nothing pending", rec, err, own, s.Durable())
		}
	})
	t.Run("file store", func(t *testing.T) {
		// not shared: today's behaviour, the fetch from memory kept pending
		g := &fakeGrant{clock: newClock(), life: time.Hour}
		s, st := newStored(g)
		st.down.Store(true)
		if rec, err := s.Token(context.Background(), ""); err != nil || rec.AccessToken != "access-1" || s.Durable() {
			t.Fatalf("got %v, %v, durable %v", rec, err, s.Durable())
		}
	})
}

// A write fenced off (the lock expired during the token request) keeps the
// new tokens pending; Flush writes them when the store still holds the
// grant they were refreshed from, and drops them when another replica's
// newer grant, a new login or a logout (the grant gone) is there by then.
func TestStoredFencedWriteIsReconciled(t *testing.T) {
	for _, tc := range []struct {
		name      string
		meanwhile func(st *memStore, now time.Time)
		want      string // the refresh token in the store after Flush
	}{
		{"store unchanged", func(*memStore, time.Time) {}, "refresh-1"},
		{"logged out", func(st *memStore, _ time.Time) { st.mu.Lock(); delete(st.recs, farmerKey.String()); st.mu.Unlock() }, ""},
		{"another replica refreshed", func(st *memStore, now time.Time) {
			r := freshGrant(now.Add(-56 * time.Minute))
			r.AccessToken, r.RefreshToken = "access-other", "refresh-other"
			st.put(farmerKey, r)
		}, "refresh-other"},
		{"a new login", func(st *memStore, now time.Time) {
			r := freshGrant(now)
			r.AccessToken, r.RefreshToken, r.UserID = "access-new", "refresh-new", 2
			st.put(farmerKey, r)
		}, "refresh-new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &fakeGrant{clock: newClock(), life: time.Hour, refresh: true, farmer: true, live: "refresh-login"}
			s, st := newStored(g)
			st.shared.Store(true)
			st.put(farmerKey, freshGrant(g.clock.Now()))
			g.clock.Advance(56 * time.Minute)
			st.fence.Store(true)
			rec, err := s.Token(context.Background(), "")
			if err != nil || rec.RefreshToken != "refresh-1" || s.Durable() {
				t.Fatalf("fenced refresh: %v, %v, durable %v; want the new tokens served and pending", rec, err, s.Durable())
			}
			if onStore, _ := st.get(farmerKey); onStore.RefreshToken != "refresh-login" {
				t.Fatalf("a fenced write reached the store: %v", onStore)
			}
			st.fence.Store(false)
			tc.meanwhile(st, g.clock.Now())
			if err := s.Flush(context.Background()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			if onStore, _ := st.get(farmerKey); onStore.RefreshToken != tc.want || !s.Durable() {
				t.Fatalf("after Flush the store holds %v (durable %v); want refresh token %s", onStore, s.Durable(), tc.want)
			}
		})
	}
}
