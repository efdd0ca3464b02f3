package provider

import (
	"strings"
	"testing"
)

func TestEveryPresetHasHTTPSEndpointsAndAKnownAuthMethod(t *testing.T) {
	for _, name := range strings.Split(Names(), ", ") {
		p, ok := Lookup(name)
		if !ok {
			t.Fatalf("%s listed but not found", name)
		}
		if CheckURL(p.Endpoint.TokenURL) != nil || CheckURL(p.Endpoint.AuthURL) != nil || !strings.HasPrefix(p.Endpoint.TokenURL, "https://") {
			t.Errorf("%s: endpoints %+v", name, p.Endpoint)
		}
		if p.AuthMethod != "client_secret_post" && p.AuthMethod != "client_secret_basic" {
			t.Errorf("%s: auth method %q", name, p.AuthMethod)
		}
	}
	if _, ok := Lookup("GitHub"); ok {
		t.Error("names are lower case, as written in the table")
	}
}
