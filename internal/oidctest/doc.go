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
//   - zitadel's: discovery, the authorization, token, device authorization,
//     revocation, introspection, userinfo and keys endpoints; parsing client
//     credentials (the RFC 6749 §2.3.1 form-decoding of Basic credentials,
//     one method per request); PKCE checks; verifying private_key_jwt
//     assertions (signature, iss = sub, exp, iat, aud); signing tokens.
//   - ours (small, commented where it is): the storage, the login/consent
//     step (auto-approved), holding each client to the one authentication
//     method it registered (as real providers do), requiring PKCE S256,
//     refusing a replayed assertion jti, and the API.
package oidctest
