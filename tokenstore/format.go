package tokenstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// maxFileSize bounds the token file: a larger one is treated as corrupt, and
// Encode refuses to produce one.
const maxFileSize = 1 << 20

// formatVersion is the only "version" Decode accepts. The journal's fields,
// and a grant's DPoP key (dpop_jkt, dpop_key), were added without changing
// it: readers that predate them ignore them, so a binary of either age can
// still read the file of the other (and would otherwise move it aside as
// corrupt). An older binary that rewrites the file drops the DPoP key: the
// tokens bound to it are then unusable, and fetched again (see dpop.Keys).
const formatVersion = 1

// errTooLarge reports data over maxFileSize.
var errTooLarge = errors.New("larger than the 1 MiB limit")

// file is the JSON document:
//
//	{
//	  "version": 1,
//	  "generation": 7,
//	  "replaces": "<hex SHA-256 of the file this one replaced>",
//	  "grants": {"<Key.String()>": {...}},
//	  "sha256": "<hex SHA-256 of every byte before the comma that ends the grants>"
//	}
//
// The checksum comes last, in a fixed form, so that a file cut short or
// damaged anywhere fails it (see encode). Files written before the journal
// have only "version" and "grants".
type file struct {
	Version    int                   `json:"version"`
	Generation uint64                `json:"generation,omitempty"`
	Replaces   string                `json:"replaces,omitempty"`
	Grants     map[string]fileRecord `json:"grants"`
	SHA256     string                `json:"sha256,omitempty"`
}

// header is what a token file says of its place in the store's history:
// zero for a file without a checksum (written before the journal).
type header struct {
	generation uint64 // one more than the file it replaced: incremented on every write
	replaces   string // hex SHA-256 of the bytes of the file it replaced
}

