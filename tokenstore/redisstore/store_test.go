//go:build unix

package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/poll"
	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

var secretRecord = tokenstore.Record{AccessToken: "at-SECRET-access", RefreshToken: "rt-SECRET-refresh", Email: "farmer@example.com"}

// Redis restarted without its data: a store that had read the grant writes
// it back; one that never saw it finds nothing.
func TestGrantWrittenBackAfterRedisLostIt(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	log, logged := logs()
	a := open(t, srv, Options{Plaintext: true, Log: log})
	want := storetest.Put(t, a, key, secretRecord)
	srv.Restart(false)
	if _, ok := storetest.Load(t, open(t, srv, Options{Plaintext: true}), key); ok {
		t.Fatal("a store that never saw the grant found it after Redis lost its data")
	}
	if r, ok := storetest.Load(t, a, key); !ok || r.RefreshToken != want.RefreshToken {
		t.Fatalf("Load by the store that saw the grant = %v, %v; want it written back", r, ok)
	}
	if r, ok := storetest.Load(t, open(t, srv, Options{Plaintext: true}), key); !ok || r.RefreshToken != want.RefreshToken {
		t.Errorf("another store loads %v, %v after the write-back", r, ok)
	}
	if logged.FilterMessage("Redis lost the grant; wrote back the copy this replica held").Len() != 1 {
		t.Errorf("the write-back was not logged: %v", logged.All())
	}
}

// A deleted grant (a tombstone) is not written back.
func TestDeletedGrantNotWrittenBack(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := open(t, srv, Options{Plaintext: true})
	storetest.Put(t, a, key, secretRecord)
	if _, err := open(t, srv, Options{Plaintext: true}).Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	if _, ok := storetest.Load(t, a, key); ok {
		t.Fatal("a deleted grant was loaded")
	}
	if n, err := srv.Client(t).Exists(t.Context(), nameOf(key).hash).Result(); err != nil || n != 1 {
		t.Errorf("the tombstone: EXISTS = %d, %v", n, err)
	}
}

// Redis restarted with its data (append-only file) keeps the grant.
func TestGrantKeptAcrossRedisRestartWithData(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Persist: true})
	keys := [][]byte{newKey()}
	want := storetest.Put(t, open(t, srv, Options{SealKeys: keys}), key, secretRecord)
	srv.Restart(true)
	r, ok := storetest.Load(t, open(t, srv, Options{SealKeys: keys}), key)
	if !ok || r.RefreshToken != want.RefreshToken || !r.UpdatedAt.Equal(want.UpdatedAt) {
		t.Errorf("after a restart with data, a new store loads %v, %v; want %v", r, ok, want)
	}
}

// What Redis holds of a sealed grant shows no token; a store with other
// keys says which keys it tried and which one the record needs.
func TestSealedRecordInRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	k1, k2 := newKey(), newKey()
	storetest.Put(t, open(t, srv, Options{SealKeys: [][]byte{k1}}), key, secretRecord)
	raw, err := srv.Client(t).HGetAll(t.Context(), nameOf(key).hash).Result()
	if err != nil {
		t.Fatal(err)
	}
	for f, v := range raw {
		if strings.Contains(v, "SECRET") || strings.Contains(v, "farmer@") {
			t.Errorf("field %s of the grant's hash shows the record in clear: %s", f, v)
		}
	}
	var e envelope
	if err := json.Unmarshal([]byte(raw["record"]), &e); err != nil || e.KID != KeyID(k1) || len(e.Nonce) != 12 {
		t.Errorf("record envelope %s: %v; want kid %s and a 96-bit nonce", raw["record"], err, KeyID(k1))
	}
	_, _, err = open(t, srv, Options{SealKeys: [][]byte{k2}}).Load(t.Context(), key)
	if !errors.Is(err, errUnseal) || !strings.Contains(err.Error(), KeyID(k1)) || !strings.Contains(err.Error(), KeyID(k2)) || strings.Contains(err.Error(), "\n") {
		t.Errorf("Load with another key = %v; want one line naming keys %s and %s", err, KeyID(k1), KeyID(k2))
	}
	_, _, err = open(t, srv, Options{Plaintext: true}).Load(t.Context(), key)
	if !errors.Is(err, errUnseal) || !strings.Contains(err.Error(), "COOP_PROXY_STORE_KEY_FILE") {
		t.Errorf("Load without keys = %v; want it to ask for the key file", err)
	}
}

// A plaintext record is refused by a sealed store.
func TestSealedStoreRefusesPlaintext(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	storetest.Put(t, open(t, srv, Options{Plaintext: true}), key, secretRecord)
	_, err := open(t, srv, Options{SealKeys: [][]byte{newKey()}}).Update(t.Context(), key, increment)
	if !errors.Is(err, errUnseal) || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("a sealed store's Update of a plaintext record = %v; want it refused", err)
	}
}

