//go:build unix

package redisstore

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redistest"
	"github.com/coop-proxy/coop-proxy/tokenstore"
	"github.com/coop-proxy/coop-proxy/tokenstore/storetest"
)

// tlsOptions are the Options of a store that trusts ca and shows a client
// certificate from it.
func tlsOptions(t *testing.T, ca *redistest.CA) Options {
	kp := ca.Issue(t)
	return Options{CAFile: ca.File, CertFile: kp.CertFile, KeyFile: kp.KeyFile, SealKeys: [][]byte{newKey()}, LockTTL: 5 * time.Second}
}

// The contract holds on rediss://, against a redis-server that requires a
// client certificate.
func TestContractTLS(t *testing.T) {
	ca := redistest.NewCA(t)
	o := tlsOptions(t, ca)
	storetest.Run(t, func(t *testing.T) tokenstore.Backend {
		srv := serverOf(t, redistest.Options{TLS: ca, AuthClients: true})
		if !strings.HasPrefix(srv.URL(), "rediss://") {
			t.Fatalf("the server's URL is %s; want rediss://", srv.URL())
		}
		return open(t, srv, o)
	})
}

// unavailableSoon calls op and wants, well before a hang would end the
// test, an error wrapping tokenstore.ErrUnavailable that says want.
func unavailableSoon(t *testing.T, what, want string, op func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op() }()
	select {
	case err := <-done:
		if !errors.Is(err, tokenstore.ErrUnavailable) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v; want ErrUnavailable saying %q", what, err, want)
		}
	case <-time.After(30 * time.Second): // the store's timeouts are a few seconds
		t.Fatalf("%s hangs", what)
	}
}

// A server whose certificate another CA signed is refused, promptly, with
// the reason: by Load and by Update.
func TestTLSWrongCA(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{TLS: redistest.NewCA(t)})
	s := open(t, srv, tlsOptions(t, redistest.NewCA(t)))
	unavailableSoon(t, "Load", "certificate signed by unknown authority", func() error {
		_, _, err := s.Load(t.Context(), key)
		return err
	})
	unavailableSoon(t, "Update", "certificate signed by unknown authority", func() error {
		_, err := s.Update(t.Context(), key, increment)
		return err
	})
}

// A server that requires a client certificate refuses a store without
// one, promptly, and the error says what is missing (with TLS 1.3 the
// client sees only a reset connection); a store with one gets through.
func TestTLSClientCertificateRequired(t *testing.T) {
	ca := redistest.NewCA(t)
	srv := redistest.Start(t, redistest.Options{TLS: ca, AuthClients: true})
	o := tlsOptions(t, ca)
	o.CertFile, o.KeyFile = "", ""
	s := open(t, srv, o)
	unavailableSoon(t, "Load without a client certificate", "Redis asked for a client certificate and none is set", func() error {
		_, _, err := s.Load(t.Context(), key)
		return err
	})
	storetest.Put(t, open(t, srv, tlsOptions(t, ca)), key, secretRecord)
}

// A server that requires none serves a store that trusts its CA and shows
// no certificate.
func TestTLSWithoutClientCertificate(t *testing.T) {
	ca := redistest.NewCA(t)
	srv := redistest.Start(t, redistest.Options{TLS: ca})
	o := tlsOptions(t, ca)
	o.CertFile, o.KeyFile = "", ""
	s := open(t, srv, o)
	want := storetest.Put(t, s, key, secretRecord)
	if r, ok := storetest.Load(t, s, key); !ok || r.RefreshToken != want.RefreshToken {
		t.Errorf("Load = %v, %v; want %v", r, ok, want)
	}
	if s.String() != srv.URL() {
		t.Errorf("the store describes itself as %s; want %s", s.String(), srv.URL())
	}
}

// TLS files that do not hold what they should are refused at Open, which
// names them.
func TestOpenRefusesTLSFiles(t *testing.T) {
	ca := redistest.NewCA(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, b := ca.Issue(t), ca.Issue(t)
	for name, tc := range map[string]struct {
		o    Options
		want []string
	}{
		"CA file without a certificate": {Options{CAFile: garbage}, []string{garbage}},
		"CA file is a key":              {Options{CAFile: a.KeyFile}, []string{a.KeyFile}},
		"certificate that does not parse": {Options{CAFile: ca.File, CertFile: garbage, KeyFile: a.KeyFile},
			[]string{garbage, a.KeyFile}},
		"key of another certificate": {Options{CAFile: ca.File, CertFile: a.CertFile, KeyFile: b.KeyFile},
			[]string{a.CertFile, b.KeyFile}},
		"missing key file": {Options{CAFile: ca.File, CertFile: a.CertFile, KeyFile: filepath.Join(dir, "none.key")},
			[]string{filepath.Join(dir, "none.key")}},
	} {
		t.Run(name, func(t *testing.T) {
			tc.o.URL, tc.o.Plaintext = "rediss://127.0.0.1:6379/0", true
			_, err := Open(t.Context(), tc.o)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) || strings.Contains(err.Error(), "\n") {
					t.Errorf("Open = %v; want one line naming %s", err, w)
				}
			}
		})
	}
}
