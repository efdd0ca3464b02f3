package clientauth

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokenform"
)

// AssertionTransport adds a fresh client assertion (RFC 7523 §2.2) to every
// form POST it carries: the requests of every grant to the token endpoint
// (client credentials, refresh, the code exchange of login), whichever
// x/oauth2 path made them. x/oauth2 is to send the client id in the form
// and no secret (AuthStyleInParams, an empty ClientSecret); this adds
// client_assertion_type and client_assertion. Other requests (login's GET
// of the authorization URL and of /api/me) pass as they are; an assertion
// is bound to the URL it is posted to (its aud) anyway.
type AssertionTransport struct {
	Base     http.RoundTripper
	Key      *Key
	KeyID    string // the header's kid; "" means the key's thumbprint
	ClientID string // iss and sub
	Audience string // aud; "" means the URL the request is posted to (OpenID Connect Core §9)
	Now      func() time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *AssertionTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !tokenform.Is(req) {
		return t.Base.RoundTrip(req)
	}
	body, err := tokenform.Read(req)
	if err != nil {
		return nil, fmt.Errorf("client assertion: reading the token request's form: %w", err)
	}
	form, err := url.ParseQuery(body)
	if err != nil {
		return nil, fmt.Errorf("client assertion: the token request's form does not parse: %w", err)
	}
	aud := t.Audience
	if aud == "" {
		aud = req.URL.String()
	}
	kid := t.KeyID
	if kid == "" {
		kid = t.Key.Thumbprint()
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	assertion, err := t.Key.Assertion(t.ClientID, aud, kid, now())
	if err != nil {
		return nil, fmt.Errorf("client assertion: signing: %w", err)
	}
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", assertion)
	return t.Base.RoundTrip(tokenform.WithBody(req, form.Encode()))
}
