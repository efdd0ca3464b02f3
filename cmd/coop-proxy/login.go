package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/dpop"
	"github.com/coop-proxy/coop-proxy/internal/login"
	"github.com/coop-proxy/coop-proxy/internal/server"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
	"github.com/coop-proxy/coop-proxy/tokenstore"
)

// runLogin runs the authorization-code grant with the farmer (RFC 8252),
// or with --device the device grant (RFC 8628), learns who they are from
// /api/me when the profile scope was granted, and stores the grant where
// `serve --grant authorization_code` picks it up (even while running).
func runLogin(ctx context.Context, inv *invocation) error {
	s, out := inv.settings, inv.out
	r := s.Route // login is the authorization-code grant, whatever --grant says
	r.Grant = config.AuthorizationCode
	ep, err := server.Endpoints(ctx, &r)
	if err != nil {
		return err
	}
	client := tokensource.WithParams(server.TokenHTTPClient(&r), r.TokenRequestParams())
	// A new grant gets a new DPoP key (or the key file's): the token
	// requests carry its proofs, and the grant is stored with it.
	keys := server.DPoPKeys(&r)
	key := keys.For(tokenstore.Record{}, false)
	var res *login.Result
	if s.Device {
		res, err = deviceLogin(dpop.WithKey(ctx, key), s, r, ep, out)
	} else {
		lc := login.Config{OAuth: *server.OAuthConfig(&r, ep), AuthParams: r.AuthorizationParams(), HTTPClient: client,
			Timeout: s.LoginTimeout, Paste: s.Paste, In: os.Stdin, Out: out}
		if r.Issuer == "" && r.Provider == "" {
			lc.Server = "COOP"
		}
		if !s.NoBrowser && !s.Paste {
			lc.OpenBrowser = login.BrowserOpener()
		}
		res, err = login.Run(dpop.WithKey(ctx, key), lc)

	}
	if err != nil {
		return err
	}
	if err := tokensource.CheckIssued(res.Token, key != nil, r.ClientSecret.Reveal()); err != nil {
		return fmt.Errorf("logged in, but the token cannot be used: %w", err)
	}

	rec := tokensource.RecordFromToken(res.Token, res.Scopes, time.Now())
	keys.Bind(&rec, key)
	rec.GrantedAt = time.Now()
	// COOP's /api/me, with its profile scope; OpenID's profile scope is
	// another. COOP takes no DPoP token.
	if slices.Contains(rec.Scopes, "profile") && r.Issuer == "" && r.Provider == "" && key == nil {
		id, email, err := login.WhoAmI(ctx, client, r.Upstream, rec.AccessToken)
		if err != nil {
			fmt.Fprintf(out, "Note: logged in, but /api/me did not say who: %v\n", err)
		} else {
			rec.UserID, rec.Email = id, email
		}
	}

	log, flush := quietLogger()
	defer flush()
	storeKey := server.StoreKey(&r)
	st, err := server.OpenBackend(ctx, s, storeKey, log, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.Update(ctx, storeKey, func(tokenstore.Record, bool) (*tokenstore.Record, error) { return &rec, nil }); err != nil {
		return fmt.Errorf("logged in, but the grant could not be stored: %w", err)
	}
	log.Debug("grant stored", zap.String("store", server.StoreName(st)))

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
		who, r.ClientID, strings.Join(rec.Scopes, " "), until, server.StoreName(st))
	return nil
}

// deviceLogin runs the device grant (RFC 8628) at the route's endpoints ep.
// Its grant is stored as a login's: the refresh of `serve --grant
// authorization_code` needs only the refresh token and the token endpoint.
func deviceLogin(ctx context.Context, s *config.Settings, r config.Route, ep config.Endpoints, out io.Writer) (*login.Result, error) {
	if ep.DeviceAuthorizationURL == "" {
		return nil, fmt.Errorf("no device authorization endpoint: set %s, or %s of a provider whose metadata names one, or %s of one that has one (github, gitlab, google)",
			config.SettingName("DeviceAuthorizationURL"), config.SettingName("Issuer"), config.SettingName("Provider"))
	}
	// A client assertion names the authorization server by its token
	// endpoint (OpenID Connect Core §9, RFC 7523 §3), also when posted to
	// the device authorization endpoint; it is the default aud at the
	// token endpoint anyway.
	if r.ClientAssertionAudience == "" {
		r.ClientAssertionAudience = ep.TokenURL
	}
	oc := server.OAuthConfig(&r, ep)
	oc.Endpoint.DeviceAuthURL = ep.DeviceAuthorizationURL
	return login.Device(ctx, login.DeviceConfig{OAuth: *oc, AuthParams: r.AuthorizationParams(),
		HTTPClient: tokensource.WithParams(server.TokenHTTPClient(&r), r.TokenRequestParams()), Timeout: s.LoginTimeout, Out: out})
}
