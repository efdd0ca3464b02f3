package tokenstore

import (
	"bytes"
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

// formatVersion is the only "version" Decode accepts.
const formatVersion = 1

// errTooLarge reports data over maxFileSize.
var errTooLarge = errors.New("larger than the 1 MiB limit")

// file is the JSON document: {"version":1,"grants":{"<Key.String()>":{...}}}.
type file struct {
	Version int                   `json:"version"`
	Grants  map[string]fileRecord `json:"grants"`
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
}

// Decode parses the token file format. Empty (or all-whitespace) data is an
// empty store. It rejects data over 1 MiB, any version other than 1, and
// strings (keys, tokens, scopes, email) that are not UTF-8 or hold control
// characters; unknown fields are ignored. Its errors never quote a token.
// Times come back in UTC; an empty scope list comes back nil.
func Decode(data []byte) (map[string]Record, error) {
	if len(data) > maxFileSize {
		return nil, errTooLarge
	}
	m := map[string]Record{}
	if len(bytes.TrimSpace(data)) == 0 {
		return m, nil
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, jsonError(err)
	}
	if f.Version != formatVersion {
		return nil, fmt.Errorf("unsupported format version %d (want %d)", f.Version, formatVersion)
	}
	for key, fr := range f.Grants {
		r, err := fr.record()
		if err == nil {
			err = checkGrant(key, r)
		}
		if err != nil {
			return nil, fmt.Errorf("grant %q: %w", key, err)
		}
		m[key] = r
	}
	return m, nil
}

// Encode produces the token file for m (version 1, indented, keys sorted). It
// fails, without quoting any token, on anything Decode would reject.
func Encode(m map[string]Record) ([]byte, error) {
	f := file{Version: formatVersion, Grants: make(map[string]fileRecord, len(m))}
	for key, r := range m {
		if err := checkGrant(key, r); err != nil {
			return nil, fmt.Errorf("grant %q: %w", key, err)
		}
		f.Grants[key] = fileRecord{
			AccessToken:  r.AccessToken,
			TokenType:    r.TokenType,
			RefreshToken: r.RefreshToken,
			Expiry:       formatTime(r.Expiry),
			Scopes:       r.Scopes,
			UserID:       r.UserID,
			Email:        r.Email,
			GrantedAt:    formatTime(r.GrantedAt),
			UpdatedAt:    formatTime(r.UpdatedAt),
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	if buf.Len() > maxFileSize {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

// record converts a stored record, normalising what JSON can spell twice
// (an empty scope list, a zero time) so that Decode(Encode(m)) equals m.
func (f fileRecord) record() (Record, error) {
	r := Record{
		AccessToken:  f.AccessToken,
		TokenType:    f.TokenType,
		RefreshToken: f.RefreshToken,
		Scopes:       f.Scopes,
		UserID:       f.UserID,
		Email:        f.Email,
	}
	if len(r.Scopes) == 0 {
		r.Scopes = nil
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
