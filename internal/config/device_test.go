package config

import (
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/provider"
)

// login --device's endpoint: DEVICE_AUTHORIZATION_URL, else the preset's,
// else the issuer's metadata's; COOP has none.
func TestTheDeviceAuthorizationEndpoint(t *testing.T) {
	md := &provider.Metadata{Issuer: "https://idp.example", TokenEndpoint: "https://idp.example/token",
		AuthorizationEndpoint: "https://idp.example/authorize", DeviceAuthorizationEndpoint: "https://idp.example/device"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		md   *provider.Metadata
		want string
	}{
		{"COOP", nil, nil, ""},
		{"github", map[string]string{"PROVIDER": "github"}, nil, "https://github.com/login/device/code"},
		{"google", map[string]string{"PROVIDER": "google"}, nil, "https://oauth2.googleapis.com/device/code"},
		{"a preset without one", map[string]string{"PROVIDER": "spotify"}, nil, ""},
		{"the setting over the preset", map[string]string{"PROVIDER": "github", "DEVICE_AUTHORIZATION_URL": "https://ghe.example/login/device/code"}, nil, "https://ghe.example/login/device/code"},
		{"the metadata", map[string]string{"ISSUER": "https://idp.example"}, md, "https://idp.example/device"},
		{"the setting over the metadata", map[string]string{"ISSUER": "https://idp.example", "DEVICE_AUTHORIZATION_URL": "https://idp.example/other"}, md, "https://idp.example/other"},
	} {
		s, err := load(t, nil, tc.env, Needs{})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		s.Route.Grant = AuthorizationCode
		ep, err := s.Route.Endpoints(tc.md)
		if err != nil || ep.DeviceAuthorizationURL != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, ep.DeviceAuthorizationURL, err, tc.want)
		}
	}
}

func TestDeviceSettingsAreChecked(t *testing.T) {
	_, err := load(t, []string{"--device", "--paste"}, nil, Needs{})
	if err == nil || !strings.Contains(err.Error(), "COOP_PROXY_DEVICE (--device): set either COOP_PROXY_DEVICE or COOP_PROXY_PASTE, not both") {
		t.Errorf("--device --paste: %v", err)
	}
	_, err = load(t, nil, map[string]string{"DEVICE_AUTHORIZATION_URL": "github.com/login/device/code"}, Needs{})
	if err == nil || !strings.Contains(err.Error(), `COOP_PROXY_DEVICE_AUTHORIZATION_URL (--device-authorization-url): "github.com/login/device/code" is not an http(s) URL with a host`) {
		t.Errorf("a device URL without a scheme: %v", err)
	}
}
