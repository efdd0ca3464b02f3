package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/login"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// runLogin runs the authorization-code grant with the farmer (RFC 8252),
// learns who they are from /api/me when the profile scope was granted, and
// stores the grant where `serve --grant authorization_code` picks it up
// (even while running).
func runLogin(ctx context.Context, inv *invocation) error {
	s, out := inv.settings, inv.out
	r := s.Route // login is the authorization-code grant, whatever --grant says
	r.Grant = config.AuthorizationCode
	ep, err := server.Endpoints(ctx, &r)
	if err != nil {
		return err
	}
	client := tokensource.WithParams(server.TokenHTTPClient(&r), r.TokenRequestParams())
	lc := login.Config{OAuth: *server.OAuthConfig(&r, ep), AuthParams: r.AuthorizationParams(), HTTPClient: client,
		Timeout: s.LoginTimeout, Paste: s.Paste, In: os.Stdin, Out: out}
	if r.Issuer == "" && r.Provider == "" {
		lc.Server = "COOP"
	}
	if !s.NoBrowser && !s.Paste {
		lc.OpenBrowser = login.BrowserOpener()
	}
	res, err := login.Run(ctx, lc)
	if err != nil {
		return err
	}

	rec := tokensource.RecordFromToken(res.Token, res.Scopes, time.Now())
	rec.GrantedAt = time.Now()
	// COOP's /api/me, with its profile scope; OpenID's profile scope is another
	if slices.Contains(rec.Scopes, "profile") && r.Issuer == "" && r.Provider == "" {
		id, email, err := login.WhoAmI(ctx, client, r.Upstream, rec.AccessToken)
		if err != nil {
			fmt.Fprintf(out, "Note: logged in, but /api/me did not say who: %v\n", err)
		} else {
			rec.UserID, rec.Email = id, email
		}
	}

	log, flush := quietLogger()
	defer flush()
	st, err := server.OpenStore(s.Store, log)
	if err != nil {
		return err
	}
	key := server.StoreKey(&r)
	if _, err := st.Update(ctx, key, func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &rec, nil }); err != nil {
		return fmt.Errorf("logged in, but the grant could not be stored: %w", err)
	}
	log.Debug("grant stored", zap.String("path", st.Path()))

	who := "the farmer"
	if rec.Email != "" {
		who = fmt.Sprintf("%s (farmer %d)", rec.Email, rec.UserID)
	}
	until := "until COOP ends the grant"
	if rec.RefreshToken == "" && !rec.Expiry.IsZero() {
		until = "until " + rec.Expiry.Local().Format(time.RFC1123) + " (no refresh token: log in again then)"
	} else if rec.RefreshToken != "" {
		until = "access token until " + rec.Expiry.Local().Format(time.RFC1123) + ", renewed with the refresh token"
	}
	fmt.Fprintf(out, "Logged in as %s for %q, scopes %s; %s.\nGrant stored in %s. Run: coop-proxy serve --grant authorization_code\n",
		who, r.ClientID, strings.Join(rec.Scopes, " "), until, st.Path())
	return nil
}
