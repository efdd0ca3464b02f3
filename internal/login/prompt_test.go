package login

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
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

// The failures of a login at another authorization server do not send the
// user to COOP's pages and buttons; COOP's keep their advice.
func TestLoginFailuresNameTheAuthorizationServer(t *testing.T) {
	for _, server := range []string{"COOP", ""} {
		f := &flow{cfg: Config{Server: server, Timeout: time.Second, OAuth: oauth2.Config{ClientID: "app", RedirectURL: "http://127.0.0.1:8085/callback"}}, state: "s"}
		denied := func() error {
			_, err := f.finish(context.Background(), url.Values{"state": {"s"}, "error": {"access_denied"}})
			return err
		}()
		errs := map[string]error{
			"denied":  denied,
			"timeout": f.timeoutError(),
			"invalid_client": func() error {
				_, err := f.finish(context.Background(), url.Values{"state": {"s"}, "error": {"invalid_client"}, "error_description": {"client must authenticate with client_secret_basic, not client_secret_post"}})
				return err
			}(),
		}
		if !errors.Is(denied, ErrDenied) || !errors.Is(errs["timeout"], ErrTimeout) {
			t.Errorf("Server %q: errors.Is lost its sentinel: %v, %v", server, denied, errs["timeout"])
		}
		for name, err := range errs {
			if names := strings.Contains(err.Error(), "COOP"); names != (server == "COOP") {
				t.Errorf("Server %q, %s: %v", server, name, err)
			}
		}
		if want := "client must authenticate with client_secret_basic, not client_secret_post"; !strings.Contains(errs["invalid_client"].Error(), want) {
			t.Errorf("Server %q: %v lacks %q", server, errs["invalid_client"], want)
		}
	}
	for _, code := range []string{"invalid_grant", "invalid_scope", "invalid_client", ""} {
		if msg := (&AuthorizationError{Code: code}).Error(); strings.Contains(msg, "COOP") || !strings.HasPrefix(msg, "the authorization server refused the login") {
			t.Errorf("%q: %s", code, msg)
		}
	}
}
