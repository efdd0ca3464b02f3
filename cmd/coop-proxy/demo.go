package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/coop"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// runDemo starts the COOP emulator on loopback with a demo farmer and the
// tutorial's "Brent's Lazy CRON Job" application (fresh random secrets),
// starts the proxy in front of it, prints commands to try, and stops both
// on Ctrl-C.
func runDemo(ctx context.Context, inv *invocation) error {
	out := inv.out
	em := coop.New(coop.Options{})
	password := rand.Text()[:16]
	brent := em.AddUser("brent@example.com", password, "Brent", "Farmer")
	sally := em.AddUser("sally@example.com", rand.Text()[:16], "Sally", "Farmer")
	app := em.AddApp(brent.ID, "Brent's Lazy CRON Job", coop.AllScopes(), inv.settings.Route.RedirectURI)

	emURL, stop, err := serveEmulator(em)
	if err != nil {
		return err
	}
	defer stop()
	dir, err := os.MkdirTemp("", "coop-proxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(app.ClientSecret+"\n"), 0o600); err != nil {
		return err
	}
	environ := demoEnviron(emURL, app.ClientID, secretFile, filepath.Join(dir, "tokens.json"))
	d, err := config.Load("coop-proxy demo", inv.args, environ, config.Everything)
	if err != nil {
		return err
	}
	lg := server.NewLogger(os.Stderr, d.LogFormat, d.LogLevel)
	defer lg.Flush()
	ready := make(chan server.Addrs, 1)
	srv, err := server.New(d, server.Options{Log: lg.Log, Level: lg.Level, Requests: lg.Requests, Ready: ready})
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var addrs server.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		return err
	}
	// The settings for running coop-proxy's other commands against the demo.
	envFile := filepath.Join(dir, "env")
	envText := fmt.Sprintf("export %sUPSTREAM=%s\nexport %sCLIENT_ID=%q\nexport %sCLIENT_SECRET_FILE=%s\nexport %sSTORE=%s\n",
		config.EnvPrefix, emURL, config.EnvPrefix, app.ClientID, config.EnvPrefix, secretFile, config.EnvPrefix, d.Store)
	if err := os.WriteFile(envFile, []byte(envText), 0o600); err != nil {
		return err
	}
	printDemo(out, emURL, brent, sally, password, app, addrs, envFile)
	err = <-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// printDemo prints the demo's addresses and the commands to try.
func printDemo(out io.Writer, emURL string, brent, sally coop.User, password string, app coop.App, addrs server.Addrs, envFile string) {
	p := "http://" + addrs.Proxy
	fmt.Fprintf(out, `
coop-proxy demo
  COOP emulator   %s   (farmers: %s id %d, %s id %d)
  application     %q, all six scopes, client-credentials grant
  coop-proxy      %s   (admin: %s)

Try, in another terminal (no token in sight):
  curl -X POST %s/api/%d/eggs-collect     # collects eggs on Brent's farm
  curl -X POST %s/api/%d/eggs-collect     # again within 20 s: COOP's "give the ladies a break"
  curl -X POST %s/api/%d/eggs-count
  curl %s/api/me                           # the application's owner
  curl -X POST %s/api/%d/barn-unlock      # Sally's farm: COOP's 401 passes through
  curl -X POST %s/api/%d/eggs-count       # straight to COOP, no token: COOP's 200 "access_denied"
  curl %s/metrics

The other commands, with the demo's settings:
  . %s
  %s status
  curl -H "Authorization: Bearer $(%s token)" -X POST %s/api/%d/eggs-count

A farmer's own grant (authorization code), against the same emulator:
  . %s
  %s login --grant authorization_code      # log in as %s, password %s
  %s serve --grant authorization_code --listen 127.0.0.1:8081 --admin-listen off
  curl http://127.0.0.1:8081/api/me

Ctrl-C stops both.
`, emURL, brent.Email, brent.ID, sally.Email, sally.ID, app.ClientID, p, orNone(addrs.Admin),
		p, brent.ID, p, brent.ID, p, brent.ID, p, p, sally.ID, emURL, brent.ID, adminURL(addrs.Admin),
		envFile, self(), self(), emURL, brent.ID,
		envFile, self(), brent.Email, password, self())

}

// serveEmulator serves the emulator on a loopback port.
func serveEmulator(em *coop.Server) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("cannot start the COOP emulator: %w", err)
	}
	srv := &http.Server{Handler: em, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// demoEnviron is the user's settings, with the emulator's application in
// place of COOP's.
func demoEnviron(emURL, clientID, secretFile, store string) map[string]string {
	environ := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, config.EnvPrefix) {
			environ[k] = v
		}
	}
	if environ[config.EnvPrefix+"LOG_FORMAT"] == "" {
		environ[config.EnvPrefix+"LOG_FORMAT"] = "console"
	}
	for k, v := range map[string]string{"UPSTREAM": emURL, "CLIENT_ID": clientID, "CLIENT_SECRET_FILE": secretFile,
		"STORE": store, "GRANT": "client_credentials"} {
		environ[config.EnvPrefix+k] = v
	}
	if redis := os.Getenv(config.EnvPrefix + "STORE"); config.RedisStore(redis) {
		environ[config.EnvPrefix+"STORE"] = redis // a Redis store given is kept (deploy/compose/compose.redis.yaml)
	}
	for _, k := range []string{"TOKEN_URL", "AUTHORIZE_URL", "CLIENT_SECRET", "SCOPES"} {
		delete(environ, config.EnvPrefix+k)
	}
	return environ
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func adminURL(addr string) string {
	if addr == "" {
		return "(no admin listener)"
	}
	return "http://" + addr
}

// self is how the user ran this program, for commands printed to copy.
func self() string {
	if strings.Contains(os.Args[0], "go-build") {
		return "go run ./cmd/coop-proxy"
	}
	return os.Args[0]
}
