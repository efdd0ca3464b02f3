package oidctest

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// server is zitadel's LegacyServer with one method replaced: VerifyClient,
// the client authentication at the token, device authorization and
// revocation endpoints. zitadel's own version (v3.52) lets any
// client_secret client use Basic or the body, and for the
// client_credentials grant it asks only for a secret, so a
// private_key_jwt client cannot use that grant at all. Real providers hold
// a client to the method it registered (RFC 7591 §2,
// token_endpoint_auth_method), and that is what tests of coop-proxy's
// AUTH_STYLE need to see.
type server struct {
	*op.LegacyServer
	provider *op.Provider
	storage  *storage
	issuer   string
	tokenURL string
}

// VerifyClient: zitadel has already parsed the credentials (Basic
// form-decoded, RFC 6749 §2.3.1, and refused two methods in one request,
// §2.3); here the method used must be the client's, and the credential
// must be right.
func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	c, err := s.verifyClient(ctx, r)
	if err != nil {
		// RFC 6749 §5.2: invalid_client may be 401, and must be when the
		// client used the Authorization header; zitadel answers 400.
		return nil, op.NewStatusError(err, http.StatusUnauthorized)
	}
	return c, nil
}

func (s *server) verifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	cc := r.Data
	var used string
	switch {
	case cc.ClientAssertion != "":
		return s.verifyAssertion(ctx, cc)
	case strings.HasPrefix(strings.ToLower(r.Header.Get("Authorization")), "basic "):
		used = ClientSecretBasic
	case cc.ClientSecret != "":
		used = ClientSecretPost
	default:
		used = None
	}
	c, ok := s.storage.client(cc.ClientID)
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	if c.Client.AuthMethod != used {
		return nil, oidc.ErrInvalidClient().WithDescription("client must authenticate with %s, not %s", c.Client.AuthMethod, used)
	}
	if used == None {
		return c, nil // a public client: zitadel then requires PKCE and refuses client_credentials
	}
	if err := s.storage.AuthorizeClientIDSecret(ctx, cc.ClientID, cc.ClientSecret); err != nil {
		return nil, oidc.ErrInvalidClient().WithDescription("invalid client credentials")
	}
	return c, nil
}

// verifyAssertion is private_key_jwt (RFC 7523 §2.2, §3): zitadel's
// VerifyJWTAssertion checks the signature with the client's registered
// key, iss = sub, exp, iat and aud. zitadel takes only its issuer as aud;
// OpenID Connect Core §9 says aud SHOULD be the token endpoint URL, and
// RFC 7523 §3 allows that too, so either is accepted here.
func (s *server) verifyAssertion(ctx context.Context, cc *op.ClientCredentials) (op.Client, error) {
	var req *oidc.JWTTokenRequest
	var err error
	for _, aud := range []string{s.issuer, s.tokenURL} {
		v := op.NewJWTProfileVerifier(s.storage, aud, time.Hour, time.Second)
		if req, err = op.VerifyJWTAssertion(ctx, cc.ClientAssertion, v); err == nil {
			break
		}
	}
	if err != nil {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion invalid").WithParent(err)
	}
	if cc.ClientID != "" && cc.ClientID != req.Issuer {
		return nil, oidc.ErrInvalidClient().WithDescription("client_id is not the assertion's issuer")
	}
	c, ok := s.storage.client(req.Issuer)
	if !ok || c.Client.AuthMethod != PrivateKeyJWT {
		return nil, oidc.ErrInvalidClient().WithDescription("client is not registered for private_key_jwt")
	}
	if !s.storage.useJTI(req.JWTID, req.ExpiresAt.AsTime()) {
		return nil, oidc.ErrInvalidClient().WithDescription("client assertion jti missing or used before")
	}
	return c, nil
}
