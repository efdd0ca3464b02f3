//go:build unix

package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/poll"
	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/redisstore"
)

// redisRig is the emulator on the real clock, one redis-server with a
// password, and the settings of coop-proxy processes sharing it: each
// replica in a directory of its own (no file shared between them).
type redisRig struct {
	f        *farm
	rs       *redistest.Server
	cfg      *config.Settings // in this process: login, logout, the test's look at the store
	key      []byte           // the sealing key
	password string
	extra    []string // settings for every replica ("NAME=value")
}

// newRedisRig starts the emulator and Redis; kv are further settings for
// every replica and for cfg (names without the prefix, then values).
func newRedisRig(t *testing.T, opts coop.Options, ro redistest.Options, farmer bool, kv ...string) *redisRig {
	t.Helper()
	opts.Now = time.Now // the replicas are other processes, on the real clock
	ro.Password = "pw-" + rand.Text()
	r := &redisRig{f: newFarmWith(t, opts), rs: redistest.Start(t, ro), key: make([]byte, 32), password: ro.Password}
	_, _ = rand.Read(r.key)
	dir := t.TempDir()
	kv = append([]string{"STORE", r.rs.URL(), "STORE_PASSWORD_FILE", r.writeFile(t, dir, "password", r.password),
		"STORE_KEY_FILE", r.writeFile(t, dir, "keys", base64.StdEncoding.EncodeToString(r.key))}, kv...)
	if farmer {
		kv = append(kv, "GRANT", "authorization_code", "SCOPES", "eggs-collect eggs-count profile")
	}
	r.cfg = r.f.config(t, kv...)
	for i := 0; i+1 < len(kv); i += 2 {
		r.extra = append(r.extra, config.EnvPrefix+kv[i]+"="+kv[i+1])
	}
	return r
}

func (r *redisRig) writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replica starts `coop-proxy serve` number i, named replica-i, with its
// secret, password and key files in a directory of its own; extra settings
// ("NAME=value") win.
func (r *redisRig) replica(t *testing.T, i int, extra ...string) *child {
	t.Helper()
	dir := t.TempDir()
	env := append([]string{}, r.extra...)
	env = append(env,
		config.EnvPrefix+"CLIENT_SECRET_FILE="+r.writeFile(t, dir, "secret", r.f.app.ClientSecret),
		config.EnvPrefix+"STORE_PASSWORD_FILE="+r.writeFile(t, dir, "password", r.password),
		config.EnvPrefix+"STORE_KEY_FILE="+r.writeFile(t, dir, "keys", base64.StdEncoding.EncodeToString(r.key)),
		config.EnvPrefix+"REPLICA="+fmt.Sprintf("replica-%d", i))
	c := startChild(t, r.cfg, append(env, extra...)...)
	c.waitListening(t)
	return c
}

// replicas starts n replicas.
func (r *redisRig) replicas(t *testing.T, n int) []*child {
	var cs []*child
	for i := range n {
		cs = append(cs, r.replica(t, i))
	}
	return cs
}

