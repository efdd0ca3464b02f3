package login

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/oauth2"
)

// fakeDeviceAS is an authorization server in memory (an http.RoundTripper),
// so that the polling runs on synctest's fake clock: each poll's time is
// exact.
type fakeDeviceAS struct {
	// device answers the device authorization request: status and body.
	device func(r *http.Request, form url.Values) (int, string)
	// polls are the token endpoint's answers in turn, the last repeated:
	// an RFC 8628 §3.5 error code, "token", "500", or "200:" and an error
	// code, for an error answered with 200.
	polls []string

	mu          sync.Mutex
	start       time.Time
	deviceForms []url.Values
	deviceAuth  []string        // the device requests' Authorization headers
	pollAt      []time.Duration // since start
	pollForms   []url.Values
	pollAuth    []string
}

const (
	fakeDeviceURL = "https://as.example/device"
	fakeTokenURL  = "https://as.example/token"
)

func (f *fakeDeviceAS) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	f.mu.Lock()
	defer f.mu.Unlock()
	answer := func(status int, ct, body string) (*http.Response, error) {
		return &http.Response{StatusCode: status, Status: fmt.Sprintf("%d %s", status, http.StatusText(status)),
			Header: http.Header{"Content-Type": {ct}}, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	}
	switch r.URL.String() {
	case fakeDeviceURL:
		f.deviceForms = append(f.deviceForms, form)
		f.deviceAuth = append(f.deviceAuth, r.Header.Get("Authorization"))
		status, body := f.device(r, form)
		return answer(status, "application/json", body)
	case fakeTokenURL:
		f.pollAt = append(f.pollAt, time.Since(f.start))
		f.pollForms = append(f.pollForms, form)
		f.pollAuth = append(f.pollAuth, r.Header.Get("Authorization"))
		next := f.polls[0]
		if len(f.polls) > 1 {
			f.polls = f.polls[1:]
		}
		if code, ok := strings.CutPrefix(next, "200:"); ok { // GitHub's manner
			return answer(200, "application/json", `{"error":"`+code+`"}`)
		}
		switch next {
		case "token":
			return answer(200, "application/json", `{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1","scope":"read"}`)
		case "500":
			return answer(500, "text/html", "<html>oops</html>")
		}
		return answer(400, "application/json", `{"error":"`+next+`","error_description":"said `+next+`"}`)
	}
	return answer(404, "text/plain", "not found")
}

// deviceAnswer is an RFC 8628 §3.2 answer with the given interval and
// expires_in (0: left out).
func deviceAnswer(interval, expiresIn int) func(*http.Request, url.Values) (int, string) {
	return func(*http.Request, url.Values) (int, string) {
		s := `{"device_code":"the-device-code","user_code":"BCDF-GHJK","verification_uri":"https://as.example/activate",` +
			`"verification_uri_complete":"https://as.example/activate?user_code=BCDF-GHJK"`
		if interval > 0 {
			s += fmt.Sprintf(`,"interval":%d`, interval)
		}
		if expiresIn > 0 {
			s += fmt.Sprintf(`,"expires_in":%d`, expiresIn)
		}
		return 200, s + "}"
	}
}

// runDevice runs Device against as on synctest's fake clock.
func runDevice(ctx context.Context, as *fakeDeviceAS, cfg DeviceConfig) (*Result, error) {
	as.start = time.Now()
	if cfg.OAuth.ClientID == "" {
		cfg.OAuth = oauth2.Config{ClientID: "my-device", ClientSecret: "s3cret-value", Scopes: []string{"read"},
			Endpoint: oauth2.Endpoint{DeviceAuthURL: fakeDeviceURL, TokenURL: fakeTokenURL, AuthStyle: oauth2.AuthStyleInParams}}
	}
	cfg.HTTPClient = &http.Client{Transport: as}
	return Device(ctx, cfg)
}

func seconds(ds []time.Duration) []int {
	var out []int
	for _, d := range ds {
		out = append(out, int(d/time.Second))
	}
	return out
}

// RFC 8628 §3.5: polls at the interval while pending; after slow_down
// the interval is 5 s longer for that poll and every later one.
func TestDevicePollsAtTheIntervalAndSlowsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeDeviceAS{device: deviceAnswer(2, 600),
			polls: []string{"authorization_pending", "slow_down", "authorization_pending", "slow_down", "token"}}
		res, err := runDevice(t.Context(), as, DeviceConfig{Timeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if res.Token.AccessToken != "at-1" || res.Token.RefreshToken != "rt-1" || !slices.Equal(res.Scopes, []string{"read"}) {
			t.Errorf("result %+v", res)
		}
		// 2 s, 2 s, then 7 s, 7 s, then 12 s.
		if got, want := seconds(as.pollAt), []int{2, 4, 11, 18, 30}; !slices.Equal(got, want) {
			t.Errorf("polls at %v s, want %v", got, want)
		}
		for _, f := range as.pollForms {
			if f.Get("grant_type") != "urn:ietf:params:oauth:grant-type:device_code" || f.Get("device_code") != "the-device-code" || f.Get("client_id") != "my-device" {
				t.Fatalf("poll form %v (RFC 8628 §3.4)", f)
			}
		}
	})
}

