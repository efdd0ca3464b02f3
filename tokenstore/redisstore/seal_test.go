package redisstore

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// newKey returns a random AES-256 key.
func newKey() []byte {
	k := make([]byte, keySize)
	_, _ = rand.Read(k)
	return k
}

func TestParseKeys(t *testing.T) {
	k1, k2 := newKey(), newKey()
	b64 := base64.StdEncoding.EncodeToString
	keys, err := ParseKeys([]byte("# the new key first\n" + b64(k1) + "\n\n  " + b64(k2) + "  \n# old\n"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k1) || !bytes.Equal(keys[1], k2) {
		t.Fatalf("ParseKeys = %d keys, %v", len(keys), err)
	}
	secret := b64(k1[:16])
	for name, tc := range map[string]struct{ data, want string }{
		"not base64": {"# c\n" + b64(k1) + "\nnot*base64!\n", "line 3: not a base64 key"},
		"short":      {secret + "\n", "line 1: the key is 16 bytes, want 32"},
		"duplicate":  {b64(k1) + "\n" + b64(k1) + "\n", "line 2: the same key as line 1"},
		"empty":      {"# nothing\n\n", "no key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKeys([]byte(tc.data))
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), secret) {
				t.Errorf("ParseKeys = %v; want %q, without the key", err, tc.want)
			}
		})
	}
}

func TestKeyID(t *testing.T) {
	// SHA-256 of 32 zero bytes begins 66687aad.
	if id := KeyID(make([]byte, 32)); id != "66687aad" {
		t.Errorf("KeyID = %s", id)
	}
}

func TestSealOpen(t *testing.T) {
	k1, k2 := newKey(), newKey()
	s, err := newSealer([][]byte{k1})
	if err != nil {
		t.Fatal(err)
	}
	record := []byte(`{"refresh_token":"rt-SECRET"}`)
	sealed, err := s.seal("grant-a", record)
	if err != nil || bytes.Contains(sealed, []byte("SECRET")) {
		t.Fatalf("seal = %s, %v", sealed, err)
	}
	again, _ := s.seal("grant-a", record)
	if bytes.Equal(sealed, again) {
		t.Error("two seals of one record are equal: the nonce is not random")
	}
	if got, err := s.open("grant-a", sealed); err != nil || !bytes.Equal(got, record) {
		t.Errorf("open = %s, %v", got, err)
	}
	if _, err := s.open("grant-b", sealed); !errors.Is(err, errUnseal) {
		t.Errorf("open under another grant = %v", err)
	}
	tampered := bytes.Replace(sealed, []byte(`"ct":"`), []byte(`"ct":"AA`), 1)
	if _, err := s.open("grant-a", tampered); !errors.Is(err, errUnseal) && !errors.Is(err, errCorrupt) {
		t.Errorf("open of a tampered record = %v", err)
	}
	rotated, _ := newSealer([][]byte{k2, k1})
	if got, err := rotated.open("grant-a", sealed); err != nil || !bytes.Equal(got, record) {
		t.Errorf("open with the key second = %s, %v", got, err)
	}
	other, _ := newSealer([][]byte{k2})
	if _, err := other.open("grant-a", sealed); !errors.Is(err, errUnseal) || !strings.Contains(err.Error(), KeyID(k1)) {
		t.Errorf("open with another key = %v", err)
	}
	if _, err := s.open("grant-a", []byte("not json")); !errors.Is(err, errCorrupt) {
		t.Errorf("open of garbage = %v", err)
	}
}