// store opens the Redis store as a replica would (closed when t ends).
func (r *redisRig) store(t *testing.T) tokenstore.Backend {
	t.Helper()
	st, err := server.OpenBackend(context.Background(), r.cfg, tokenstore.Key{}, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// grant is the route's grant as Redis holds it now.
func (r *redisRig) grant(t *testing.T, st tokenstore.Backend) (tokenstore.Record, bool) {
	t.Helper()
	rec, ok, err := st.Load(context.Background(), server.StoreKey(&r.cfg.Route))
	if err != nil {
		t.Fatalf("reading the grant from Redis: %v", err)
	}
	return rec, ok
}

// hammer has two callers per replica call the API until stop is closed;
// it returns the answers that were not 200, as "replica: status body".
func hammer(t *testing.T, cs []*child, stop <-chan struct{}) func() []string {
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for _, c := range cs {
		for range 2 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 200 {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s: %d %s", c.url, a.status, strings.TrimSpace(a.body)))
						mu.Unlock()
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
	}
	return func() []string {
		wg.Wait()
		return failed
	}
}

// refreshAnswers counts COOP's answers to refresh requests: accepted and
// refused (requests a fault kept unanswered are neither).
func (r *redisRig) refreshAnswers() (ok, refused int) {
	for _, tr := range r.f.em.TokenRequests() {
		if tr.GrantType != "refresh_token" {
			continue
		}
		switch tr.Status {
		case 200:
			ok++
		case 0: // a fault (a hang) kept COOP from answering: nothing spent
		default:
			refused++
		}
	}
	return ok, refused
}

// revokeEvery spaces the revocations (and expiries) of a loop: a token
// fetched to replace a rejected one and rejected again within 10 s is what
// an API refusing every token looks like, and the cache backs off then
// (tokensource.Cache.Invalidate's rejectWindow), answering token_rejected.
const revokeEvery = 10*time.Second + 500*time.Millisecond

// shortLockRig is three replicas serving the farmer's grant, logged in, with
// a lock TTL of 3 s over a token timeout of 2 s; the test's look at the
// store, and the grant in it.
func shortLockRig(t *testing.T) (*redisRig, []*child, tokenstore.Backend, tokenstore.Record) {
	t.Helper()
	r := newRedisRig(t, coop.Options{}, redistest.Options{}, true, "STORE_LOCK_TTL", "3s", "TOKEN_TIMEOUT", "2s")
	if _, err := r.f.login(t, r.cfg, true); err != nil {
		t.Fatal(err)
	}
	cs := r.replicas(t, 3)
	st := r.store(t)
	rec, _ := r.grant(t, st)
	return r, cs, st, rec
}

// Three replicas, one Redis, the farmer's grant, its access token revoked
// at COOP in a loop for 15 s: every request succeeds, each revocation costs
// exactly one refresh between the three, and none is refused.
func TestRedisReplicasShareTheFarmersGrant(t *testing.T) {
	t.Parallel()
	r := newRedisRig(t, coop.Options{}, redistest.Options{}, true)
	if _, err := r.f.login(t, r.cfg, true); err != nil {
		t.Fatal(err)
	}
	cs := r.replicas(t, 3)
	st := r.store(t)
	stop := make(chan struct{})
	wait := hammer(t, cs, stop)
	revocations := 0
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); {
		rec, _ := r.grant(t, st)
		r.f.em.RevokeToken(rec.AccessToken)
		revocations++
		poll.Until(t, "no replica refreshed the revoked token", func() bool {
			now, _ := r.grant(t, st)
			return now.AccessToken != rec.AccessToken
		})
		time.Sleep(min(revokeEvery, time.Until(end)))
	}
	close(stop)
	failed := wait()
	for _, c := range cs {
		c.stop(t)
	}
	ok, refused := r.refreshAnswers()
	t.Logf("%d revocations in 15 s: %d refreshes, %d refused, %d requests failed", revocations, ok, refused, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d requests failed, the first: %s", len(failed), failed[0])
	}
	if ok != revocations || refused != 0 {
		t.Errorf("%d refreshes (%d refused) for %d revocations; want exactly one each, none refused", ok, refused, revocations)
	}
}

// Client credentials on three replicas, the emulator's tokens all expired
// in a loop for 15 s: every request succeeds, and each expiry costs one
// token request between the three, not one per replica.
func TestRedisReplicasShareTheApplicationsToken(t *testing.T) {
	t.Parallel()
	r := newRedisRig(t, coop.Options{}, redistest.Options{}, false)
	cs := r.replicas(t, 3)
	stop := make(chan struct{})
	wait := hammer(t, cs, stop)
	poll.Until(t, "no token fetched", func() bool { return r.f.em.CountTokenRequests("client_credentials") > 0 })
	expiries := 0
	for end, wait := time.Now().Add(15*time.Second), 500*time.Millisecond; time.Now().Add(wait).Before(end); wait = revokeEvery {
		time.Sleep(wait)
		before := r.f.em.CountTokenRequests("client_credentials")
		r.f.em.ExpireAllTokens()
		expiries++
		poll.Until(t, "no replica fetched a token after the expiry", func() bool {
			return r.f.em.CountTokenRequests("client_credentials") > before
		})
	}
	time.Sleep(time.Second) // the last expiry's stragglers
	close(stop)
	failed := wait()
	for _, c := range cs {
		c.stop(t)
	}
	n := r.f.em.CountTokenRequests("client_credentials")
	t.Logf("%d expiries in 15 s: %d token requests between 3 replicas, %d requests failed", expiries, n, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d requests failed, the first: %s", len(failed), failed[0])
	}
	if n != expiries+1 {
		t.Errorf("%d token requests for the first token and %d expiries; want one each", n, expiries)
	}
}

// A login from this process reaches three replicas serving login_required,
// and a logout stops them, without a restart.
func TestRedisLoginAndLogoutReachEveryReplica(t *testing.T) {
	t.Parallel()
	r := newRedisRig(t, coop.Options{}, redistest.Options{}, true)
	cs := r.replicas(t, 3)
	for _, c := range cs {
		if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 503 || a.json["error"] != "login_required" {
			t.Fatalf("before the login: %d %s", a.status, a.body)
		}
	}
	if _, err := r.f.login(t, r.cfg, true); err != nil {
		t.Fatal(err)
	}
	loggedIn := time.Now()
	for _, c := range cs {
		poll.Until(t, c.url+" does not act for the farmer", func() bool {
			return call(t, "POST", c.url+"/api/1/eggs-count", nil).status == 200
		})
	}
	t.Logf("the login reached the three replicas in %v", time.Since(loggedIn).Round(time.Millisecond))
	if n := r.f.refreshRequests(); n != 0 {
		t.Errorf("%d refresh requests: the replicas should take the login's token", n)
	}
	if err := runLogout(context.Background(), &invocation{settings: r.cfg, out: &logBuffer{}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		poll.Until(t, c.url+" still acts for the farmer after the logout", func() bool {
			a := call(t, "POST", c.url+"/api/1/eggs-count", nil)
			return a.status == 503 && a.json["error"] == "login_required"
		})
	}
	for _, c := range cs {
		c.stop(t)
	}
}

// The record in Redis holds no token text; a replica with another key says
// so in one line naming the key ids, keeps running, and answers 503.
func TestRedisSealedRecordAndAWrongKey(t *testing.T) {
	t.Parallel()
	r := newRedisRig(t, coop.Options{}, redistest.Options{}, true)
	if _, err := r.f.login(t, r.cfg, true); err != nil {
		t.Fatal(err)
	}
	rec, ok := r.grant(t, r.store(t))
	if !ok || rec.AccessToken == "" || rec.RefreshToken == "" {
		t.Fatalf("the grant in Redis: %v, %v", rec, ok)
	}
	client := r.rs.Client(t)
	keys, err := client.Keys(context.Background(), "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys in Redis: %v, %v", keys, err)
	}
	for _, k := range keys {
		var text string
		if typ, _ := client.Type(context.Background(), k).Result(); typ == "hash" {
			m, _ := client.HGetAll(context.Background(), k).Result()
			text = fmt.Sprint(m)
		} else {
			text = fmt.Sprint(client.Dump(context.Background(), k).Val())
		}
		if strings.Contains(text, rec.AccessToken) || strings.Contains(text, rec.RefreshToken) {
			t.Errorf("Redis key %s holds a token in clear", k)
		}
	}

	wrong := make([]byte, 32)
	_, _ = rand.Read(wrong)
	c := r.replica(t, 0, config.EnvPrefix+"STORE_KEY_FILE="+r.writeFile(t, t.TempDir(), "keys", base64.StdEncoding.EncodeToString(wrong)))
	a := call(t, "POST", c.url+"/api/1/eggs-count", nil)
	if a.status != 503 || a.json["error"] != "store_unavailable" {
		t.Fatalf("with a wrong key: %d %s", a.status, a.body)
	}
	if !strings.Contains(a.body, redisstore.KeyID(r.key)) || !strings.Contains(a.body, redisstore.KeyID(wrong)) {
		t.Errorf("the answer names neither key id: %s", a.body)
	}
	time.Sleep(2 * time.Second) // a few rechecks: it must not crash
	if err := c.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the replica with a wrong key exited: %v\n%s", err, c.stderr.String())
	}
	c.stop(t)
}

// Redis stopped for 10 s: the replicas serve on with the tokens they hold.
// Restarted with its data, or without (the replicas write the grant back),
// the grant works: a revocation costs one refresh, none refused.
func TestRedisStoppedAndRestarted(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keeping its data %v", keep), func(t *testing.T) {
			t.Parallel()
			r := newRedisRig(t, coop.Options{}, redistest.Options{Persist: keep}, true)
			if _, err := r.f.login(t, r.cfg, true); err != nil {
				t.Fatal(err)
			}
			cs := r.replicas(t, 3)
			for _, c := range cs {
				if a := call(t, "POST", c.url+"/api/1/eggs-count", nil); a.status != 200 {
					t.Fatalf("%s: %d %s", c.url, a.status, a.body)
				}
			}
			r.rs.Stop()
			stop := make(chan struct{})
			wait := hammer(t, cs, stop)
			time.Sleep(10 * time.Second)
			close(stop)
			if failed := wait(); len(failed) > 0 {
				t.Errorf("with Redis down, %d requests failed, the first: %s", len(failed), failed[0])
			}
			r.rs.Restart(keep)
			st := r.store(t)
			poll.Until(t, "the grant is not in Redis again", func() bool {
				_, ok := r.grant(t, st)
				return ok
			})
			rec, _ := r.grant(t, st)
			r.f.em.RevokeToken(rec.AccessToken)
			for _, c := range cs {
				poll.Until(t, c.url+" does not serve after the revocation", func() bool {
					return call(t, "POST", c.url+"/api/1/eggs-count", nil).status == 200
				})
			}
			if ok, refused := r.refreshAnswers(); ok != 1 || refused != 0 {
				t.Errorf("%d refreshes, %d refused, for one revocation", ok, refused)
			}
			for _, c := range cs {
				c.stop(t)
			}
		})
	}
}

