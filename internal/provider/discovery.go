// Package provider knows authorization servers other than COOP: it reads an
// issuer's metadata (RFC 8414, OpenID Connect Discovery 1.0) and holds the
// presets of providers that publish none.
package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Metadata is what coop-proxy reads of an authorization server's metadata
// (RFC 8414 §2; OpenID Connect Discovery 1.0 §3 uses the same names).
type Metadata struct {
	Issuer                      string `json:"issuer"`
	TokenEndpoint               string `json:"token_endpoint"`
	AuthorizationEndpoint       string `json:"authorization_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"` // RFC 8628 §4
	// TokenEndpointAuthMethodsSupported: when empty, RFC 8414 §2 says the
	// default is client_secret_basic; coop-proxy checks only a list given.
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	// MTLSEndpointAliases are the endpoints to use with a client
	// certificate (RFC 8705 §5), for mutual-TLS client authentication.
	MTLSEndpointAliases map[string]string `json:"mtls_endpoint_aliases"`
	// DPoPSigningAlgValuesSupported are the algorithms the provider takes
	// DPoP proofs in (RFC 9449 §5.1); present only when it supports DPoP.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported"`
}

// maxDocument bounds what is read of a metadata document; real ones are a
// few KiB.
const maxDocument = 512 << 10

// fetchTimeout bounds one request for the metadata.
const fetchTimeout = 30 * time.Second

// NewHTTPClient returns the client metadata is fetched with. As for the
// token endpoint, a redirect is never followed (the document decides where
// the client secret is sent, so it comes from the issuer's own address) and
// no HTTP_PROXY from the environment is used.
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	return &http.Client{Transport: tr, Timeout: fetchTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // answered as a non-200 below
	}}
}

// DocumentError is a metadata document that was read but cannot be used
// (its issuer is another, an endpoint is no URL): fetching it again will
// not mend it.
type DocumentError struct {
	URL    string
	Reason string
}

func (e *DocumentError) Error() string { return e.URL + ": " + e.Reason }

// MetadataURLs are where an issuer's metadata is looked for, in order:
// RFC 8414 §3.1 inserts the well-known path between the host and the
// issuer's path (its terminating "/" removed); OpenID Connect Discovery
// 1.0 §4 appends it to the issuer.
func MetadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	origin, path := u.Scheme+"://"+u.Host, strings.TrimSuffix(u.EscapedPath(), "/")
	return []string{origin + "/.well-known/oauth-authorization-server" + path, origin + path + "/.well-known/openid-configuration"}, nil
}

// Fetch reads the issuer's metadata: RFC 8414's document, else OpenID
// Connect's. The document's issuer must equal the one asked for exactly
// (RFC 8414 §3.3, OpenID Connect Discovery §4.3), which stops a document
// served for one issuer from steering a client to another's endpoints. A
// document that fails that is not used, but the other address is still
// tried (some hosts answer RFC 8414's address with their root issuer's
// document, whatever the path inserted); when it has no usable document
// either, the first *DocumentError is the answer.
func Fetch(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	urls, err := MetadataURLs(issuer)
	if err != nil {
		return nil, err
	}
	var errs []error
	var refused error
	for _, u := range urls {
		md, err := fetchOne(ctx, client, u, issuer)
		if err == nil {
			return md, nil
		}
		if _, ok := errors.AsType[*DocumentError](err); ok && refused == nil {
			refused = err
		}
		errs = append(errs, err)
	}
	if refused != nil {
		return nil, refused
	}
	return nil, fmt.Errorf("no metadata for issuer %s: %w", issuer, errors.Join(errs...))
}