// fileRecord is a Record as stored. Times are RFC 3339 strings ("" for a
// zero time), parsed here so that a bad value is reported without quoting it.
type fileRecord struct {
	AccessToken  string   `json:"access_token,omitempty"`
	TokenType    string   `json:"token_type,omitempty"`
	RefreshToken string   `json:"refresh_token,omitempty"`
	Expiry       string   `json:"expiry,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	UserID       int64    `json:"user_id,omitempty"`
	Email        string   `json:"email,omitempty"`
	GrantedAt    string   `json:"granted_at,omitempty"`
	UpdatedAt    string   `json:"updated_at,omitempty"`
	DPoPJKT      string   `json:"dpop_jkt,omitempty"`
	DPoPKey      []byte   `json:"dpop_key,omitempty"` // PKCS#8 DER, base64 (encoding/json's []byte)
	Refused      string   `json:"refused_refresh_token_sha256,omitempty"`
}

// Decode parses the token file format. Empty (or all-whitespace) data is an
// empty store. It rejects data over 1 MiB, any version other than 1, a
// checksum that is not last or does not match, and strings (keys, tokens,
// scopes, email) that are not UTF-8 or hold control characters; unknown
// fields are ignored. Its errors never quote a token. Times come back in
// UTC; an empty scope list comes back nil.
func Decode(data []byte) (map[string]Record, error) {
	m, _, err := decode(data)
	return m, err
}

// decode is Decode, also returning the file's header.
func decode(data []byte) (map[string]Record, header, error) {
	if len(data) > maxFileSize {
		return nil, header{}, errTooLarge
	}
	m := map[string]Record{}
	if len(bytes.TrimSpace(data)) == 0 {
		return m, header{}, nil
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, header{}, jsonError(err)
	}
	if f.Version != formatVersion {
		return nil, header{}, fmt.Errorf("unsupported format version %d (want %d)", f.Version, formatVersion)
	}
	var h header
	if f.SHA256 != "" {
		if err := verify(data, f.SHA256); err != nil {
			return nil, header{}, err
		}
		h = header{generation: f.Generation, replaces: f.Replaces}
	}
	for key, fr := range f.Grants {
		r, err := fr.record()
		if err == nil {
			err = checkGrant(key, r)
		}
		if err != nil {
			return nil, header{}, fmt.Errorf("grant %q: %w", key, err)
		}
		m[key] = r
	}
	return m, h, nil
}

// Encode produces a token file for m, of generation 1 and replacing no
// file, as a store's first write would (indented, keys sorted). It fails,
// without quoting any token, on anything Decode would reject.
func Encode(m map[string]Record) ([]byte, error) {
	return encode(m, header{generation: 1, replaces: checksum(nil)})
}

// encode produces the token file for m with the header h.
func encode(m map[string]Record, h header) ([]byte, error) {
	f := file{Version: formatVersion, Generation: h.generation, Replaces: h.replaces, Grants: make(map[string]fileRecord, len(m))}
	for key, r := range m {
		if err := checkGrant(key, r); err != nil {
			return nil, fmt.Errorf("grant %q: %w", key, err)
		}
		f.Grants[key] = toFileRecord(r)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	// The document without "sha256" ends in "\n}\n": the checksum of what
	// precedes that end is added as the last member.
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n}\n"))
	data := append(body, checksumTail(checksum(body))...)
	if len(data) > maxFileSize {
		return nil, errTooLarge
	}
	return data, nil
}

// toFileRecord is r as stored.
func toFileRecord(r Record) fileRecord {
	return fileRecord{
		AccessToken:  r.AccessToken,
		TokenType:    r.TokenType,
		RefreshToken: r.RefreshToken,
		Expiry:       formatTime(r.Expiry),
		Scopes:       r.Scopes,
		UserID:       r.UserID,
		Email:        r.Email,
		GrantedAt:    formatTime(r.GrantedAt),
		UpdatedAt:    formatTime(r.UpdatedAt),
		DPoPJKT:      r.DPoPJKT,
		DPoPKey:      r.DPoPKey,
		Refused:      r.RefusedRefresh,
	}
}

// MarshalRecord encodes one grant, stored under key, as the token file
// stores it (a JSON object), for a backend that keeps grants one by one.
// It fails, without quoting any token, on what the file could not hold.
func MarshalRecord(key string, r Record) ([]byte, error) {
	if err := checkGrant(key, r); err != nil {
		return nil, fmt.Errorf("grant %q: %w", key, err)
	}
	data, err := json.Marshal(toFileRecord(r))
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	return data, nil
}

// UnmarshalRecord decodes what MarshalRecord produced, with Decode's checks;
// its errors never quote a token.
func UnmarshalRecord(key string, data []byte) (Record, error) {
	if len(data) > maxFileSize {
		return Record{}, errTooLarge
	}
	var f fileRecord
	if err := json.Unmarshal(data, &f); err != nil {
		return Record{}, jsonError(err)
	}
	r, err := f.record()
	if err == nil {
		err = checkGrant(key, r)
	}
	if err != nil {
		return Record{}, fmt.Errorf("grant %q: %w", key, err)
	}
	return r, nil
}

// checksumTail is how a file with a checksum ends: its checksum member.
func checksumTail(sum string) string { return ",\n  \"sha256\": \"" + sum + "\"\n}\n" }

// checksum is the hex SHA-256 of data.
func checksum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// verify checks that a file ends with the checksum member it declares and
// that the checksum matches the bytes before it.
func verify(data []byte, sum string) error {
	body, ok := bytes.CutSuffix(data, []byte(checksumTail(sum)))
	if !ok || checksum(body) != sum {
		return errors.New("checksum mismatch: the file is incomplete or damaged")
	}
	return nil
}

// record converts a stored record, normalising what JSON can spell twice
// (an empty scope list, a zero time) so that Decode(Encode(m)) equals m.
func (f fileRecord) record() (Record, error) {
	r := Record{
		AccessToken:    f.AccessToken,
		TokenType:      f.TokenType,
		RefreshToken:   f.RefreshToken,
		Scopes:         f.Scopes,
		UserID:         f.UserID,
		Email:          f.Email,
		DPoPJKT:        f.DPoPJKT,
		DPoPKey:        f.DPoPKey,
		RefusedRefresh: f.Refused,
	}
	if len(r.Scopes) == 0 {
		r.Scopes = nil
	}
	if len(r.DPoPKey) == 0 {
		r.DPoPKey = nil
	}
	for _, t := range []struct {
		name string
		in   string
		out  *time.Time
	}{{"expiry", f.Expiry, &r.Expiry}, {"granted_at", f.GrantedAt, &r.GrantedAt}, {"updated_at", f.UpdatedAt, &r.UpdatedAt}} {
		if t.in == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.in)
		if err != nil {
			return Record{}, fmt.Errorf("%s is not an RFC 3339 time", t.name)
		}
		if !v.IsZero() {
			*t.out = v.UTC()
		}
	}
	return r, nil
}

// formatTime is the stored form of t: RFC 3339 in UTC, "" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// checkGrant reports what in a grant the file cannot hold: text that is not
// UTF-8 or has control characters (a token ends up in an HTTP header, an
// email on a terminal), and times whose UTC year has no 4-digit RFC 3339 form.
func checkGrant(key string, r Record) error {
	texts := []struct{ name, value string }{
		{"key", key},
		{"access_token", r.AccessToken},
		{"token_type", r.TokenType},
		{"refresh_token", r.RefreshToken},
		{"email", r.Email},
		{"dpop_jkt", r.DPoPJKT},
		{"refused_refresh_token_sha256", r.RefusedRefresh},
	}
	for _, s := range r.Scopes {
		texts = append(texts, struct{ name, value string }{"scope", s})
	}
	for _, t := range texts {
		if !utf8.ValidString(t.value) {
			return fmt.Errorf("%s is not valid UTF-8", t.name)
		}
		if strings.ContainsFunc(t.value, unicode.IsControl) {
			return fmt.Errorf("%s contains a control character", t.name)
		}
	}
	for _, t := range []struct {
		name  string
		value time.Time
	}{{"expiry", r.Expiry}, {"granted_at", r.GrantedAt}, {"updated_at", r.UpdatedAt}} {
		if y := t.value.UTC().Year(); !t.value.IsZero() && (y < 0 || y > 9999) {
			return fmt.Errorf("%s is outside years 0-9999", t.name)
		}
	}
	return nil
}

// jsonError describes a JSON decoding error without the file's content: a
// syntax error quotes at most one character, a type error names the field.
func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d: %s", syntax.Offset, syntax)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errors.New("invalid JSON: the document is not an object")
		}
		return fmt.Errorf("invalid JSON: %s has the wrong type", typ.Field)
	default:
		return errors.New("invalid JSON")
	}
}
