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

	"github.com/coop-proxy/coop-proxy/internal/coop"
)

// runDemo starts the COOP emulator on loopback with a demo farmer and the
// tutorial's "Brent's Lazy CRON Job" application (fresh random secrets),
// starts the proxy in front of it, prints commands to try, and stops both
// on Ctrl-C.
func runDemo(ctx context.Context, cfg *Config, _ rereadFunc, out io.Writer) error {
	em := coop.New(coop.Options{})
	password := rand.Text()[:16]
	brent := em.AddUser("brent@example.com", password, "Brent", "Farmer")
	sally := em.AddUser("sally@example.com", rand.Text()[:16], "Sally", "Farmer")
	app := em.AddApp(brent.ID, "Brent's Lazy CRON Job", coop.AllScopes(), cfg.RedirectURI)

	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("cannot start the COOP emulator: %w", err)
	}
	esrv := &http.Server{Handler: em, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = esrv.Serve(eln) }()
	defer esrv.Close()
	emURL := "http://" + eln.Addr().String()

	dir, err := os.MkdirTemp("", "coop-proxy-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secretFile := filepath.Join(dir, "client-secret")
	if err := os.WriteFile(secretFile, []byte(app.ClientSecret+"\n"), 0o600); err != nil {
		return err
	}

	d := *cfg
	d.Upstream, d.TokenURL, d.AuthorizeURL = emURL, "", ""
	d.ClientID, d.ClientSecret, d.ClientSecretFile = app.ClientID, "", secretFile
	d.Grant, d.Scopes = "client_credentials", ""
	d.Store = filepath.Join(dir, "tokens.json")
	if os.Getenv(envPrefix+"LOG_FORMAT") == "" {
		d.LogFormat = "console"
	}
	if errs := d.check(needs{client: true, listen: true, store: true}); len(errs) > 0 {
		return errs[0]
	}
	log, level, flush := newLogger(&d)
	defer flush()

	ready := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, &d, log, level, serveOptions{ready: ready}) }()
	var addrs [2]string
	select {
	case addrs = <-ready:
	case err := <-done:
		return err
	}
	p := "http://" + addrs[0]
	// The settings for running coop-proxy's other commands against the demo.
	envFile := filepath.Join(dir, "env")
	envText := fmt.Sprintf("export %sUPSTREAM=%s\nexport %sCLIENT_ID=%q\nexport %sCLIENT_SECRET_FILE=%s\nexport %sSTORE=%s\n",
		envPrefix, emURL, envPrefix, app.ClientID, envPrefix, secretFile, envPrefix, d.Store)
	if err := os.WriteFile(envFile, []byte(envText), 0o600); err != nil {
		return err
	}
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
`, emURL, brent.Email, brent.ID, sally.Email, sally.ID, app.ClientID, p, orNone(addrs[1]),
		p, brent.ID, p, brent.ID, p, brent.ID, p, p, sally.ID, emURL, brent.ID, adminURL(addrs[1]),
		envFile, self(), self(), emURL, brent.ID,
		envFile, self(), brent.Email, password, self())

	err = <-done
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
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
