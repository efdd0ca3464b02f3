package login

import (
	"bytes"
	"testing"
)

// The address to open names COOP only when the login is COOP's.
func TestThePromptNamesTheAuthorizationServer(t *testing.T) {
	for server, want := range map[string]string{
		"COOP": "Open this address in a browser to log in to COOP: http://127.0.0.1:1/authorize?x=1\n",
		"":     "Open this address in a browser to log in at the authorization server: http://127.0.0.1:1/authorize?x=1\n",
	} {
		var out bytes.Buffer
		f := &flow{cfg: Config{Out: &out, Server: server}, authURL: "http://127.0.0.1:1/authorize?x=1"}
		f.printURL()
		if out.String() != want {
			t.Errorf("Server %q: %q, want %q", server, out.String(), want)
		}
	}
}
