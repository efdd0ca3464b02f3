package main

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/server"
)

func TestInWords(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0 seconds"},
		{time.Second, "1 second"},
		{59*time.Second + 900*time.Millisecond, "59 seconds"},
		{time.Minute, "1 minute"},
		{42*time.Minute + 30*time.Second, "42 minutes"},
		{-42 * time.Minute, "42 minutes"},
		{time.Hour, "1 hour"},
		{3*time.Hour + 5*time.Minute, "3 hours 5 minutes"},
		{time.Hour + time.Minute, "1 hour 1 minute"},
		{47 * time.Hour, "47 hours"},
		{48 * time.Hour, "2 days"},
		{90 * 24 * time.Hour, "90 days"},
	}
	for _, tt := range tests {
		if got := inWords(tt.d); got != tt.want {
			t.Errorf("inWords(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// status --json is a documented shape (README "coop-proxy status --json"):
// its keys are checked here, so that a change to them is a decision.
func TestStatusJSONShape(t *testing.T) {
	f := newFarm(t)
	f.routesFile(t, "")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"token", "--route", "eggs"}, &stdout, &stderr); code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr.String())
	}
	token := strings.TrimSpace(stdout.String())
	stdout.Reset()
	if code := run([]string{"status", "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status --json: exit %d: %s", code, stderr.String())
	}
	if strings.Contains(stdout.String(), token) {
		t.Fatal("status --json shows the access token")
	}
	var doc map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, stdout.String())
	}
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		slices.Sort(k)
		return k
	}
	if got := keys(doc); !reflect.DeepEqual(got, []string{"format", "routes"}) || doc["format"] != 1.0 {
		t.Fatalf("top level: %v (format %v)", got, doc["format"])
	}
	routes := doc["routes"].([]any)
	if len(routes) != 2 {
		t.Fatalf("%d routes, want both of the file's:\n%s", len(routes), stdout.String())
	}
	eggs, farmer := routes[0].(map[string]any), routes[1].(map[string]any)
	if want := []string{"access_token", "backend", "client_id", "grant", "granted_at", "route", "scopes", "store", "stored", "token_url", "written_at"}; !reflect.DeepEqual(keys(eggs), want) {
		t.Errorf("a stored client-credentials grant: keys %v, want %v", keys(eggs), want)
	}
	at := eggs["access_token"].(map[string]any)
	if want := []string{"expires_at", "expires_in", "fingerprint"}; !reflect.DeepEqual(keys(at), want) {
		t.Errorf("access_token: keys %v, want %v", keys(at), want)
	}
	if in := at["expires_in"].(float64); in <= 0 || in > 24*3600 { // COOP's tokens last a day
		t.Errorf("expires_in %v", in)
	}
	if _, err := time.Parse(time.RFC3339, at["expires_at"].(string)); err != nil || !strings.HasPrefix(at["fingerprint"].(string), "sha256:") {
		t.Errorf("access_token %v: %v", at, err)
	}
	if eggs["route"] != "eggs" || eggs["grant"] != "client_credentials" || eggs["stored"] != true || !strings.HasPrefix(eggs["backend"].(string), "file ") {
		t.Errorf("eggs: %v", eggs)
	}
	if want := []string{"backend", "client_id", "grant", "route", "store", "stored", "token_url"}; !reflect.DeepEqual(keys(farmer), want) {
		t.Errorf("a route without a stored grant: keys %v, want %v", keys(farmer), want)
	}
	if farmer["stored"] != false || farmer["grant"] != "authorization_code" {
		t.Errorf("farmer: %v", farmer)
	}

	// --route narrows it to one, for JSON and for people.
	stdout.Reset()
	if code := run([]string{"status", "--route", "farmer", "--json"}, &stdout, &stderr); code != 0 || strings.Count(stdout.String(), `"route":`) != 1 {
		t.Fatalf("status --route farmer --json: exit %d\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"status", "--route", "eggs"}, &stdout, &stderr); code != 0 ||
		!regexp.MustCompile(`(?m)^access token:   sha256:\S+, expires in (23 hours 59 minutes|24 hours) \(`).MatchString(stdout.String()) ||
		!regexp.MustCompile(`(?m)^last written:   \d+ seconds? ago \(`).MatchString(stdout.String()) {
		t.Fatalf("status --route eggs: exit %d\n%s", code, stdout.String())
	}
}

// A route whose store cannot be read does not hide the others: each route
// is shown, the failing one with its error (in --json, an "error" field),
// and status exits 1 with one line on stderr.
func TestStatusShowsEveryRouteWhenOneStoreCannotBeRead(t *testing.T) {
	f := newFarm(t)
	env := f.routesFile(t, "")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"token", "--route", "eggs"}, &stdout, &stderr); code != 0 {
		t.Fatalf("token: exit %d: %s", code, stderr.String())
	}
	cfg := farmerRoute(t, env)
	// Another user could have written the farmer's store: refused.
	unsafe := server.StorePath(cfg, server.StoreKey(&cfg.Route))
	if err := os.WriteFile(unsafe, []byte(`{"version":1,"grants":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(unsafe, 0o666); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"status", "--json"}, {"status"}} {
		stdout.Reset()
		stderr.Reset()
		code := run(args, &stdout, &stderr)
		if code != 1 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "route farmer") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
		out := stdout.String()
		if len(args) == 2 {
			var doc statusJSON
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			if len(doc.Routes) != 2 || doc.Routes[0].Error != "" || doc.Routes[0].AccessToken == nil ||
				doc.Routes[1].Route != "farmer" || !strings.Contains(doc.Routes[1].Error, unsafe) {
				t.Errorf("%v: want eggs' grant and farmer's error naming %s:\n%s", args, unsafe, out)
			}
			continue
		}
		if !strings.Contains(out, "route:          eggs\n") || !strings.Contains(out, "access token:   sha256:") ||
			!strings.Contains(out, "route:          farmer\n") || !strings.Contains(out, "error:          ") {
			t.Errorf("%v: want both routes, farmer's with its error:\n%s", args, out)
		}
	}
}