// GitHub answers the polls' errors with 200 (and the error in the JSON):
// they are the same errors.
func TestDeviceErrorsAnsweredWith200(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeDeviceAS{device: deviceAnswer(1, 600), polls: []string{"200:authorization_pending", "200:slow_down", "token"}}
		if _, err := runDevice(t.Context(), as, DeviceConfig{}); err != nil {
			t.Fatal(err)
		}
		if got := seconds(as.pollAt); !slices.Equal(got, []int{1, 2, 8}) {
			t.Errorf("polls at %v s, want [1 2 8]", got)
		}
		as = &fakeDeviceAS{device: deviceAnswer(1, 600), polls: []string{"200:access_denied"}}
		if _, err := runDevice(t.Context(), as, DeviceConfig{}); !errors.Is(err, ErrDenied) {
			t.Errorf("access_denied with 200: %v", err)
		}
	})
}

// RFC 8628 §3.2: "If no value is provided, clients MUST use 5 as the
// default."
func TestDeviceIntervalDefaultsToFiveSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeDeviceAS{device: deviceAnswer(0, 600), polls: []string{"authorization_pending", "token"}}
		if _, err := runDevice(t.Context(), as, DeviceConfig{}); err != nil {
			t.Fatal(err)
		}
		if got := seconds(as.pollAt); !slices.Equal(got, []int{5, 10}) {
			t.Errorf("polls at %v s, want [5 10]", got)
		}
	})
}

// Each way the polling ends: the error to tell it by, and when.
func TestDevicePollingEnds(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interval  int // 0: 1
		expiresIn int
		timeout   time.Duration
		polls     []string
		want      func(error) bool
		wantText  string
		lastPoll  int // seconds
	}{
		{"access_denied", 0, 600, 0, []string{"authorization_pending", "access_denied"},
			func(err error) bool { return errors.Is(err, ErrDenied) }, "refused on the provider's page (access_denied)", 2},
		{"expired_token", 0, 600, 0, []string{"expired_token"},
			func(err error) bool { return errors.Is(err, ErrExpired) }, "the code expired", 1},
		// the last poll at 9 s, the code dead at 10 s
		{"expires_in passes", 3, 10, 0, []string{"authorization_pending"},
			func(err error) bool { return errors.Is(err, ErrExpired) }, "the code expired", 9},
		{"login timeout", 0, 600, 7 * time.Second, []string{"authorization_pending"},
			func(err error) bool { return errors.Is(err, ErrTimeout) }, "no approval came within 7s", 7},
		{"another OAuth error", 0, 600, 0, []string{"invalid_grant"},
			func(err error) bool {
				e, ok := errors.AsType[*DeviceError](err)
				return ok && e.Code == "invalid_grant"
			},
			"the provider's token endpoint refused the device login: invalid_grant (said invalid_grant)", 1},
		{"no OAuth error", 0, 600, 0, []string{"500"},
			func(err error) bool { e, ok := errors.AsType[*DeviceError](err); return ok && e.Code == "" },
			"(it answered 500 Internal Server Error)", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				as := &fakeDeviceAS{device: deviceAnswer(cmp.Or(tc.interval, 1), tc.expiresIn), polls: tc.polls}
				_, err := runDevice(t.Context(), as, DeviceConfig{Timeout: tc.timeout})
				if !tc.want(err) || !strings.Contains(fmt.Sprint(err), tc.wantText) {
					t.Fatalf("got %v, want %q", err, tc.wantText)
				}
				if got := seconds(as.pollAt); got[len(got)-1] != tc.lastPoll {
					t.Errorf("polls at %v s, want the last at %d", got, tc.lastPoll)
				}
				checkNoSecrets(t, err, "", "s3cret-value", "the-device-code")
			})
		})
	}
}

// Ctrl-C (ctx cancelled) ends the wait at once.
func TestDeviceLoginCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(3500*time.Millisecond, cancel)
		as := &fakeDeviceAS{device: deviceAnswer(1, 600), polls: []string{"authorization_pending"}}
		_, err := runDevice(ctx, as, DeviceConfig{})
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), "login cancelled") {
			t.Fatalf("got %v", err)
		}
		if len(as.pollAt) != 3 {
			t.Errorf("%d polls after 3.5 s at 1 s", len(as.pollAt))
		}
	})
}

