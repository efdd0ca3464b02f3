package oidctest

import (
	"context"
	"net/http"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// metadata serves the provider's one metadata document at every
// well-known URL the standards give its issuer, through zitadel's
// MetadataServer: RFC 8414 §3 /.well-known/oauth-authorization-server{path},
// RFC 8414 §5 /.well-known/openid-configuration{path}, and OpenID Connect
// Discovery §4 {path}/.well-known/openid-configuration. The document is
// the one zitadel's LegacyServer makes.
type metadata struct {
	op.UnimplementedMetadataServer
	s          *server
	issuerPath string // "" or "/a/b": the path of the issuer
}

// doc answers 404 for any other issuer's URL (RFC 8414 §3.3: a client
// must not get a document whose issuer differs from the one it asked for).
func (m *metadata) doc(ctx context.Context, r *op.Request[op.MetadataRequest]) (*op.Response, error) {
	if r.Data.IssuerPath != m.issuerPath {
		return nil, op.NewStatusError(oidc.ErrInvalidRequest().WithDescription("no such issuer"), http.StatusNotFound)
	}
	return m.s.Discovery(op.ContextWithIssuer(ctx, m.s.issuer), &op.Request[struct{}]{})
}

func (m *metadata) OpenIDConfiguration(ctx context.Context, r *op.Request[op.MetadataRequest]) (*op.Response, error) {
	return m.doc(ctx, r)
}

func (m *metadata) AuthorizationServerMetadata(ctx context.Context, r *op.Request[op.MetadataRequest]) (*op.Response, error) {
	return m.doc(ctx, r)
}
