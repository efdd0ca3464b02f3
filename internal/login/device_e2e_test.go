package login

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/oidctest"
)

// shorterInterval tells the client a shorter interval than the provider
// holds it to, so that the client polls too soon and gets slow_down; it
// records each poll's time and error code.
type shorterInterval struct {
	from, to string
	mu       sync.Mutex
	polls    []time.Time
	codes    []string
}

func (t *shorterInterval) RoundTrip(req *http.Request) (*http.Response, error) {
	poll := req.URL.Path == "/oauth/token"
	if poll {
		t.mu.Lock()
		t.polls = append(t.polls, time.Now())
		t.mu.Unlock()
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || !poll && req.URL.Path != "/device_authorization" {
		return resp, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if poll {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		t.mu.Lock()
		t.codes = append(t.codes, e.Error)
		t.mu.Unlock()
	} else {
		body = bytes.Replace(body, []byte(t.from), []byte(t.to), 1)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}

// Against zitadel, which answers slow_down to a client polling within half
// its interval (RFC 8628 §3.5): told slow_down, the client waits 5 s more
// for the next poll, and gets the token once the user has approved.
func TestDeviceSlowDownFromAnOpenIDProvider(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a slowed-down poll (8 s)")
	}
	p := oidctest.New(t, oidctest.WithDevicePollInterval(4*time.Second))
	c := p.AddClient(oidctest.Client{AuthMethod: oidctest.ClientSecretPost,
		GrantTypes: []string{oidctest.GrantDeviceCode, oidctest.GrantRefreshToken}})
	tr := &shorterInterval{from: `"interval":4`, to: `"interval":1`}
	out := newOutRecorder()
	done := make(chan error, 1)
	go func() {
		for line := range out.writes {
			if _, code, ok := strings.Cut(line, "enter the code "); ok {
				time.Sleep(3 * time.Second) // after the slow_down
				done <- p.ApproveDevice(strings.TrimSpace(code))
				return
			}
		}
	}()
	endpoint := p.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	res, err := Device(t.Context(), DeviceConfig{OAuth: oauth2.Config{ClientID: c.ID, ClientSecret: c.Secret,
		Scopes: []string{"openid", "offline_access"}, Endpoint: endpoint}, HTTPClient: &http.Client{Transport: tr}, Out: out, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if res.Token.RefreshToken == "" {
		t.Error("no refresh token")
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if want := []string{"authorization_pending", "slow_down", ""}; strings.Join(tr.codes, " ") != strings.Join(want, " ") {
		t.Fatalf("polls answered %q, want %q", tr.codes, want)
	}
	// 1 s, then 1 + 5 s (a timer can be a little early or late).
	if gap := tr.polls[1].Sub(tr.polls[0]); gap < 900*time.Millisecond {
		t.Errorf("second poll %s after the first, want the interval, 1 s", gap)
	}
	if gap := tr.polls[2].Sub(tr.polls[1]); gap < 5900*time.Millisecond {
		t.Errorf("poll %s after slow_down, want 6 s", gap)
	}
}