// The replica holding the grant's lock is SIGKILLed while its refresh
// request hangs at COOP: once the lock's TTL has run out another replica
// refreshes, and the grant is intact.
func TestRedisLockHolderKilledMidRefresh(t *testing.T) {
	t.Parallel()
	r, cs, st, rec := shortLockRig(t)
	r.f.em.SetTokenFault(coop.FaultHang)
	r.f.em.RevokeToken(rec.AccessToken)
	var calls sync.WaitGroup
	for _, c := range cs {
		calls.Go(func() {
			// the killed replica's caller gets no answer: no check here
			if resp, err := http.Post(c.url+"/api/1/eggs-count", "", nil); err == nil {
				resp.Body.Close()
			}
		})
	}
	var holder string
	poll.Until(t, "no replica holds the grant's lock", func() bool {
		info, err := st.Info(context.Background(), server.StoreKey(&r.cfg.Route))
		holder = info.LockHolder
		return err == nil && holder != ""
	})
	var killed *child
	for i, c := range cs {
		if strings.HasPrefix(holder, fmt.Sprintf("replica-%d", i)) {
			killed = c
		}
	}
	if killed == nil {
		t.Fatalf("the lock holder %q is none of the replicas", holder)
	}
	_ = killed.cmd.Process.Kill()
	_ = killed.cmd.Wait()
	r.f.em.SetTokenFault(coop.FaultNone)
	calls.Wait()
	for _, c := range cs {
		if c == killed {
			continue
		}
		poll.Until(t, c.url+" does not serve after the holder's death", func() bool {
			return call(t, "POST", c.url+"/api/1/eggs-count", nil).status == 200
		})
		c.stop(t)
	}
	now, _ := r.grant(t, st)
	if !r.f.em.RefreshTokenLive(now.RefreshToken) {
		t.Error("the refresh token in Redis is not live at COOP: the grant is lost")
	}
	if _, refused := r.refreshAnswers(); refused != 0 {
		t.Errorf("%d refreshes refused", refused)
	}
}