func fetchOne(ctx context.Context, client *http.Client, u, issuer string) (*Metadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is said once, below
		}
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK { // RFC 8414 §3.2: 200 and the document
		return nil, fmt.Errorf("%s: HTTP %d", u, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	if len(body) > maxDocument {
		return nil, &DocumentError{u, fmt.Sprintf("larger than %d KiB, not a metadata document", maxDocument>>10)}
	}
	var md Metadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("%s: not a JSON metadata document", u)
	}
	if md.Issuer != issuer {
		return nil, &DocumentError{u, fmt.Sprintf("the document is for issuer %q, not %q (RFC 8414 §3.3): set COOP_PROXY_ISSUER to the issuer exactly as the provider names it", shorten(md.Issuer), issuer)}
	}
	for name, e := range map[string]string{"token_endpoint": md.TokenEndpoint, "authorization_endpoint": md.AuthorizationEndpoint,
		"device_authorization_endpoint": md.DeviceAuthorizationEndpoint, "mtls_endpoint_aliases.token_endpoint": md.MTLSEndpointAliases["token_endpoint"],
		"mtls_endpoint_aliases.device_authorization_endpoint": md.MTLSEndpointAliases["device_authorization_endpoint"]} {
		if e != "" && CheckURL(e) != nil {
			return nil, &DocumentError{u, fmt.Sprintf("%s %q: %v", name, shorten(e), CheckURL(e))}
		}
	}
	return &md, nil
}

// CheckURL accepts an https URL, or an http one on a loopback host (a
// provider on the same machine, as in tests); RFC 8414 §2 wants https for
// an issuer, and RFC 6749 §3.2 TLS for the token endpoint, whose requests
// carry the client secret. No fragment (RFC 6749 §3.1, §3.2).
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		return errors.New("not an absolute URL with a host")
	case u.Fragment != "" || strings.Contains(s, "#"):
		return errors.New("must not carry a fragment")
	case u.User != nil:
		return errors.New("must not carry credentials")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopback(u.Hostname()):
		return nil
	}
	return errors.New("not https (plain http only on a loopback host)")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// shorten keeps text from a document short and printable in a message,
// and a URL's password out of it.
func shorten(s string) string {
	if u, err := url.Parse(s); err == nil && u.User != nil {
		s = u.Redacted()
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// Discovery holds one issuer's metadata once fetched: the document is read
// once per process (an issuer's endpoints do not move under a running
// client). Safe for use by many goroutines.
type Discovery struct {
	issuer   string
	client   *http.Client
	fetching chan struct{} // held across a fetch: one at a time

	mu       sync.Mutex // guards the fields below; never held across a fetch
	doc      *Metadata
	err      error
	attempts int
}

// NewDiscovery returns the Discovery of issuer; client nil: NewHTTPClient().
func NewDiscovery(issuer string, client *http.Client) *Discovery {
	if client == nil {
		client = NewHTTPClient()
	}
	return &Discovery{issuer: issuer, client: client, fetching: make(chan struct{}, 1)}
}

// Issuer is the issuer whose metadata d reads.
func (d *Discovery) Issuer() string { return d.issuer }

// Metadata returns the document, fetching it when it is not held yet.
// Callers that waited while another fetched share that fetch's failure
// instead of asking again at once.
func (d *Discovery) Metadata(ctx context.Context) (*Metadata, error) {
	d.mu.Lock()
	doc, seen := d.doc, d.attempts
	d.mu.Unlock()
	if doc != nil {
		return doc, nil
	}
	select {
	case d.fetching <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-d.fetching }()
	d.mu.Lock()
	doc, attempts, err := d.doc, d.attempts, d.err
	d.mu.Unlock()
	if doc != nil || attempts != seen {
		return doc, err
	}
	doc, err = Fetch(ctx, d.client, d.issuer)
	d.mu.Lock()
	d.doc, d.err = doc, err
	d.attempts++
	d.mu.Unlock()
	return doc, err
}

// Wait fetches the metadata until it has it, a document that cannot be
// used is read (a *DocumentError), or ctx ends. Between failures it waits
// 1 s, doubling up to 1 min, each wait drawn at random from its upper half
// so that many clients of one provider spread out; failed is told of each
// failure and the wait.
func (d *Discovery) Wait(ctx context.Context, failed func(err error, wait time.Duration)) (*Metadata, error) {
	wait := time.Second
	for {
		md, err := d.Metadata(ctx)
		if _, ok := errors.AsType[*DocumentError](err); err == nil || ok {
			return md, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		jittered := wait/2 + rand.N(wait/2+1)
		failed(err, jittered)
		t := time.NewTimer(jittered)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, time.Minute)
	}
}
