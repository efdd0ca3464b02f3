package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadYAML writes a configuration file holding text and loads it, with
// env (names without the prefix) and args.
func loadYAML(t *testing.T, text string, env map[string]string, args []string, need Needs) (*Settings, error) {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("s3cret-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "coop-proxy.yaml")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(text, "SECRET_FILE", secret)), 0o600); err != nil {
		t.Fatal(err)
	}
	full := map[string]string{"CONFIG": file, "STORE": filepath.Join(dir, "tokens.json")}
	for k, v := range env {
		full[k] = v
	}
	return load(t, args, full, need)
}

const twoRoutes = `
log_level: debug
routes:
  - name: coop
    upstream: http://coop.example
    client_id: Brent's Lazy CRON Job
    client_secret_file: SECRET_FILE
    scopes: [eggs-count, profile]
    listen: 127.0.0.1:8080
    path_prefix: /coop
  - name: reports
    issuer: https://sso.example.com/realms/acme
    upstream: https://api.example.com
    client_id: reporting-job
    client_secret_file: SECRET_FILE
    auth_style: basic
    listen: 127.0.0.1:8080
    path_prefix: /reports
`

func TestAFileDescribesSeveralRoutes(t *testing.T) {
	s, err := loadYAML(t, twoRoutes, map[string]string{"LOG_FORMAT": "console"}, nil, Everything)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Routes) != 2 || s.Routes[0].Name != "coop" || s.Routes[1].Name != "reports" {
		t.Fatalf("routes: %+v", s.Routes)
	}
	coop, reports := s.Routes[0], s.Routes[1]
	if coop.Scopes.String() != "eggs-count profile" || coop.ClientSecret.Reveal() != "s3cret-value" || coop.AuthStyle != AuthBody ||
		coop.RefreshMargin <= 0 || coop.PathPrefix != "/coop" {
		t.Errorf("coop: %+v", coop)
	}
	if reports.AuthStyle != AuthBasic || reports.Issuer == "" || reports.TokenEndpoint() != "" {
		t.Errorf("reports: %+v", reports)
	}
	if s.LogLevel.String() != "debug" || s.LogFormat != "console" {
		t.Errorf("process settings: level %s (the file's), format %s (the environment's)", s.LogLevel, s.LogFormat)
	}
	if s.Route.Name != "coop" {
		t.Errorf("Route is %q, want the first", s.Route.Name)
	}
}

func TestFileProblemsNameTheRouteAndTheKey(t *testing.T) {
	for _, tt := range []struct{ name, text, want string }{
		{"unknown key", "routes:\n  - name: a\n    upstrem: http://x\n", "route a: upstrem: not a route setting"},
		{"unknown top-level key", "colour: blue\nroutes:\n  - name: a\n", "colour: not a process setting"},
		{"route key at the top", "upstream: http://x\nroutes:\n  - name: a\n", "upstream: not a process setting"},
		{"missing name", "routes:\n  - upstream: http://x\n", "route 1: name: every route needs a name"},
		{"bad name", "routes:\n  - name: Coop_API\n", `route 1: name: "Coop_API" is not a name`},
		{"duplicate name", "routes:\n  - name: a\n    listen: 127.0.0.1:1\n  - name: a\n    listen: 127.0.0.1:2\n", "route a: name: another route has this name"},
		{"secret value", "routes:\n  - name: a\n    client_secret: hunter2\n", "route a: client_secret: a secret is never written in the configuration file"},
		{"inbound secret value", "routes:\n  - name: a\n    inbound_secret: hunter2\n", "route a: inbound_secret: a secret is never written"},
		{"bad prefix", "routes:\n  - name: a\n    path_prefix: coop/\n", `route a: path_prefix: "coop/" is not a path`},
		{"trailing slash", "routes:\n  - name: a\n    path_prefix: /coop/\n", `route a: path_prefix: "/coop/" is not a path`},
		{"shared listener without prefix", "routes:\n  - name: a\n    path_prefix: /a\n  - name: b\n", "route b: path_prefix: needed"},
		{"same prefix twice", "routes:\n  - name: a\n    path_prefix: /a\n  - name: b\n    path_prefix: /a\n", "route b: path_prefix: /a is the prefix of the route a"},
		{"bad value", "routes:\n  - name: a\n    grant: password\n", `route a: grant: "password" is not client_credentials`},
		{"bad duration", "routes:\n  - name: a\n    upstream_timeout: forever\n", `route a: upstream_timeout: "forever" is not a duration`},
		{"route check", "routes:\n  - name: a\n    upstream: ftp://x\n", `route a: upstream: "ftp://x" is not an http(s) URL`},
		{"missing client id", "routes:\n  - name: a\n", "route a: client_id: no client id"},
		{"in the file's terms", "routes:\n  - name: a\n    auth_style: private_key_jwt\n    client_id: x\n    client_secret_file: /s\n    client_key_file: /k\n",
			"route a: client_secret_file: not used with auth_style=private_key_jwt: the client authenticates with its key (client_key_file); remove the secret"},
		{"duplicate key", "routes:\n  - name: a\n    listen: 127.0.0.1:1\n    listen: 127.0.0.1:2\n", `line 4: mapping key "listen" already defined at line 3`},
		{"no routes", "log_level: info\n", "lists no routes"},
		// A second document would be ignored: a route appended after "---"
		// (files concatenated) must not silently go unserved.
		{"two documents", "routes:\n  - name: a\n---\nroutes:\n  - name: b\n", "more than one YAML document"},
		{"an empty document after", "routes:\n  - name: a\n---\n", "route a: client_id: no client id"},
		{"a map as a value", "routes:\n  - name: a\n    scopes: {a: b}\n", "route a: scopes: line 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadYAML(t, tt.text, nil, nil, Everything)
			var p Problems
			if !errors.As(err, &p) {
				t.Fatalf("%v, want problems", err)
			}
			var lines []string
			for _, e := range p {
				lines = append(lines, e.Error())
			}
			all := strings.Join(lines, "\n")
			if !strings.Contains(all, tt.want) {
				t.Fatalf("problems:\n%s\nwant one with %q", all, tt.want)
			}
			if strings.Contains(all, "hunter2") || strings.Contains(all, "s3cret-value") {
				t.Fatalf("a secret in a problem:\n%s", all)
			}
		})
	}
}

