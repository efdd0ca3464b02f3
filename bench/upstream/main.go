// Command upstream is the benchmark's COOP: the emulator of internal/coop on
// one address, with a farmer and the application "Brent's Lazy CRON Job"
// (all scopes). It writes the application's client id and secret and one
// access token for the farmer to a JSON file (mode 0600) for bench/run.sh,
// then serves until SIGINT or SIGTERM. It never prints the secret.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"

	"github.com/coop-proxy/coop-proxy/bench/benchserve"
	"github.com/coop-proxy/coop-proxy/internal/coop"
)

// credentials is what the other benchmark targets need to reach the API.
type credentials struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	AccessToken  string `json:"access_token"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18080", "address to serve the emulator on (loopback)")
	credsPath := flag.String("credentials", "", "file to write the client id, client secret and access token to (required)")
	flag.Parse()
	if *credsPath == "" {
		log.Fatal("upstream: -credentials is required")
	}
	if err := run(*listen, *credsPath); err != nil {
		log.Fatalf("upstream: %v", err)
	}
}

func run(listen, credsPath string) error {
	srv := coop.New(coop.Options{})
	farmer := srv.AddUser("brent@example.com", "bench-only", "Brent", "Farmer")
	app := srv.AddApp(farmer.ID, "Brent's Lazy CRON Job", coop.AllScopes(), "")
	access, _ := srv.IssueToken(app.ClientID, farmer.ID, coop.AllScopes(), false)
	if err := writeCredentials(credsPath, credentials{app.ClientID, app.ClientSecret, access}); err != nil {
		return err
	}

	return benchserve.Run(listen, srv, func(addr net.Addr) {
		log.Printf("upstream: COOP emulator on http://%s, farm %d", addr, farmer.ID)
	})
}

// writeCredentials writes c as indented JSON to a file of mode 0600 that
// must not exist yet (so that no wider mode is inherited).
func writeCredentials(path string, c credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
