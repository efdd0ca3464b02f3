package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// routesFile writes a configuration file with two routes to the farm, one
// for the application's own token (eggs) and one for Brent's grant
// (farmer), and points the environment at it.
func (f *farm) routesFile(t *testing.T, extra string) map[string]string {
	t.Helper()
	file := filepath.Join(f.dir, "coop-proxy.yaml")
	text := "routes:\n" +
		"  - name: eggs\n    upstream: " + f.url + "\n    client_id: " + f.app.ClientID + "\n    client_secret_file: " + f.secretFile +
		"\n    scopes: eggs-count\n    listen: 127.0.0.1:0\n" +
		"  - name: farmer\n    upstream: " + f.url + "\n    client_id: " + f.app.ClientID + "\n    client_secret_file: " + f.secretFile +
		"\n    grant: authorization_code\n    scopes: [eggs-collect, eggs-count, profile]\n    redirect_uri: " + f.redirect + "\n    listen: 127.0.0.1:0\n" + extra
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CONFIG": file, "STORE": filepath.Join(f.dir, "state", "tokens.json"), "NO_BROWSER": "true", "LOGIN_TIMEOUT": "10s"}
	for k, v := range env {
		t.Setenv(config.EnvPrefix+k, v)
	}
	return env
}

// farmerRoute loads the settings of routesFile's farmer route.
func farmerRoute(t *testing.T, env map[string]string) *config.Settings {
	t.Helper()
	full := map[string]string{}
	for k, v := range env {
		full[config.EnvPrefix+k] = v
	}
	cfg, err := config.Load("test", []string{"--route", "farmer"}, full, config.Needs{Client: true, Store: true, OneRoute: true})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCommandsTakeARouteOfTheFile(t *testing.T) {
	f := newFarm(t)
	env := f.routesFile(t, "")

	for _, cmd := range []string{"token", "login", "logout"} {
		var stdout, stderr bytes.Buffer
		code := run([]string{cmd}, &stdout, &stderr)
		if code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "has several routes: name one with --route (eggs, farmer)") {
			t.Errorf("%s without --route: exit %d, %q", cmd, code, stderr.String())
		}
	}

	// status without --route shows every route.
	var stdout, stderr bytes.Buffer
	if code := run([]string{"status"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "route:          eggs\n") || !strings.Contains(stdout.String(), "\n\nroute:          farmer\n") {
		t.Fatalf("status without --route: exit %d, %s\n%s", code, stderr.String(), stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"token", "--route", "eggs"}, &stdout, &stderr); code != 0 || !secretsRE.MatchString(stdout.String()) {
		t.Fatalf("token --route eggs: exit %d, %q %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := run([]string{"status", "--route", "eggs"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stdout.String(), "route:          eggs") || !strings.Contains(stdout.String(), "access token:   sha256:") {
		t.Fatalf("status --route eggs: exit %d\n%s", code, stdout.String())
	}

	// login --route farmer stores Brent's grant where the farmer route's status finds it.
	cfg := farmerRoute(t, env)
	if out, err := f.login(t, cfg, true); err != nil {
		t.Fatalf("login --route farmer: %v\n%s", err, out)
	}
	stdout.Reset()
	if code := run([]string{"status", "--route", "farmer"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "brent@example.com") {
		t.Fatalf("status --route farmer: exit %d\n%s", code, stdout.String())
	}
	stdout.Reset()
	if code := run([]string{"token", "--route", "nope"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `"nope" is not a route of`) {
		t.Fatalf("token --route nope: exit %d, %q", code, stderr.String())
	}
}

func TestCheckConfigNamesTheRouteAndKeyOfEachProblem(t *testing.T) {
	f := newFarm(t)
	f.routesFile(t, "  - name: broken\n    upstream: ftp://x\n    client_id: x\n    client_secret: hunter2\n    grnat: x\n    listen: 127.0.0.1:0\n")
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config"}, &stdout, &stderr)
	out := stdout.String()
	for _, want := range []string{"route broken: upstream: ", "route broken: client_secret: a secret is never written", "route broken: grnat: not a route setting"} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config lacks %q", want)
		}
	}
	if code != 1 || strings.Contains(out, "hunter2") || strings.Contains(out, "route eggs") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	t.Setenv(config.EnvPrefix+"UPSTREAM", f.url)
	stdout.Reset()
	if code := run([]string{"check-config"}, &stdout, &stderr); code != 1 || !strings.Contains(stdout.String(), "route settings come from") {
		t.Fatalf("a route setting in the environment beside the file: exit %d\n%s", code, stdout.String())
	}
}

func TestHelpDocumentsConfigAndRoute(t *testing.T) {
	var stdout, stderr bytes.Buffer
	run([]string{"help"}, &stdout, &stderr)
	run([]string{"status", "--help"}, &stdout, &stderr)
	for _, want := range []string{"--config FILE", "--route NAME", "--config  (COOP_PROXY_CONFIG)", "--route  (COOP_PROXY_ROUTE)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// serve --config runs every route of the file, and SIGHUP reads the file
// again: a route removed from it is stopped, a route added is started.
func TestServeRunsTheRoutesOfTheFileAndSIGHUPReloadsIt(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	shared, other := filepath.Join(dir, "shared.sock"), filepath.Join(dir, "other.sock")
	route := func(name, sock, prefix string) string {
		r := "  - name: " + name + "\n    upstream: " + f.url + "\n    client_id: " + f.app.ClientID + "\n    client_secret_file: " + f.secretFile +
			"\n    scopes: eggs-count\n    listen: unix:" + sock + "\n"
		if prefix != "" {
			r += "    path_prefix: " + prefix + "\n"
		}
		return r
	}
	file := filepath.Join(dir, "coop-proxy.yaml")
	write := func(text string) {
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("routes:\n" + route("a", shared, "/a") + route("b", shared, "/b"))
	cmd := exec.Command(os.Args[0], "serve", "--config", file)
	cmd.Env = append(os.Environ(), "COOP_PROXY_TEST_AS_MAIN=1", config.EnvPrefix+"STORE="+filepath.Join(dir, "state", "tokens.json"),
		config.EnvPrefix+"ADMIN_LISTEN=off", config.EnvPrefix+"LOG_LEVEL=debug")
	c := &child{cmd: cmd, stderr: &logBuffer{}}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	c.waitListening(t)

	eggs := func(sock, path string) int {
		resp, err := unixClient(sock).Post("http://localhost"+path, "", nil)
		if err != nil {
			t.Fatalf("POST %s over %s: %v", path, sock, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if a, b := eggs(shared, "/a/api/1/eggs-count"), eggs(shared, "/b/api/1/eggs-count"); a != 200 || b != 200 {
		t.Fatalf("/a: %d, /b: %d\n%s", a, b, c.stderr.String())
	}
	if n := f.tokenRequests(); n != 1 {
		t.Errorf("%d token requests for two routes with one store key, want 1", n)
	}
	waitUntil(t, "the request lines, naming their routes", func() bool {
		logs := c.stderr.String()
		return strings.Contains(logs, `"msg":"request","route":"a","method":"POST","path":"/api/1/eggs-count"`) &&
			strings.Contains(logs, `"msg":"request","route":"b"`)
	})

	write("routes:\n" + route("a", shared, "/a") + route("c", other, ""))
	_ = cmd.Process.Signal(syscall.SIGHUP)
	waitUntil(t, "the reload", func() bool {
		return strings.Contains(c.stderr.String(), `"route added","route":"c"`) && strings.Contains(c.stderr.String(), `"route removed: draining it","route":"b"`)
	})
	if a, b, other := eggs(shared, "/a/api/1/eggs-count"), eggs(shared, "/b/api/1/eggs-count"), eggs(other, "/api/1/eggs-count"); a != 200 || b != 404 || other != 200 {
		t.Fatalf("after the reload: /a %d, /b %d (want 404), c %d\n%s", a, b, other, c.stderr.String())
	}
	c.stop(t)
}

// A route sharing another's store key with another stack setting is a
// problem check-config names, as serve would refuse it.
func TestCheckConfigNamesRoutesSharingAStoreKeyThatDisagree(t *testing.T) {
	f := newFarm(t)
	f.routesFile(t, "  - name: eggs-bound\n    upstream: "+f.url+"\n    client_id: "+f.app.ClientID+"\n    client_secret_file: "+f.secretFile+
		"\n    scopes: eggs-count\n    dpop: true\n    listen: 127.0.0.1:0\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"check-config"}, &stdout, &stderr); code != 1 || !strings.Contains(stdout.String(), "route eggs-bound: dpop: differs from the route eggs's") {
		t.Fatalf("exit %d:\n%s", code, stdout.String())
	}
}