func TestWithAFileRouteSettingsInTheEnvironmentAreAProblem(t *testing.T) {
	_, err := loadYAML(t, twoRoutes, map[string]string{"UPSTREAM": "http://x", "CLIENT_ID": "y"}, []string{"--scopes", "a"}, Everything)
	if err == nil || !strings.Contains(err.Error(), "COOP_PROXY_UPSTREAM, COOP_PROXY_CLIENT_ID, COOP_PROXY_SCOPES") {
		t.Fatalf("%v, want a problem listing the route settings set in the environment", err)
	}
}

func TestOneRouteCommandsNeedARouteNameWithSeveralRoutes(t *testing.T) {
	need := Needs{Client: true, Store: true, OneRoute: true}
	if _, err := loadYAML(t, twoRoutes, nil, nil, need); err == nil || !strings.Contains(err.Error(), "several routes: name one with --route (coop, reports)") {
		t.Fatalf("no --route: %v", err)
	}
	s, err := loadYAML(t, twoRoutes, nil, []string{"--route", "reports"}, need)
	if err != nil || s.Route.Name != "reports" || s.Route.ClientID != "reporting-job" {
		t.Fatalf("--route reports: %v %+v", err, s)
	}
	if _, err := loadYAML(t, twoRoutes, nil, []string{"--route", "nope"}, need); err == nil || !strings.Contains(err.Error(), `"nope" is not a route of`) {
		t.Fatalf("--route nope: %v", err)
	}
	// One route needs no name.
	one := "routes:\n  - name: solo\n    client_id: x\n    client_secret_file: SECRET_FILE\n"
	if s, err := loadYAML(t, one, nil, nil, need); err != nil || s.Route.Name != "solo" {
		t.Fatalf("one route: %v", err)
	}
}

func TestWithoutAFileTheEnvironmentIsTheDefaultRoute(t *testing.T) {
	s, err := load(t, nil, map[string]string{"CLIENT_ID": "app", "PATH_PREFIX": "/coop"}, Needs{})
	if err != nil {
		t.Fatal(err)
	}
	if rs := s.AllRoutes(); len(rs) != 1 || rs[0].Name != DefaultRoute || s.Route.Name != DefaultRoute || s.Route.ClientID != "app" || s.Route.PathPrefix != "/coop" {
		t.Fatalf("%+v", s.AllRoutes())
	}
	if _, err := load(t, []string{"--route", "coop"}, nil, Needs{}); err == nil || !strings.Contains(err.Error(), "the only route is") {
		t.Fatalf("--route without a file: %v", err)
	}
}

// Any file is read without a panic, and each problem is one line.
func FuzzConfigFile(f *testing.F) {
	f.Add(twoRoutes)
	f.Add("routes:\n  - name: a\n    scopes: [a, b]\n    token_params: x=1\n")
	f.Add("routes: {a: 1}\n")
	f.Add("routes:\n  - [1, 2]\n")
	f.Add("log_level: [debug]\nroutes:\n  - name: a\n    listen: unix:relative\n")
	f.Add("- a\n")
	f.Add("&a [*a]")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, text string) {
		file := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load("fuzz", nil, map[string]string{EnvPrefix + "CONFIG": file, EnvPrefix + "STORE": filepath.Join(dir, "tokens.json")}, Needs{Listen: true})
		var p Problems
		if errors.As(err, &p) {
			for _, e := range p {
				if strings.Contains(e.Error(), "\n") {
					t.Fatalf("a problem of more than one line: %q", e.Error())
				}
			}
		}
	})
}
