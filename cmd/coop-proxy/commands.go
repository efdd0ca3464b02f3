package main

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
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
