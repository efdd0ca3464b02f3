package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A Redis store: its password from a file only, sealed grants unless
// plaintext is asked for in so many words, and a lock that outlives the
// token request. Each refusal is one line naming the setting.
func TestRedisStoreSettings(t *testing.T) {
	dir := t.TempDir()
	pwFile, keyFile := filepath.Join(dir, "pw"), filepath.Join(dir, "keys")
	if err := os.WriteFile(pwFile, []byte("s3cret-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"CLIENT_ID": "app", "CLIENT_SECRET": "x", "STORE": "redis://127.0.0.1:6379/0"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	s, err := load(t, nil, with("STORE_PASSWORD_FILE", pwFile, "STORE_KEY_FILE", keyFile), Everything)
	if err != nil {
		t.Fatal(err)
	}
	if s.StorePassword.Reveal() != "s3cret-pw" || !strings.HasPrefix(s.StoreKeys.Reveal(), "AAAA") || s.StoreLockTTL.String() != "45s" ||
		s.StoreWaitTimeout.String() != "1s" || s.Route.TokenTimeout.String() != "30s" || s.Replica == "" || s.StoreLockGrace != 0 {
		t.Fatalf("settings read: %+v", s)
	}
	if _, err := load(t, nil, with("STORE_PLAINTEXT", "true"), Everything); err != nil {
		t.Fatalf("plaintext asked for: %v", err)
	}
	if s, err := load(t, nil, with("STORE_PLAINTEXT", "true", "STORE_LOCK_GRACE", "5s"), Everything); err != nil || s.StoreLockGrace != 5*time.Second {
		t.Fatalf("STORE_LOCK_GRACE=5s: %v, %v", s, err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{nil, "COOP_PROXY_STORE_KEY_FILE (--store-key-file): a Redis store keeps the grants sealed"},
		{nil, "or set COOP_PROXY_STORE_PLAINTEXT=true to keep them in Redis unsealed"},
		{[]string{"STORE", "redis://:hunter2@127.0.0.1:6379/0", "STORE_PLAINTEXT", "true"}, "put it in a file and set COOP_PROXY_STORE_PASSWORD_FILE"},
		{[]string{"STORE_PLAINTEXT", "true", "STORE_PASSWORD_FILE", filepath.Join(dir, "missing")}, "COOP_PROXY_STORE_PASSWORD_FILE (--store-password-file): cannot read the secret file"},
		{[]string{"STORE_PLAINTEXT", "true", "STORE_LOCK_TTL", "30s"}, "COOP_PROXY_STORE_LOCK_TTL (--store-lock-ttl): 30s is not more than COOP_PROXY_TOKEN_TIMEOUT (30s)"},
		{[]string{"STORE_PLAINTEXT", "true", "STORE_KEY_FILE", keyFile}, "not both"},
		{[]string{"STORE_PLAINTEXT", "true", "STORE_LOCK_GRACE", "-1s"}, "COOP_PROXY_STORE_LOCK_GRACE (--store-lock-grace): must be 0 (as long as COOP_PROXY_STORE_LOCK_TTL) or more"},
		{[]string{"STORE", "redis://127.0.0.1:26379/0?master_name=m&sentinel_password=hunter2", "STORE_PLAINTEXT", "true"}, "put it in a file"},
		{[]string{"STORE_KEY_FILE", pwFile}, "COOP_PROXY_STORE_KEY_FILE (--store-key-file): " + pwFile + ": "},
	} {
		_, err := load(t, nil, with(tc.env...), Everything)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.env, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the URL's password is in the error: %v", err)
		}
	}
}
