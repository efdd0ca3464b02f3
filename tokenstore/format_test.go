package tokenstore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

const (
	secretAccess  = "at-SECRET-access-0123456789"
	secretRefresh = "rt-SECRET-refresh-9876543210"
)

func sampleRecord() Record {
	return Record{
		AccessToken:  secretAccess,
		TokenType:    "Bearer",
		RefreshToken: secretRefresh,
		Expiry:       time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC),
		Scopes:       []string{"farm:read", "farm:write"},
		UserID:       42,
		Email:        "farmer@example.com",
		GrantedAt:    time.Date(2029, 12, 31, 0, 0, 0, 0, time.UTC),
		UpdatedAt:    time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

func TestKeyStringIsCanonical(t *testing.T) {
	t.Parallel()
	base := Key{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Scopes: []string{"b", "a"}}
	same := []Key{
		{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Scopes: []string{"a", "b"}},
		{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Scopes: []string{"b", "a", "b", "a"}},
		{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Scopes: []string{"a b"}},
		{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Scopes: []string{" b ", "", "a"}},
	}
	for i, k := range same {
		if k.String() != base.String() {
			t.Errorf("same[%d]: %q != %q", i, k.String(), base.String())
		}
	}
	if want := "client_credentials|client|https://auth.example/token|a b"; base.String() != want {
		t.Errorf("String() = %q, want %q", base.String(), want)
	}

	// Parameters that select the token make another key (after a "#", '%'
	// escaped as in every field); without them the key reads as it always
	// has, so stores written before them still match.
	withParams := Key{TokenURL: "https://auth.example/token", ClientID: "client", GrantType: "client_credentials", Params: "audience=https%3A%2F%2Fapi"}
	if want := "client_credentials|client|https://auth.example/token#audience=https%253A%252F%252Fapi|"; withParams.String() != want {
		t.Errorf("String() = %q, want %q", withParams.String(), want)
	}

	different := []struct{ a, b Key }{
		{Key{GrantType: "client_credentials", ClientID: "c"}, Key{GrantType: "authorization_code", ClientID: "c"}},
		{Key{ClientID: "c", Scopes: []string{"a"}}, Key{ClientID: "c", Scopes: []string{"a", "b"}}},
		{Key{ClientID: "c", TokenURL: "https://a"}, Key{ClientID: "c", TokenURL: "https://b"}},
		{Key{ClientID: "a|b", TokenURL: "c"}, Key{ClientID: "a", TokenURL: "b|c"}},
		{Key{ClientID: "a%7Cb"}, Key{ClientID: "a|b"}},
		{Key{ClientID: "c", TokenURL: "https://a"}, Key{ClientID: "c", TokenURL: "https://a", Params: "audience=x"}},
		{Key{ClientID: "c", Params: "audience=x"}, Key{ClientID: "c", Params: "audience=y"}},
		{Key{ClientID: "c", Scopes: []string{"a|b=c"}}, Key{ClientID: "c", Scopes: []string{"a"}, Params: "b=c"}},
	}
	for _, d := range different {
		if d.a.String() == d.b.String() {
			t.Errorf("%#v and %#v share the key %q", d.a, d.b, d.a.String())
		}
	}
}

func TestRecordPrintingRedactsTokens(t *testing.T) {
	t.Parallel()
	r := sampleRecord()
	outputs := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%10v"} {
		outputs[verb] = fmt.Sprintf(verb, r)
		outputs[verb+" pointer"] = fmt.Sprintf(verb, &r)
		outputs[verb+" slice"] = fmt.Sprintf(verb, []Record{r})
		outputs[verb+" map"] = fmt.Sprintf(verb, map[string]Record{"k": r})
		outputs[verb+" struct"] = fmt.Sprintf(verb, struct{ R Record }{r})
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	outputs["json"] = string(js)
	for name, out := range outputs {
		if strings.Contains(out, "SECRET") {
			t.Errorf("%s reveals a token: %s", name, out)
		}
	}
	for _, name := range []string{"%v", "%+v", "%#v", "json"} {
		if !strings.Contains(outputs[name], redact.Fingerprint(secretAccess)) || !strings.Contains(outputs[name], redact.Fingerprint(secretRefresh)) {
			t.Errorf("%s lacks the fingerprints: %s", name, outputs[name])
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	t.Parallel()
	local := time.FixedZone("X", 5*3600)
	in := map[string]Record{
		"full":  sampleRecord(),
		"empty": {},
		"zoned": {AccessToken: "a", Expiry: time.Date(2030, 1, 1, 12, 0, 0, 0, local)},
	}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) {
		t.Fatalf("decoded %d grants, want %d", len(out), len(in))
	}
	for k, want := range in {
		got := out[k]
		if !got.Expiry.Equal(want.Expiry) || got.Expiry.Location() != time.UTC {
			t.Errorf("%s: expiry %v, want %v in UTC", k, got.Expiry, want.Expiry)
		}
		got.Expiry, want.Expiry = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %#v, want %#v", k, got, want)
		}
	}
	if !bytes.Contains(data, []byte(`"version": 1`)) || !bytes.Contains(data, []byte(`"access_token": "`+secretAccess+`"`)) {
		t.Errorf("unexpected encoding:\n%s", data)
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	valid, err := Encode(map[string]Record{"k": sampleRecord()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data string
	}{
		{"garbage", "not json at all"},
		{"truncated", string(valid[:len(valid)/2])},
		{"trailing garbage", string(valid) + "}"},
		{"wrong version", `{"version":2,"grants":{}}`},
		{"no version", `{"grants":{}}`},
		{"null document", `null`},
		{"array document", `[]`},
		{"grants not an object", `{"version":1,"grants":[]}`},
		{"control char in access token", `{"version":1,"grants":{"k":{"access_token":"` + secretAccess + `\r\nX-Evil: 1"}}}`},
		{"control char in refresh token", `{"version":1,"grants":{"k":{"refresh_token":"` + secretRefresh + `\u0000"}}}`},
		{"control char in token type", `{"version":1,"grants":{"k":{"token_type":"Bearer\t"}}}`},
		{"control char in scope", `{"version":1,"grants":{"k":{"scopes":["a\u001b[2J"]}}}`},
		{"control char in key", `{"version":1,"grants":{"k\n":{}}}`},
		{"token of the wrong type", `{"version":1,"grants":{"k":{"access_token":12345678901234}}}`},
		{"bad expiry", `{"version":1,"grants":{"k":{"expiry":"` + secretAccess + `"}}}`},
		{"expiry before year 0 in UTC", `{"version":1,"grants":{"k":{"expiry":"0000-01-01T00:00:00+01:00"}}}`},
		{"over 1 MiB", `{"version":1,"grants":{}}` + strings.Repeat(" ", maxFileSize)},
		{"checksum of other content", strings.Replace(string(valid), secretRefresh, secretRefresh[:len(secretRefresh)-1]+"X", 1)},
		{"checksum not last", strings.Replace(string(valid), "\n}\n", `,"x":1}`, 1)},
		{"checksum but reformatted", strings.Replace(string(valid), "\n  ", "\n ", -1)},
		{"checksum but trailing newline", string(valid) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode([]byte(tt.data))
			if err == nil {
				t.Fatalf("Decode accepted it: %#v", m)
			}
			if msg := err.Error(); strings.Contains(msg, "SECRET") || strings.Contains(msg, "12345678901234") {
				t.Errorf("error reveals a token: %v", err)
			}
		})
	}
}

func TestDecodeAcceptsEmpty(t *testing.T) {
	t.Parallel()
	for _, data := range []string{"", " \n\t", `{"version":1}`, `{"version":1,"grants":null}`, `{"version":1,"grants":{},"future":true}`} {
		m, err := Decode([]byte(data))
		if err != nil || m == nil || len(m) != 0 {
			t.Errorf("Decode(%q) = %v, %v; want an empty map", data, m, err)
		}
	}
}

func TestEncodeRejectsWhatDecodeWould(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    map[string]Record
	}{
		{"newline in access token", map[string]Record{"k": {AccessToken: secretAccess + "\n"}}},
		{"invalid UTF-8 in refresh token", map[string]Record{"k": {RefreshToken: secretRefresh + "\xff"}}},
		{"control char in key", map[string]Record{"k\x00": {}}},
		{"year 10000", map[string]Record{"k": {Expiry: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		{"over 1 MiB", map[string]Record{"k": {AccessToken: strings.Repeat("a", maxFileSize)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := Encode(tt.m)
			if err == nil {
				t.Fatalf("Encode accepted it: %d bytes", len(data))
			}
			if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "aaaa") {
				t.Errorf("error reveals a token: %v", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	valid, err := Encode(map[string]Record{
		Key{TokenURL: "https://auth.example/token", ClientID: "c", GrantType: "authorization_code"}.String(): sampleRecord(),
		"other": {AccessToken: "x"},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"version":2,"grants":{}}`))
	f.Add([]byte("\x00\xffgarbage{"))
	f.Add([]byte(""))
	f.Add([]byte(`{"version":1,"grants":{"k":{"expiry":"2030-01-01T00:00:00.123456789+05:30","scopes":[],"user_id":-1}}}`))
	f.Add([]byte(`{"version":1,"grants":{"k":{"granted_at":"0001-01-01T00:00:00Z","email":"\ud800<>&"}}}`))
	f.Add([]byte(`{"version":1,"grants":{"k":{"access_token":"a\u0085b"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		enc, err := Encode(m)
		if errors.Is(err, errTooLarge) && len(data) > maxFileSize/8 {
			return // re-encoding may expand escapes and whitespace
		}
		if err != nil {
			t.Fatalf("Encode of a decoded file: %v", err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode of an encoded file: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("round trip changed the grants:\n%#v\n%#v", m, again)
		}
	})
}

func TestFilesStayReadableByReadersWithoutTheJournal(t *testing.T) {
	t.Parallel()
	in := map[string]Record{"k": sampleRecord()}
	data, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	// What Decode was before the journal: version 1, grants, unknown
	// fields ignored.
	var old struct {
		Version int                   `json:"version"`
		Grants  map[string]fileRecord `json:"grants"`
	}
	if err := json.Unmarshal(data, &old); err != nil || old.Version != 1 {
		t.Fatalf("older reader: version %d, %v", old.Version, err)
	}
	if r, err := old.Grants["k"].record(); err != nil || !reflect.DeepEqual(r, in["k"]) {
		t.Errorf("older reader read %v, %v", r, err)
	}
}
