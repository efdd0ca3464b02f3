package main

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// runToken prints a valid access token: from the store when it holds one,
// else fetched (and stored), for `curl -H "Authorization: Bearer $(coop-proxy token)"`.
func runToken(ctx context.Context, cfg *Config, _ rereadFunc, out io.Writer) error {
	cfg.LogFormat = "console"
	log, _, flush := newLogger(cfg)
	defer flush()
	tk, err := newTokens(cfg, log.WithOptions(zap.IncreaseLevel(zap.WarnLevel)), serveOptions{}, nil)
	if err != nil {
		return err
	}
	defer tk.cache.Close()
	tok, err := tk.cache.Token(ctx)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok.Access())
	return err
}

// storeKey is the key the configured grant is stored under.
func storeKey(cfg *Config) tokenstore.Key {
	if cfg.Grant == "authorization_code" {
		return tokensource.AuthorizationCodeKey(cfg.tokenURL(), cfg.ClientID)
	}
	return tokensource.ClientCredentialsKey(cfg.tokenURL(), cfg.ClientID, cfg.scopeList())
}

// runStatus shows what the store holds for the configured grant; never a token.
func runStatus(ctx context.Context, cfg *Config, _ rereadFunc, out io.Writer) error {
	log, _, flush := newLogger(&Config{LogFormat: "console", LogLevel: "warn"})
	defer flush()
	st, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	key := storeKey(cfg)
	rec, ok, err := st.Load(ctx, key)
	if err != nil {
		return err
	}
	p := func(k, v string) { fmt.Fprintf(out, "%-15s %s\n", k+":", v) }
	p("store", st.Path())
	p("grant", cfg.Grant)
	p("client id", cfg.ClientID)
	p("token url", cfg.tokenURL())
	if !ok {
		if cfg.Grant == "authorization_code" {
			p("state", "no farmer logged in: run `coop-proxy login`")
		} else {
			p("state", "no token stored yet (serve or token fetches one)")
		}
		// Other grants there often mean other settings (grant, scopes, URL).
		keys, err := st.Keys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			p("stored", k)
		}
		return nil
	}
	now := time.Now()
	if rec.Email != "" || rec.UserID != 0 {
		p("farmer", fmt.Sprintf("%s (id %d)", rec.Email, rec.UserID))
	}
	p("scopes", strings.Join(rec.Scopes, " "))
	switch {
	case rec.Expiry.IsZero():
		p("access token", redact.Fingerprint(rec.AccessToken)+", no expiry given")
	case now.After(rec.Expiry):
		p("access token", fmt.Sprintf("%s, expired %s ago (%s)", redact.Fingerprint(rec.AccessToken), now.Sub(rec.Expiry).Round(time.Second), rec.Expiry.Local().Format(time.RFC3339)))
	default:
		p("access token", fmt.Sprintf("%s, expires in %s (%s)", redact.Fingerprint(rec.AccessToken), rec.Expiry.Sub(now).Round(time.Second), rec.Expiry.Local().Format(time.RFC3339)))
	}
	if rec.RefreshToken != "" {
		p("refresh token", "held ("+redact.Fingerprint(rec.RefreshToken)+")")
	} else if cfg.Grant == "authorization_code" {
		p("refresh token", "none: log in again when the access token expires")
	}
	if !rec.GrantedAt.IsZero() {
		p("granted", fmt.Sprintf("%s ago (%s)", now.Sub(rec.GrantedAt).Round(time.Second), rec.GrantedAt.Local().Format(time.RFC3339)))
	}
	if !rec.UpdatedAt.IsZero() {
		p("last written", rec.UpdatedAt.Local().Format(time.RFC3339))
	}
	return nil
}

// runLogout removes the farmer's stored grant.
func runLogout(ctx context.Context, cfg *Config, _ rereadFunc, out io.Writer) error {
	log, _, flush := newLogger(&Config{LogFormat: "console", LogLevel: "warn"})
	defer flush()
	st, err := openStore(cfg, log)
	if err != nil {
		return err
	}
	cfg.Grant = "authorization_code"
	key := storeKey(cfg)
	existed, err := st.Delete(ctx, key)
	if err != nil {
		return err
	}
	if existed {
		fmt.Fprintf(out, "Logged out: the farmer's grant for %q was removed from %s.\n", cfg.ClientID, st.Path())
	} else {
		fmt.Fprintf(out, "No farmer was logged in for %q in %s.\n", cfg.ClientID, st.Path())
	}
	return nil
}

// runCheckConfig prints every problem with the settings, one a line.
func runCheckConfig(_ context.Context, cfg *Config, _ rereadFunc, out io.Writer) error {
	need := needs{client: true, listen: true, store: true}
	errs := cfg.check(need)
	for _, e := range errs {
		fmt.Fprintln(out, e)
	}
	if len(errs) > 0 {
		return exitError{code: 1}
	}
	fmt.Fprintln(out, "configuration OK")
	return nil
}

// runVersion prints the version, commit and Go version from the build info.
func runVersion(_ context.Context, _ *Config, _ rereadFunc, out io.Writer) error {
	version, commit, goVersion := "(devel)", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	if buildVersion != "" {
		version = buildVersion
	}
	if buildCommit != "" {
		commit = buildCommit
	}
	fmt.Fprintf(out, "coop-proxy %s (commit %s, %s)\n", version, commit, goVersion)
	return nil
}

// buildVersion and buildCommit may be set with -ldflags "-X main.buildVersion=..."
// where the build has no VCS information (a container build without .git).
var buildVersion, buildCommit string