// Redis SIGSTOPped beyond the lock's TTL, right as a replica's refresh
// reaches COOP: on resume its lock has expired, but its marker has not: the
// replica that takes the lock next waits for it, the paused replica's
// write lands, and the next one takes its tokens. Every replica serves
// again, the grant is intact, and no refresh token is sent twice.
func TestRedisPausedBeyondTheLockTTL(t *testing.T) {
	t.Parallel()
	r, cs, st, rec := shortLockRig(t)
	var paused atomic.Bool
	resumed := make(chan struct{})
	r.f.watchToken(func() {
		if paused.CompareAndSwap(false, true) {
			r.rs.Pause()
			go func() {
				time.Sleep(5 * time.Second)
				r.rs.Resume()
				close(resumed)
			}()
		}
	})
	r.f.em.RevokeToken(rec.AccessToken)
	stop := make(chan struct{})
	wait := hammer(t, cs, stop)
	poll.Until(t, "no refresh reached COOP", paused.Load)
	<-resumed
	for _, c := range cs {
		poll.Until(t, c.url+" does not serve after Redis resumed", func() bool {
			return call(t, "POST", c.url+"/api/1/eggs-count", nil).status == 200
		})
	}
	close(stop)
	wait()
	poll.Until(t, "the grant in Redis is not the live one", func() bool {
		now, _ := r.grant(t, st)
		return r.f.em.RefreshTokenLive(now.RefreshToken)
	})
	for _, c := range cs {
		c.stop(t)
	}
	ok, refused := r.refreshAnswers()
	t.Logf("%d refreshes, %d refused", ok, refused)
	if refused != 0 {
		t.Errorf("%d refreshes, %d refused: a refresh token was sent twice", ok, refused)
	}
}
