package wwwauth

import (
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   []Challenge
	}{
		{"coop invalid token", `Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid"`,
			[]Challenge{{"bearer", map[string]string{"realm": "Service", "error": "invalid_token", "error_description": "The access token provided is invalid"}}}},
		{"coop insufficient scope", `Bearer realm="Service", scope="barn-unlock", error="insufficient_scope", error_description="The request requires higher privileges than provided by the access token"`,
			[]Challenge{{"bearer", map[string]string{"realm": "Service", "scope": "barn-unlock", "error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the access token"}}}},
		{"two challenges", `Basic realm="x", Bearer error=invalid_token`,
			[]Challenge{{"basic", map[string]string{"realm": "x"}}, {"bearer", map[string]string{"error": "invalid_token"}}}},
		{"token68 then challenge", `Negotiate abc==, Bearer error="invalid_token"`,
			[]Challenge{{"negotiate", map[string]string{"": "abc=="}}, {"bearer", map[string]string{"error": "invalid_token"}}}},
		{"case and spaces", `  BEARER   Error = "invalid_token" ,realm=x`,
			[]Challenge{{"bearer", map[string]string{"error": "invalid_token", "realm": "x"}}}},
		{"escaped quote", `Bearer error_description="say \"hi\"", error="invalid_token"`,
			[]Challenge{{"bearer", map[string]string{"error_description": `say "hi"`, "error": "invalid_token"}}}},
		{"bare scheme", `Bearer`, []Challenge{{"bearer", map[string]string{}}}},
		{"unterminated quote", `Bearer error="invalid_tok`, []Challenge{{"bearer", map[string]string{}}}},
		{"empty", ``, nil},
		{"junk", `"=,;`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse(tt.header); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %#v, want %#v", tt.header, got, tt.want)
			}
		})
	}
}

func TestBearerError(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   string
	}{
		{"invalid token", []string{`Bearer realm="Service", error="invalid_token"`}, "invalid_token"},
		{"insufficient scope", []string{`Bearer realm="Service", scope="eggs-count", error="insufficient_scope"`}, "insufficient_scope"},
		{"second header value", []string{`Basic realm="a"`, `Bearer error="invalid_token"`}, "invalid_token"},
		{"no bearer", []string{`Basic realm="a"`}, ""},
		{"no header", nil, ""},
		{"error named in another param only", []string{`Bearer error_description="error=invalid_token"`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := BearerError(tt.values); got != tt.want {
				t.Errorf("BearerError(%q) = %q, want %q", tt.values, got, tt.want)
			}
		})
	}
}

// FuzzParse checks that no input panics or loops, and that a Bearer
// challenge's error survives being wrapped in other challenges.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`Bearer realm="Service", error="invalid_token", error_description="The access token provided is invalid"`,
		`Basic abc==, Bearer error=invalid_token`,
		`Bearer error="\"`, `,,,`, `a=b=c`, `Bearer ==`, "Bearer \x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range Parse(s) {
			if c.Scheme == "" {
				t.Fatalf("Parse(%q) gave a challenge with no scheme", s)
			}
		}
		_ = BearerError([]string{s})
	})
}
