package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// smuggled is the caller's token in the smuggling tests: it must reach COOP
// nowhere, in no encoding.
const smuggled = "smuggled-9f8e7d6c5b4a"

// multipartBody builds a multipart/form-data body with boundary XyZ, one
// part per Content-Disposition value, each holding value.
func multipartBody(dispositions []string, values []string) string {
	var b strings.Builder
	for i, d := range dispositions {
		b.WriteString("--XyZ\r\nContent-Disposition: " + d + "\r\n\r\n" + values[i] + "\r\n")
	}
	b.WriteString("--XyZ--\r\n")
	return b.String()
}

func TestNoCallerTokenReachesCOOP(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	const multipartCT = "multipart/form-data; boundary=XyZ"
	keepPart := `form-data; name="keep"`
	overCheckLimit := "access_token=" + smuggled + "&keep=" + strings.Repeat("x", formCheckLimit)
	tests := []struct {
		name        string
		query       string // raw query
		contentType string
		body        string
		chunked     bool // send the body without a length
		trailer     bool // with the token in an Authorization trailer
		opts        func(*Options)
		keep        string // forwarded, with this in the query or body
		code        string // refused with 400 and this error, nothing forwarded
	}{
		{name: "query access%5Ftoken", query: "access%5Ftoken=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query %61ccess_token", query: "%61ccess_token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query access.token", query: "access.token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query access+token", query: "keep=1&access+token=" + smuggled, keep: "keep=1"},
		{name: "query access[token", query: "access[token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query access_token[]", query: "access_token[]=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query access_token[x]", query: "keep=1&access_token%5Bx%5D=" + smuggled, keep: "keep=1"},
		{name: "query leading space", query: "%20access_token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query NUL ends the name", query: "access_token%00.x=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "query Go cannot parse: semicolon", query: "keep=1;access_token=" + smuggled, code: "invalid_query"},
		{name: "query Go cannot parse: escape", query: "access_token=" + smuggled + "&keep=%zz", code: "invalid_query"},

		{name: "form access%5Ftoken", contentType: form, body: "access%5Ftoken=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "form %61ccess_token", contentType: form, body: "keep=1&%61ccess_token=" + smuggled, keep: "keep=1"},
		{name: "form access.token", contentType: form, body: "access.token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "form access_token[]", contentType: form, body: "access_token[]=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "form media type in capitals", contentType: "Application/X-WWW-Form-Urlencoded", body: "access_token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "form media type PHP reads, Go does not", contentType: form + ", text/plain", body: "access_token=" + smuggled + "&keep=1", keep: "keep=1"},
		{name: "form Go's parser rejects", contentType: form, body: "access_token=" + smuggled + "&keep=%zz", code: "invalid_form"},
		{name: "form over RETRY_BODY_LIMIT", contentType: form, body: "keep=1&access_token=" + smuggled + "&pad=0123456789",
			opts: func(o *Options) { o.RetryBodyLimit = 16 }, keep: "keep=1"},
		{name: "form over the check limit", contentType: form, body: overCheckLimit, code: "form_too_large"},
		{name: "chunked form over the check limit", contentType: form, body: overCheckLimit, chunked: true, code: "form_too_large"},

		{name: "multipart access_token", contentType: multipartCT,
			body: multipartBody([]string{`form-data; name="access_token"`, keepPart}, []string{smuggled, "keep-me"}), keep: "keep-me"},
		{name: "multipart name in single quotes (PHP unquotes them)", contentType: multipartCT,
			body: multipartBody([]string{keepPart, `form-data; name='access_token'`}, []string{"keep-me", smuggled}), keep: "keep-me"},
		{name: "multipart access.token", contentType: multipartCT,
			body: multipartBody([]string{`form-data; name="access.token"`, keepPart}, []string{smuggled, "keep-me"}), keep: "keep-me"},
		{name: "multipart not form-data (PHP reads the name anyway)", contentType: "Multipart/Form-Data; boundary=XyZ",
			body: multipartBody([]string{`attachment; name=access_token`, keepPart}, []string{smuggled, "keep-me"}), keep: "keep-me"},
		{name: "multipart boundary inside a part (PHP splits there)", contentType: multipartCT,
			body: multipartBody([]string{keepPart}, []string{"x\r\n--XyZx\r\nContent-Disposition: form-data; name=access_token\r\n\r\n" + smuggled}),
			code: "invalid_form"},
		{name: "multipart boundaries PHP and Go read differently", contentType: "multipart/form-data; xboundary=Abc; boundary=XyZ",
			body: multipartBody([]string{`form-data; name="access_token"`}, []string{smuggled}), code: "invalid_form"},

		{name: "Authorization trailer", contentType: "text/plain", body: "keep=1", chunked: true, trailer: true, keep: "keep=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []func(*Options)
			if tt.opts != nil {
				opts = append(opts, tt.opts)
			}
			f := newFixture(t, nil, opts...)
			req := newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect", tt.body)
			req.URL.RawQuery = tt.query
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.chunked {
				req.Body, req.ContentLength = io.NopCloser(strings.NewReader(tt.body)), -1
			}
			if tt.trailer {
				req.Trailer = http.Header{"Authorization": {"Bearer " + smuggled}}
			}
			resp, body := do(t, req)
			got := f.up.requests()
			if tt.code != "" {
				var p problem
				if resp.StatusCode != 400 || json.Unmarshal([]byte(body), &p) != nil || p.Error != tt.code || p.Description == "" {
					t.Fatalf("status %d %q, want 400 with error %q", resp.StatusCode, body, tt.code)
				}
				if len(got) != 0 {
					t.Fatalf("a refused request reached COOP: %+v", got[0])
				}
				return
			}
			if resp.StatusCode != 200 || len(got) != 1 {
				t.Fatalf("status %d %q, %d requests upstream", resp.StatusCode, body, len(got))
			}
			seen := got[0].RawQuery + "\n" + got[0].Body + "\n" + fmtHeader(got[0].Header) + fmtHeader(got[0].Trailer)
			if strings.Contains(seen, smuggled) {
				t.Fatalf("the caller's token reached COOP:\n%s", seen)
			}
			if !strings.Contains(got[0].RawQuery+got[0].Body, tt.keep) {
				t.Fatalf("%q was not forwarded:\n%s", tt.keep, seen)
			}
		})
	}
}

func fmtHeader(h http.Header) string {
	var b strings.Builder
	for k, vs := range h {
		b.WriteString(k + ": " + strings.Join(vs, ", ") + "\n")
	}
	return b.String()
}

// Fields PHP does not read as access_token pass byte for byte, in order.
func TestOtherFieldsPassUntouched(t *testing.T) {
	f := newFixture(t, nil)
	const fields = "z=1&access_token_hint=a&my_access_token=b&accesstoken=c&access_tokens=d&access[token]=e&access_token%5D=f&Access_Token=g&x=%41"
	req := newReq(t, "POST", f.proxy.URL+"/api/1/eggs-collect?"+fields, fields)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	if resp, body := do(t, req); resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, body)
	}
	got := f.up.requests()[0]
	if got.RawQuery != fields || got.Body != fields {
		t.Fatalf("query %q body %q, want both %q", got.RawQuery, got.Body, fields)
	}
}

