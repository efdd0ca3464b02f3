// Package oidctest starts a real, independent OpenID provider in a test:
// zitadel/oidc's op package (an OpenID-certified implementation), on an
// httptest server on loopback, with an in-memory storage, clients the test
// registers with fresh random secrets, a non-interactive login, and a
// resource server ("the API") that checks the access tokens the way a real
// API would, with go-jose against the provider's published keys.
//
// It exists so that coop-proxy's end-to-end tests are judged by an
// implementation we did not write (issue 8, part 4), not only by our COOP
// emulator. Nothing here is for production: it is imported by tests only.
//
// What is zitadel's and what is ours:
//   - zitadel's: the metadata document (served at the RFC 8414 and
//     OpenID Connect Discovery well-known URLs, WithIssuerPath for an
//     issuer with a path), the authorization, token, device authorization,
//     revocation, introspection, userinfo and keys endpoints; parsing client
//     credentials (the RFC 6749 §2.3.1 form-decoding of Basic credentials,
//     one method per request); PKCE checks; verifying private_key_jwt
//     assertions (signature, iss = sub, exp, iat, aud); signing tokens.
//   - ours (small, commented where it is): the storage, the login/consent
//     step (auto-approved), holding each client to the one authentication
//     method it registered (as real providers do), requiring PKCE S256,
//     refusing a replayed assertion jti, answering slow_down to a device
//     client that polls too fast, answering invalid_client with 401, and
//     the API.
//
// Use:
//
//	p := oidctest.New(t)                         // provider + API, closed at the end of t
//	c := p.AddClient(oidctest.Client{Scopes: []string{"things:read"}}) // client_secret_basic, client_credentials
//	conf := clientcredentials.Config{ClientID: c.ID, ClientSecret: c.Secret, TokenURL: p.TokenURL,
//		Scopes: []string{"things:read"}, AuthStyle: oauth2.AuthStyleInHeader}
//	tok, _ := conf.Token(ctx)
//	// GET p.APIURL+"/anything" with "Authorization: Bearer "+tok.AccessToken: 200 with the
//	// claims as JSON; a bad, expired or revoked token: 401 with error="invalid_token";
//	// under WithAPIScope(s), a token without s: 403 with error="insufficient_scope".
//
// A user's grant: register GrantTypes {authorization_code, refresh_token}
// and RedirectURIs, then p.Authorize(ctx, conf.AuthCodeURL(state,
// oauth2.S256ChallengeOption(verifier))) logs the user (SetUser, "alice"
// by default) in and returns the redirect with the code. The device grant:
// GET the verification_uri_complete, or p.ApproveDevice(userCode).
// As in OpenID Connect Core §11, a refresh token is issued only when the
// client asks for offline_access and is registered for refresh_token.
// Controls: SetAccessTokenLifetime, RevokeAccessTokens,
// RevokeRefreshTokens, DenyConsent, DenyDevice; APIRequests tells what the
// API answered.
package oidctest
