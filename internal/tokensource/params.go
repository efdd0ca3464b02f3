package tokensource

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/coop-proxy/coop-proxy/internal/tokenform"
)

// paramsTransport adds further parameters (RFC 8707 resource, audience,
// ...) to every token request (a POSTed form with a grant_type, RFC 6749
// §4.1.3, §4.4.2, §6). x/oauth2 has no way to add them to a refresh, so
// they are added on the way out, for the client-credentials grant, the
// refresh and login's code exchange alike. A parameter the request already
// carries is left as it is: what the grant sets is never overridden.
type paramsTransport struct {
	base   http.RoundTripper
	params url.Values
}

func (t paramsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !tokenform.Is(req) {
		return t.base.RoundTrip(req)
	}
	body, err := tokenform.Read(req)
	if err != nil {
		return nil, fmt.Errorf("reading the token request's form: %w", err)
	}
	form, err := url.ParseQuery(body)
	if err != nil || form.Get("grant_type") == "" {
		return t.base.RoundTrip(tokenform.WithBody(req, body))
	}
	for k, vs := range t.params {
		if _, set := form[k]; !set {
			form[k] = vs
		}
	}
	return t.base.RoundTrip(tokenform.WithBody(req, form.Encode()))
}

// WithParams returns a copy of c (from NewHTTPClient) whose token requests
// carry params as well; c itself when there are none.
func WithParams(c *http.Client, params url.Values) *http.Client {
	if len(params) == 0 {
		return c
	}
	nc := *c
	nc.Transport = paramsTransport{base: c.Transport, params: params}
	return &nc
}

// ParamsKey is the canonical form of params in a store key
// (tokenstore.Key.Params): names and each name's values sorted, so that
// the order they were given in does not matter; "" for none.
func ParamsKey(params url.Values) string {
	sorted := url.Values{}
	for k, vs := range params {
		vs = slices.Clone(vs)
		slices.Sort(vs)
		sorted[k] = slices.Compact(vs)
	}
	return sorted.Encode()
}