// A record copied into another grant's hash does not open there, sealed or
// not.
func TestRecordMovedToAnotherGrant(t *testing.T) {
	for name, o := range map[string]Options{"sealed": {SealKeys: [][]byte{newKey()}}, "plaintext": {Plaintext: true}} {
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			s := open(t, srv, o)
			storetest.Put(t, s, storetest.KeyA, secretRecord)
			storetest.Put(t, s, storetest.KeyB, tokenstore.Record{AccessToken: "at-b"})
			raw := srv.Client(t)
			rec, err := raw.HGet(t.Context(), nameOf(storetest.KeyA).hash, "record").Result()
			if err != nil {
				t.Fatal(err)
			}
			if err := raw.HSet(t.Context(), nameOf(storetest.KeyB).hash, "record", rec).Err(); err != nil {
				t.Fatal(err)
			}
			if r, _, err := s.Load(t.Context(), storetest.KeyB); !errors.Is(err, errUnseal) {
				t.Errorf("Load of a record moved to another grant = %v, %v; want it refused", r, err)
			}
		})
	}
}

// Keys rotate: a store whose first key is new opens records sealed with
// the old one and seals its writes with the new one.
func TestKeyRotation(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	old, next := newKey(), newKey()
	storetest.Put(t, open(t, srv, Options{SealKeys: [][]byte{old}}), key, secretRecord)
	rotated := open(t, srv, Options{SealKeys: [][]byte{next, old}})
	if r, ok := storetest.Load(t, rotated, key); !ok || r.RefreshToken != secretRecord.RefreshToken {
		t.Fatalf("Load with the old key second = %v, %v", r, ok)
	}
	if _, err := rotated.Update(t.Context(), key, increment); err != nil {
		t.Fatal(err)
	}
	rec, err := srv.Client(t).HGet(t.Context(), nameOf(key).hash, "record").Result()
	var e envelope
	if err != nil || json.Unmarshal([]byte(rec), &e) != nil || e.KID != KeyID(next) {
		t.Fatalf("after a write the record is sealed with %q (%v); want the new key %s", e.KID, err, KeyID(next))
	}
	if r, ok := storetest.Load(t, open(t, srv, Options{SealKeys: [][]byte{next}}), key); !ok || r.UserID != 1 {
		t.Errorf("Load with only the new key = %v, %v", r, ok)
	}
}

// Changes signals another store's write promptly.
func TestChangesSignalsAnotherStoresWrite(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	a := open(t, srv, Options{Plaintext: true})
	b := open(t, srv, Options{Plaintext: true})
	ctx, cancel := context.WithCancel(t.Context())
	changes := a.Changes(ctx)
	select { // the signal of the subscription itself
	case <-changes:
	case <-time.After(20 * time.Second):
		t.Fatal("no signal when Changes subscribed")
	}
	storetest.Put(t, b, key, secretRecord)
	select {
	case <-changes:
	case <-time.After(time.Second):
		t.Fatal("no signal within a second of another store's write")
	}
	cancel()
	poll.Until(t, "the channel closed after ctx ended", func() bool {
		select {
		case _, ok := <-changes:
			return !ok
		default:
			return false
		}
	})
}

func TestOpenRefuses(t *testing.T) {
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"password in URL":         {Options{URL: "redis://user:hunter2@127.0.0.1:6379/0", Plaintext: true}, "COOP_PROXY_STORE_PASSWORD_FILE"},
		"password parameter":      {Options{URL: "redis://127.0.0.1:6379/0?password=hunter2", Plaintext: true}, "COOP_PROXY_STORE_PASSWORD_FILE"},
		"no keys":                 {Options{URL: "redis://127.0.0.1:6379/0"}, "COOP_PROXY_STORE_PLAINTEXT=true"},
		"other scheme":            {Options{URL: "http://127.0.0.1:6379/0", Plaintext: true}, "redis://"},
		"bad database":            {Options{URL: "redis://127.0.0.1:6379/x", Plaintext: true}, "database"},
		"short key":               {Options{URL: "redis://127.0.0.1:6379/0", SealKeys: [][]byte{[]byte("short")}}, "32"},
		"CA file without TLS":     {Options{URL: "redis://127.0.0.1:6379/0", Plaintext: true, CAFile: "/ca.pem"}, "rediss://"},
		"missing CA file":         {Options{URL: "rediss://127.0.0.1:6379/0", Plaintext: true, CAFile: "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"},
		"certificate without key": {Options{URL: "rediss://127.0.0.1:6379/0", Plaintext: true, CertFile: "/c.pem"}, "key file"},
		"unparsable URL":          {Options{URL: "redis://user:hunter2@[::1", Plaintext: true}, "does not parse"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Open(t.Context(), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open = %v; want an error saying %q, without the password", err, tc.want)
			}
		})
	}
}