// The user is told the URI and the code, and the complete URI; while
// waiting, one line. A server's control characters are not printed.
func TestDeviceLoginOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		as := &fakeDeviceAS{polls: []string{"authorization_pending", "authorization_pending", "token"},
			device: func(*http.Request, url.Values) (int, string) {
				return 200, `{"device_code":"the-device-code","user_code":"WDJB-MJHT","verification_uri":"https://as.example/activate\u001b[2J","expires_in":900,"interval":1}`
			}}
		var out bytes.Buffer
		if _, err := runDevice(t.Context(), as, DeviceConfig{Out: &out, Timeout: 10 * time.Minute}); err != nil {
			t.Fatal(err)
		}
		want := "To log in, open https://as.example/activate [2J in a browser on any device and enter the code WDJB-MJHT\n" +
			"Waiting for the approval, up to 10m0s (Ctrl-C to stop)...\n"
		if out.String() != want {
			t.Errorf("output:\n%q\nwant:\n%q", out.String(), want)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		as := &fakeDeviceAS{device: deviceAnswer(1, 300), polls: []string{"token"}}
		var out bytes.Buffer
		if _, err := runDevice(t.Context(), as, DeviceConfig{Out: &out}); err != nil {
			t.Fatal(err)
		}
		if want := "  or open https://as.example/activate?user_code=BCDF-GHJK (it holds the code)\nWaiting for the approval, up to 5m0s"; !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nlacks %q", out.String(), want)
		}
	})
}

// RFC 8628 §3.1: the client authenticates at the device authorization
// endpoint as at the token endpoint (RFC 6749 §2.3.1), and the request
// carries the scope and login's authorization parameters.
func TestDeviceAuthorizationRequestAuthenticatesTheClient(t *testing.T) {
	id, secret := "Brent's device", "s3cret/value"
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	for _, tc := range []struct {
		name  string
		style oauth2.AuthStyle
		// the device endpoint refuses Basic with invalid_client
		refuseBasic bool
		wantAuth    []string // the device requests' Authorization headers
		wantForm    url.Values
		pollBasic   bool
	}{
		{"body", oauth2.AuthStyleInParams, false, []string{""}, url.Values{"client_id": {id}, "client_secret": {secret}}, false},
		{"basic", oauth2.AuthStyleInHeader, false, []string{basic}, url.Values{}, true},
		// auto: Basic, then the body; the polls keep to the body, one
		// request a poll.
		{"auto", oauth2.AuthStyleAutoDetect, true, []string{basic, ""}, url.Values{"client_id": {id}, "client_secret": {secret}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				as := &fakeDeviceAS{polls: []string{"authorization_pending", "authorization_pending", "token"},
					device: func(r *http.Request, form url.Values) (int, string) {
						if tc.refuseBasic && r.Header.Get("Authorization") != "" {
							return 401, `{"error":"invalid_client"}`
						}
						return deviceAnswer(1, 600)(r, form)
					}}
				cfg := DeviceConfig{OAuth: oauth2.Config{ClientID: id, ClientSecret: secret, Scopes: []string{"read", "write"},
					Endpoint: oauth2.Endpoint{DeviceAuthURL: fakeDeviceURL, TokenURL: fakeTokenURL, AuthStyle: tc.style}},
					AuthParams: url.Values{"resource": {"https://api.example/", "https://files.example/"}, "audience": {"farm"}}}
				if _, err := runDevice(t.Context(), as, cfg); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(as.deviceAuth, tc.wantAuth) {
					t.Errorf("device requests' Authorization %q, want %q", as.deviceAuth, tc.wantAuth)
				}
				want := url.Values{"scope": {"read write"}, "resource": {"https://api.example/", "https://files.example/"}, "audience": {"farm"}}
				for k, vs := range tc.wantForm {
					want[k] = vs
				}
				if got := as.deviceForms[len(as.deviceForms)-1]; got.Encode() != want.Encode() {
					t.Errorf("device request form %v, want %v", got, want)
				}
				if len(as.pollAt) != 3 || !slices.Equal(seconds(as.pollAt), []int{1, 2, 3}) {
					t.Errorf("polls at %v s, want one a second", seconds(as.pollAt))
				}
				for i, f := range as.pollForms {
					if (as.pollAuth[i] == basic) != tc.pollBasic || (f.Get("client_secret") == secret) == tc.pollBasic {
						t.Errorf("poll %d: Authorization %q, form %v", i, as.pollAuth[i], f)
					}
				}
			})
		})
	}
}

// A refusal of the device authorization request is one line with what to
// do; an answer without RFC 8628 §3.2's fields is refused.
func TestDeviceAuthorizationRefused(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
		status             int
	}{
		{"unauthorized_client", `{"error":"unauthorized_client","error_description":"no device grant for s3cret-value"}`,
			"the provider's device authorization endpoint refused the device login: unauthorized_client (no device grant for [redacted]): the client may not use the device grant: allow it for the client on the provider", 400},
		{"no user code", `{"device_code":"x","verification_uri":"https://as.example/activate"}`,
			"lacks device_code, user_code or verification_uri (RFC 8628 §3.2)", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				as := &fakeDeviceAS{device: func(*http.Request, url.Values) (int, string) { return tc.status, tc.answer }}
				_, err := runDevice(t.Context(), as, DeviceConfig{})
				if _, ok := errors.AsType[*DeviceError](err); !ok || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("got %v, want %q", err, tc.want)
				}
				if len(as.pollAt) != 0 {
					t.Error("polled without a device code")
				}
			})
		})
	}
}
