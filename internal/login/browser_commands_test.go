package login

import (
	"reflect"
	"testing"
)

func TestBrowserCommands(t *testing.T) {
	tests := []struct {
		name, goos, browser string
		sep                 rune
		want                [][]string
	}{
		{"linux", "linux", "", ':', [][]string{{"xdg-open"}}},
		{"freebsd", "freebsd", "", ':', [][]string{{"xdg-open"}}},
		{"macOS", "darwin", "", ':', [][]string{{"open"}}},
		{"windows", "windows", "", ';', [][]string{{"rundll32", "url.dll,FileProtocolHandler"}}},
		{"$BROWSER first, colon-separated", "linux", "firefox --new-window:w3m", ':', [][]string{{"firefox", "--new-window"}, {"w3m"}, {"xdg-open"}}},
		{"$BROWSER on windows, semicolon-separated (a drive's colon stays)", "windows", `C:\Tools\firefox.exe --private;msedge %s`, ';',
			[][]string{{`C:\Tools\firefox.exe`, "--private"}, {"msedge", "%s"}, {"rundll32", "url.dll,FileProtocolHandler"}}},
		{"empty entries skipped", "darwin", "::  :", ':', [][]string{{"open"}}},
		// Windows keeps browsers under "C:\Program Files": a quoted word
		// is one argument, its backslashes as they are.
		{"a quoted program path with spaces", "windows", `"C:\Program Files\Mozilla Firefox\firefox.exe" -private-window "%s"`, ';',
			[][]string{{`C:\Program Files\Mozilla Firefox\firefox.exe`, "-private-window", "%s"}, {"rundll32", "url.dll,FileProtocolHandler"}}},
		{"quotes inside a word", "linux", `my"browser x"y --flag`, ':', [][]string{{"mybrowser xy", "--flag"}, {"xdg-open"}}},
		{"single quotes, as a shell's $BROWSER has them", "linux", `firefox '%s':'/opt/my browser/bin/b' "it's"`, ':', [][]string{{"firefox", "%s"}, {"/opt/my browser/bin/b", "it's"}, {"xdg-open"}}},
		{"an apostrophe in a Windows path is a letter", "windows", `C:\Users\O'Brien\b.exe`, ';', [][]string{{`C:\Users\O'Brien\b.exe`}, {"rundll32", "url.dll,FileProtocolHandler"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := browserCommands(tt.goos, tt.browser, tt.sep); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