// PHP (main/php_variables.c) decodes a name, ends it at a NUL, skips
// leading spaces, reads ' ', '.' and a '[' without a ']' after it as '_',
// and makes name[...] an array under name.
func TestNamesAccessToken(t *testing.T) {
	tests := []struct {
		raw     string
		encoded bool
		want    bool
	}{
		{"access_token", true, true},
		{"access%5Ftoken", true, true},
		{"%61ccess_token", true, true},
		{"%61%63%63%65%73%73%5f%74%6f%6b%65%6e", true, true},
		{"access.token", true, true},
		{"access+token", true, true},
		{"access%20token", true, true},
		{"access[token", true, true},
		{"access%5btoken", true, true},
		{"+++access_token", true, true},
		{"access_token[]", true, true},
		{"access_token[x]", true, true},
		{"access_token[x", true, false}, // access_token_x
		{"access_token[]x", true, true},
		{"access_token%00anything", true, true},
		{"access_token%5B%5D", true, true},
		{"access_token]", true, false},
		{"access[token]", true, false}, // an array under "access"
		{"access[token[]", true, false},
		{"access_tokens", true, false},
		{"access_toke", true, false},
		{"xaccess_token", true, false},
		{"Access_token", true, false},
		{"access_token%", true, false},
		{"access%5Ftoken", false, false}, // a multipart name is not %-decoded
		{"access token", false, true},
		{" access_token", false, true},
		{"access_token[0]", false, true},
		{"", true, false},
	}
	for _, tt := range tests {
		if got := namesAccessToken(tt.raw, tt.encoded); got != tt.want {
			t.Errorf("namesAccessToken(%q, %v) = %v, want %v", tt.raw, tt.encoded, got, tt.want)
		}
	}
}

func TestPHPPartName(t *testing.T) {
	tests := map[string]string{
		`form-data; name="a"`:                  "a",
		`form-data; name='a b'`:                "a b",
		`form-data; NAME=a`:                    "a",
		`form-data; name="a\"b"`:               `a"b`,
		`form-data; name=a; name=b`:            "b",
		`attachment; filename="x;y"; name=c d`: "c",
		`form-data; name = "a"`:                "",
		`form-data`:                            "",
	}
	for cd, want := range tests {
		if got := phpPartName(cd); got != want {
			t.Errorf("phpPartName(%q) = %q, want %q", cd, got, want)
		}
	}
}
