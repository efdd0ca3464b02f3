package login

import (
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
)

func TestRunPasteMode(t *testing.T) {
	const code = "c0ffeec0ffeec0ffee"
	tests := []struct {
		name      string
		paste     func(redirect, state string) string // "" closes In without a line
		check     func(*testing.T, error)
		exchanges int
	}{
		{
			name:      "the whole address logs in",
			paste:     func(r, s string) string { return r + "?code=" + code + "&state=" + s + "\n" },
			exchanges: 1,
		},
		{
			name:      "blank lines and spaces around the address are skipped",
			paste:     func(r, s string) string { return "\n  \r\n  " + r + "?code=" + code + "&state=" + s + "  \r\n" },
			exchanges: 1,
		},
		{
			name:      "the query string alone logs in",
			paste:     func(_, s string) string { return "?code=" + code + "&state=" + s + "\n" },
			exchanges: 1,
		},
		{
			name:      "the query string without its question mark logs in",
			paste:     func(_, s string) string { return "code=" + code + "&state=" + s },
			exchanges: 1,
		},
		{
			name:  "a wrong state is a state mismatch, not exchanged",
			paste: func(r, _ string) string { return r + "?code=" + code + "&state=forged\n" },
			check: wantIs(ErrStateMismatch),
		},
		{
			name: "a denial is ErrDenied",
			paste: func(r, s string) string {
				return r + "?error=access_denied&error_description=The+user+denied&state=" + s + "\n"
			},
			check: wantIs(ErrDenied),
		},
		{
			name: "an address on another host is refused",
			paste: func(r, s string) string {
				return "http://evil.example:8085/callback?code=" + code + "&state=" + s + "\n"
			},
			check: wantIs(ErrBadPaste),
		},
		{
			name:  "an address on another path is refused",
			paste: func(r, s string) string { return r + "/other?code=" + code + "&state=" + s + "\n" },
			check: wantIs(ErrBadPaste),
		},
		{
			name:  "the authorization URL pasted by mistake is refused",
			paste: func(r, s string) string { return "http://coop.example/authorize?client_id=x&state=" + s + "\n" },
			check: wantIs(ErrBadPaste),
		},
		{
			name:  "nothing pasted before the end of input",
			paste: func(string, string) string { return "" },
			check: wantIs(ErrBadPaste),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stub := newStubCOOP(t)
			redirect := freeRedirectURI(t, "/callback")
			cfg := stub.config(redirect)
			cfg.Paste = true
			cfg.OpenBrowser = func(string) error { t.Error("OpenBrowser called in paste mode"); return nil }
			in, typing := io.Pipe()
			defer typing.Close()
			cfg.In = in
			out := newOutRecorder()
			done := start(t.Context(), cfg, out)
			state := queryOf(t, out.authURL(t)).Get("state")

			go func() {
				io.WriteString(typing, tt.paste(redirect, url.QueryEscape(state)))
				typing.Close()
			}()
			o := await(t, done)
			if tt.check == nil {
				if o.err != nil {
					t.Fatal(o.err)
				}
				if o.res.Token.AccessToken == "" {
					t.Error("no access token")
				}
			} else {
				tt.check(t, o.err)
			}
			if got := len(stub.forms); got != tt.exchanges {
				t.Errorf("%d token requests, want %d", got, tt.exchanges)
			}
			if !strings.Contains(out.String(), "your browser goes to "+redirect+"?code=...") || !strings.Contains(out.String(), "paste it here") {
				t.Errorf("instructions missing from Out: %q", out.String())
			}
			checkNoSecrets(t, o.err, out.String(), state, code)
		})
	}
}

func TestParsePasted(t *testing.T) {
	redirect, err := parseRedirectURI("http://127.0.0.1:8085/callback")
	if err != nil {
		t.Fatal(err)
	}
	root, err := parseRedirectURI("http://[::1]:8085")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		redirect *url.URL
		line     string
		code     string // "" = ErrBadPaste
	}{
		{"whole address", redirect, "http://127.0.0.1:8085/callback?code=abc&state=s", "abc"},
		{"scheme and host in capitals", redirect, "HTTP://127.0.0.1:8085/callback?code=abc&state=s", "abc"},
		{"query alone", redirect, "?code=abc&state=s", "abc"},
		{"query alone without ?", redirect, "code=abc&state=s", "abc"},
		{"root redirect, path /", root, "http://[::1]:8085/?code=abc&state=s", "abc"},
		{"root redirect, no path", root, "http://[::1]:8085?code=abc&state=s", "abc"},
		{"another port", redirect, "http://127.0.0.1:8086/callback?code=abc&state=s", ""},
		{"https", redirect, "https://127.0.0.1:8085/callback?code=abc&state=s", ""},
		{"path with a trailing slash", redirect, "http://127.0.0.1:8085/callback/?code=abc&state=s", ""},
		{"no scheme", redirect, "127.0.0.1:8085/callback?code=abc&state=s", ""},
		{"words", redirect, "I clicked yes", ""},
		{"unknown parameters alone", redirect, "foo=bar", ""},
		{"bad escape", redirect, "code=%zz&state=s", ""},
		{"not a URL", redirect, "http://[::1/callback?code=abc", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := parsePasted(tt.line, tt.redirect)
			if tt.code == "" {
				if !errors.Is(err, ErrBadPaste) {
					t.Fatalf("err = %v, want ErrBadPaste", err)
				}
				if strings.Contains(err.Error(), "abc") {
					t.Errorf("error %q reveals the code", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.Get("code") != tt.code || q.Get("state") != "s" {
				t.Errorf("query = %v", q)
			}
		})
	}
}

// FuzzParsePasted checks that any pasted line is parsed without a panic, that
// an accepted address is on the redirect URI, and that the line's secrets
// never reach an error.
func FuzzParsePasted(f *testing.F) {
	const secret = "Zq9SECRETq9Z"
	for _, seed := range []string{
		"http://127.0.0.1:8085/callback?code=" + secret + "&state=x",
		"?code=" + secret + "&state=" + secret,
		"code=" + secret,
		"http://127.0.0.1:8085/other?state=" + secret,
		"https://" + secret + "/callback",
		"%" + secret,
		"http://[" + secret,
		"",
	} {
		f.Add(seed)
	}
	redirect, err := parseRedirectURI("http://127.0.0.1:8085/callback")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line string) {
		q, err := parsePasted(line, redirect)
		if err != nil {
			if !errors.Is(err, ErrBadPaste) {
				t.Fatalf("err = %v, want ErrBadPaste", err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q reveals the pasted line", err)
			}
			return
		}
		if q == nil {
			t.Fatal("nil query without an error")
		}
		if strings.Contains(line, "://") {
			u, err := url.Parse(line)
			if err != nil || !strings.EqualFold(u.Host, redirect.Host) || u.Path != redirect.Path {
				t.Fatalf("accepted %q, not on %s", line, redirect)
			}
		}
	})
}
