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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := browserCommands(tt.goos, tt.browser, tt.sep); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
