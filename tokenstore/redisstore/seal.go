package redisstore

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// keySize is an AES-256 key's length.
const keySize = 32

// ParseKeys reads the key file: one key a line, the standard base64 of 32
// random bytes (`head -c 32 /dev/urandom | base64`); lines that are blank
// or start with '#' are ignored. The first key seals, all of them open, so
// a new key is rotated in by putting it first and the old one after it.
// Errors name the line, never the key.
func ParseKeys(data []byte) ([][]byte, error) {
	var keys [][]byte
	seen := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not a base64 key (want the standard base64 of 32 random bytes)", n)
		}
		if len(key) != keySize {
			return nil, fmt.Errorf("line %d: the key is %d bytes, want 32 (an AES-256 key)", n, len(key))
		}
		if m, dup := seen[string(key)]; dup {
			return nil, fmt.Errorf("line %d: the same key as line %d", n, m)
		}
		seen[string(key)] = n
		keys = append(keys, key)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the key file")
	}
	return keys, nil
}

// KeyID names a key without revealing it: the first 8 hex digits of its
// SHA-256. Errors and status show it; sealed records carry it.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

// envelope is a record as stored in the grant's hash, sealed:
//
//	{"v":1,"kid":"1a2b3c4d","n":"<base64 nonce>","ct":"<base64 ciphertext>"}
//
// or in plaintext (COOP_PROXY_STORE_PLAINTEXT=true), marked as such and
// naming its grant so that a record copied under another grant is refused
// as a sealed one would be:
//
//	{"v":1,"grant":"<Key.String()>","plain":{...}}
type envelope struct {
	V     int             `json:"v"`
	KID   string          `json:"kid,omitempty"`
	Nonce []byte          `json:"n,omitempty"`
	CT    []byte          `json:"ct,omitempty"`
	Grant string          `json:"grant,omitempty"`
	Plain json.RawMessage `json:"plain,omitempty"`
}

const envelopeVersion = 1

// sealer seals and opens records: AES-256-GCM with a random 96-bit nonce
// (NIST SP 800-38D §8.2.2: random nonces are safe far beyond the number of
// writes a grant sees under one key) and the grant's Key.String() as
// associated data, so a record moved to another grant does not open. With
// no keys it stores plaintext.
type sealer struct {
	aeads []cipher.AEAD // aeads[0] seals
	ids   []string
}

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for i, k := range keys {
		if len(k) != keySize {
			return nil, fmt.Errorf("seal key %d is %d bytes, want 32 (an AES-256 key)", i+1, len(k))
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
		s.ids = append(s.ids, KeyID(k))
	}
	return s, nil
}

// seal wraps the encoded record of grant in an envelope.
func (s *sealer) seal(grant string, record []byte) ([]byte, error) {
	if len(s.aeads) == 0 {
		return json.Marshal(envelope{V: envelopeVersion, Grant: grant, Plain: record})
	}
	nonce := make([]byte, s.aeads[0].NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ct := s.aeads[0].Seal(nil, nonce, record, []byte(grant))
	return json.Marshal(envelope{V: envelopeVersion, KID: s.ids[0], Nonce: nonce, CT: ct})
}

// errUnseal marks a record that none of the keys opens (or a plaintext
// record where sealed ones are expected, and the reverse).
var errUnseal = errors.New("cannot open the record")

// errCorrupt marks a stored value that is not an envelope at all.
var errCorrupt = errors.New("corrupt record")

// open returns the encoded record of grant from its envelope. Its errors
// name key ids, never keys nor content.
func (s *sealer) open(grant string, data []byte) ([]byte, error) {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil || e.V != envelopeVersion {
		return nil, fmt.Errorf("%w: not a version %d record envelope", errCorrupt, envelopeVersion)
	}
	sealed := e.KID != ""
	switch {
	case sealed && len(s.aeads) == 0:
		return nil, fmt.Errorf("%w: it is sealed with key %s and this store has no keys (set COOP_PROXY_STORE_KEY_FILE)", errUnseal, e.KID)
	case !sealed && len(s.aeads) > 0:
		return nil, fmt.Errorf("%w: it is stored in plaintext and this store seals (keys %s); a sealed store does not read plaintext records", errUnseal, strings.Join(s.ids, ", "))
	case !sealed:
		if e.Grant != grant {
			return nil, fmt.Errorf("%w: the plaintext record belongs to another grant", errUnseal)
		}
		return e.Plain, nil
	}
	for i, id := range s.ids {
		if id != e.KID {
			continue
		}
		record, err := s.aeads[i].Open(nil, e.Nonce, e.CT, []byte(grant))
		if err != nil {
			return nil, fmt.Errorf("%w: it does not open with key %s (it was moved from another grant, or damaged)", errUnseal, id)
		}
		return record, nil
	}
	return nil, fmt.Errorf("%w: it is sealed with key %s; this store has keys %s (add that key to COOP_PROXY_STORE_KEY_FILE)", errUnseal, e.KID, strings.Join(s.ids, ", "))
}