// Open does not need Redis; the Sentinel URL form opens, and the store
// describes itself without secrets.
func TestOpenWithoutRedis(t *testing.T) {
	s, err := Open(t.Context(), Options{URL: "redis://user@127.0.0.1:1/2", Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.String() != "redis://127.0.0.1:1/2" {
		t.Errorf("description %q", s.String())
	}
	_, _, err = s.Load(t.Context(), key)
	if !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Errorf("Load with Redis down = %v; want ErrUnavailable", err)
	}
	f, err := Open(t.Context(), Options{URL: "redis://127.0.0.1:26379/0?master_name=coop&addr=127.0.0.2:26379", Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.String() != "redis://127.0.0.1:26379/0?master_name=coop" {
		t.Errorf("Sentinel description %q", f.String())
	}
}

// The password comes from Options and SetPassword, for new connections.
func TestPassword(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Password: "pw-right"})
	s := open(t, srv, Options{Plaintext: true, Password: "pw-right"})
	storetest.Put(t, s, key, secretRecord)
	wrong := open(t, srv, Options{Plaintext: true, Password: "pw-wrong"})
	_, _, err := wrong.Load(t.Context(), key)
	if !errors.Is(err, tokenstore.ErrUnavailable) || strings.Contains(err.Error(), "pw-wrong") {
		t.Fatalf("Load with a wrong password = %v; want ErrUnavailable, without the password", err)
	}
	wrong.SetPassword("pw-right")
	if r, ok := storetest.Load(t, wrong, key); !ok || r.RefreshToken != secretRecord.RefreshToken {
		t.Errorf("Load after SetPassword = %v, %v", r, ok)
	}
}

// With WaitReplicas a write counts as durable once a replica has it.
func TestWaitForReplica(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	replica := srv.StartReplica(t)
	s := open(t, srv, Options{Plaintext: true, WaitReplicas: 1, WaitTimeout: 5 * time.Second})
	storetest.Put(t, s, key, secretRecord)
	n, err := replica.Client(t).Exists(t.Context(), nameOf(key).hash).Result()
	if err != nil || n != 1 {
		t.Errorf("the replica has the grant: EXISTS = %d, %v", n, err)
	}
}

// Without the replicas asked for, a write is reported not durable.
func TestWaitWithoutReplica(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := open(t, srv, Options{Plaintext: true, WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
	r, err := s.Update(t.Context(), key, func(tokenstore.Record, bool) (*tokenstore.Record, error) {
		return &secretRecord, nil
	})
	var we *tokenstore.WriteError
	if !errors.As(err, &we) || errors.Is(err, tokenstore.ErrLockLost) || !strings.Contains(err.Error(), "0 of the 1 replicas") {
		t.Fatalf("Update without a replica = %v; want a *WriteError saying no replica acknowledged it", err)
	}
	if r.RefreshToken != secretRecord.RefreshToken {
		t.Errorf("Update returned %v; want the new tokens, for the caller to keep pending", r)
	}
}

// A grant's keys changed by hand into something the Store never writes (a
// string where the hash was, a list where the lock was, a marker's time
// that is not a number) are a corrupt grant, said so in the error and the
// metrics: not Redis unavailable (which /readyz would report, sending an
// operator after the network), and the lock is not left behind.
func TestTamperedKeys(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	raw := srv.Client(t)
	g := nameOf(key)
	for _, tc := range []struct {
		name   string
		tamper func(ctx context.Context) error
	}{
		{"hash is a string", func(ctx context.Context) error {
			return errors.Join(raw.Del(ctx, g.hash).Err(), raw.Set(ctx, g.hash, "junk", 0).Err())
		}},
		{"hash is a list", func(ctx context.Context) error {
			return errors.Join(raw.Del(ctx, g.hash).Err(), raw.RPush(ctx, g.hash, "junk").Err())
		}},
		{"lock is a hash", func(ctx context.Context) error { return raw.HSet(ctx, g.lock, "a", "b").Err() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := raw.FlushAll(t.Context()).Err(); err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			s := open(t, srv, Options{SealKeys: [][]byte{newKey()}, LockTTL: 20 * time.Second, Observer: rec})
			storetest.Put(t, s, key, tokenstore.Record{RefreshToken: "rt-0"})
			if err := tc.tamper(t.Context()); err != nil {
				t.Fatal(err)
			}
			_, err := s.Update(t.Context(), key, increment)
			if err == nil || errors.Is(err, tokenstore.ErrUnavailable) || !strings.Contains(err.Error(), "corrupt") {
				t.Errorf("Update = %v; want a corrupt grant, not the store unavailable", err)
			}
			if rec.errors["unreachable"] > 0 || rec.errors["corrupt"] == 0 {
				t.Errorf("errors reported: %v; want corrupt, not unreachable", rec.errors)
			}
			poll.Until(t, "the lock released", func() bool { return raw.Type(t.Context(), g.lock).Val() != "string" })
		})
	}
	t.Run("marker time not a number", func(t *testing.T) {
		if err := raw.FlushAll(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		s := open(t, srv, Options{SealKeys: [][]byte{newKey()}, LockTTL: 20 * time.Second, Grace: 200 * time.Millisecond})
		storetest.Put(t, s, key, tokenstore.Record{RefreshToken: "rt-0"})
		if err := raw.HSet(t.Context(), g.hash, "holder", "gone 0123", "orphaned_at", "junk").Err(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if _, err := s.Update(ctx, key, increment); err != nil {
			t.Fatalf("Update = %v; want the marker taken over after the grace", err)
		}
	})
}
