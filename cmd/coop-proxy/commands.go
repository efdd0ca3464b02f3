package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// runToken prints a valid access token: from the store when it holds one,
// else fetched (and stored), for `curl -H "Authorization: Bearer $(coop-proxy token)"`.
func runToken(ctx context.Context, inv *invocation) error {
	s := inv.settings
	log, flush := quietLogger()
	defer flush()
	tk, err := server.NewTokens(ctx, s, &s.Route, log, server.TokenOptions{}, nil)
	if err != nil {
		return err
	}
	defer tk.Store.Close()
	defer tk.Cache.Close()
	tok, err := tk.Cache.Token(ctx)
	if err != nil {
		return err
	}
	if tok.DPoP() != nil {
		// RFC 9449 §7: the API takes it only with a proof of coop-proxy's key
		fmt.Fprintln(os.Stderr, "note: this token is DPoP-bound: it works only with a DPoP proof of coop-proxy's key; send requests through coop-proxy serve")
	}
	_, err = fmt.Fprintln(inv.out, tok.Access())
	return err
}

// quietLogger logs warnings and errors to stderr for a person to read.
func quietLogger() (*zap.Logger, func()) {
	lg := server.NewLogger(os.Stderr, "console", config.LogLevel{Level: zap.WarnLevel})
	return lg.Log, lg.Flush
}

// runStatus shows what the store holds for the configured grant; never a token.
func runStatus(ctx context.Context, inv *invocation) error {
	r, out := &inv.settings.Route, inv.out
	log, flush := quietLogger()
	defer flush()
	key := server.StoreKey(r)
	st, err := server.OpenBackend(ctx, inv.settings, key, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	rec, ok, err := st.Load(ctx, key)
	if err != nil {
		return err
	}
	p := func(k, v string) { fmt.Fprintf(out, "%-15s %s\n", k+":", v) }
	if inv.settings.Config != "" {
		p("route", r.Name)
	}
	p("store", server.StoreName(st))
	p("grant", string(r.Grant))
	p("client id", r.ClientID)
	if r.Issuer != "" {
		p("issuer", r.Issuer)
	}
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second) // an issuer's metadata; status is a quick look
	if ep, err := server.Endpoints(ectx, r); err != nil {
		p("token url", fmt.Sprintf("unknown (%v)", err))
	} else {
		p("token url", ep.TokenURL)
	}
	cancel()
	if !ok {
		if r.Grant == config.AuthorizationCode {
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
	} else if r.Grant == config.AuthorizationCode {
		p("refresh token", "none: log in again when the access token expires")
	}
	if rec.DPoPJKT != "" {
		where := "kept with the grant in the store"
		if len(rec.DPoPKey) == 0 {
			where = "from the key file"
		}
		p("DPoP key", fmt.Sprintf("%s (RFC 7638 thumbprint), %s", rec.DPoPJKT, where))
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
func runLogout(ctx context.Context, inv *invocation) error {
	log, flush := quietLogger()
	defer flush()
	r := inv.settings.Route
	r.Grant = config.AuthorizationCode
	key := server.StoreKey(&r)
	st, err := server.OpenBackend(ctx, inv.settings, key, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	existed, err := st.Delete(ctx, key)
	if err != nil {
		return err
	}
	if existed {
		fmt.Fprintf(inv.out, "Logged out: the farmer's grant for %q was removed from %s.\n", r.ClientID, server.StoreName(st))
	} else {
		fmt.Fprintf(inv.out, "No farmer was logged in for %q in %s.\n", r.ClientID, server.StoreName(st))
	}
	return nil
}

// runVersion prints the version, commit and Go version from the build info.
func runVersion(_ context.Context, inv *invocation) error {
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
	fmt.Fprintf(inv.out, "coop-proxy %s (commit %s, %s)\n", version, commit, goVersion)
	return nil
}

// buildVersion and buildCommit may be set with -ldflags "-X main.buildVersion=..."
// where the build has no VCS information (a container build without .git).
var buildVersion, buildCommit string
