package login

// The device authorization grant (RFC 8628), for `coop-proxy login
// --device` on a machine without a browser: the user opens the
// verification URI on any other device and enters the user code there,
// while coop-proxy polls the token endpoint.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

// ErrExpired means the device code expired before the user approved it
// (RFC 8628 §3.5 expired_token, or its expires_in passed, §3.2).
var ErrExpired = errors.New("the code expired before the login was approved: nothing was saved; run coop-proxy login --device again and enter the new code without delay")

// DeviceConfig is what one device login needs.
type DeviceConfig struct {
	// OAuth is the client: ClientID, ClientSecret (none for the styles
	// without a secret), Endpoint (DeviceAuthURL, TokenURL, AuthStyle) and
	// the Scopes asked for.
	OAuth oauth2.Config
	// AuthParams are further parameters of the device authorization
	// request (RFC 8707 resource, audience), as of login's authorization
	// request; nil for none.
	AuthParams url.Values
	// HTTPClient makes the device authorization request and the token
	// requests: it carries what client authentication a secret does not
	// (an assertion, a certificate) and the token request parameters. nil
	// means http.DefaultClient.
	HTTPClient *http.Client
	// Timeout bounds the wait for the approval; zero means DefaultTimeout.
	// The device code's own lifetime (expires_in) bounds it too.
	Timeout time.Duration
	// Out receives the verification URI, the user code and one line while
	// waiting; nil discards them. Tokens and the device code never go there.
	Out io.Writer
}

// Device runs the device authorization grant: it asks the device
// authorization endpoint for a user code (RFC 8628 §3.1), tells the user
// where to enter it (§3.3), and polls the token endpoint until the user
// approves, refuses, or the code expires (§3.4, §3.5).
//
// The errors to tell apart are ErrDenied, ErrExpired, ErrTimeout and
// *DeviceError; when ctx ends first (Ctrl-C), the error wraps ctx's error.
func Device(ctx context.Context, cfg DeviceConfig) (*Result, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	da, style, err := authorizeDevice(ctx, &cfg)
	if err != nil {
		return nil, err
	}

	wait := cfg.Timeout
	if !da.Expiry.IsZero() {
		wait = min(wait, time.Until(da.Expiry))
	}
	// RFC 8628 §3.3: the URI and the code; the complete URI, which holds
	// the code, where the server gives one (§3.3.1). Both come from the
	// server: kept to one printable line.
	fmt.Fprintf(cfg.Out, "To log in, open %s in a browser on any device and enter the code %s\n", oneLine(da.VerificationURI), oneLine(da.UserCode))
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(cfg.Out, "  or open %s (it holds the code)\n", oneLine(da.VerificationURIComplete))
	}
	fmt.Fprintf(cfg.Out, "Waiting for the approval, up to %s (Ctrl-C to stop)...\n", wait.Round(time.Second))

	// x/oauth2 polls as RFC 8628 §3.4-3.5 says: at the interval (5 s when
	// none is given), 5 s more for this and every later request after
	// slow_down, on through authorization_pending, and stops at
	// access_denied, expired_token, any other error, or when the code's
	// expires_in has passed. A poll that fails for the network or a 5xx
	// ends the login too (it does not retry; §3.5 asks only that a retry
	// slow down).
	waitCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conf := cfg.OAuth
	conf.Endpoint.AuthStyle = style
	tok, err := conf.DeviceAccessToken(context.WithValue(waitCtx, oauth2.HTTPClient, cfg.HTTPClient), da)
	if err != nil {
		return nil, pollError(ctx, waitCtx, &cfg, da, err)
	}
	return &Result{Token: tok, Scopes: tokensource.GrantedScopes(tok, cfg.OAuth.Scopes)}, nil
}

// authorizeDevice makes the device authorization request (RFC 8628 §3.1)
// and returns its answer (§3.2) and the auth style that worked.
//
// x/oauth2's Config.DeviceAuth sends the client id alone, but §3.1 has the
// client authenticate there as at the token endpoint (RFC 6749 §2.3), which
// a confidential client must; so the request is made here. With
// AuthStyleAutoDetect, Basic is tried, then the body once Basic is refused,
// and the style that worked is used for polling: x/oauth2 would otherwise
// send every poll twice while authorization is pending, which a server
// answers with slow_down.
func authorizeDevice(ctx context.Context, cfg *DeviceConfig) (*oauth2.DeviceAuthResponse, oauth2.AuthStyle, error) {
	styles := []oauth2.AuthStyle{cfg.OAuth.Endpoint.AuthStyle}
	if styles[0] == oauth2.AuthStyleAutoDetect {
		styles = []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams}
	}
	var err error
	for _, style := range styles {
		var da *oauth2.DeviceAuthResponse
		if da, err = requestDevice(ctx, cfg, style); err == nil {
			return da, style, nil
		}
		if _, refused := errors.AsType[*DeviceError](err); !refused {
			break // the network, not the style
		}
	}
	return nil, 0, err
}

// maxDeviceAnswer bounds what is read of the device authorization
// endpoint's answer: a few hundred bytes.
const maxDeviceAnswer = 1 << 20

// requestDevice is one device authorization request with the client's
// credentials as style says.
func requestDevice(ctx context.Context, cfg *DeviceConfig, style oauth2.AuthStyle) (*oauth2.DeviceAuthResponse, error) {
	c := &cfg.OAuth
	form := url.Values{}
	for k, vs := range cfg.AuthParams {
		form[k] = vs
	}
	if len(c.Scopes) > 0 {
		form.Set("scope", strings.Join(c.Scopes, " "))
	}
	basic := style == oauth2.AuthStyleInHeader && c.ClientSecret != ""
	if !basic {
		// RFC 8628 §3.1: client_id when the client does not authenticate
		// with Basic; RFC 6749 §2.3.1: the secret in the body.
		form.Set("client_id", c.ClientID)
		if c.ClientSecret != "" {
			form.Set("client_secret", c.ClientSecret)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint.DeviceAuthURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("the device authorization endpoint %q: %v", c.Endpoint.DeviceAuthURL, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: id and secret form-encoded before Basic.
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	}
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		// A url.Error names the address it failed on (a redirect's
		// Location too): only where and why are kept.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = fmt.Errorf("%s %s: %v", ue.Op, c.Endpoint.DeviceAuthURL, redact.Text(ue.Err.Error(), c.ClientSecret))
		}
		return nil, fmt.Errorf("asking the device authorization endpoint for a code: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDeviceAnswer))
	if err != nil {
		return nil, fmt.Errorf("reading the device authorization endpoint's answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK { // RFC 8628 §3.2: 200
		return nil, deviceEndpointError(resp, body, c.ClientSecret)
	}
	da := &oauth2.DeviceAuthResponse{} // its UnmarshalJSON turns expires_in into Expiry
	if err := json.Unmarshal(body, da); err != nil {
		return nil, &DeviceError{Endpoint: "device authorization endpoint", Description: "its answer is not the JSON of RFC 8628 §3.2"}
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return nil, &DeviceError{Endpoint: "device authorization endpoint", Description: "its answer lacks device_code, user_code or verification_uri (RFC 8628 §3.2)"}
	}
	return da, nil
}

// deviceEndpointError reads an error answer of the device authorization
// endpoint: RFC 6749 §5.2's JSON (RFC 8628 §3.2), or a form as some
// servers send.
func deviceEndpointError(resp *http.Response, body []byte, secret string) error {
	var e struct {
		Code        string `json:"error"`
		Description string `json:"error_description"`
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" || ct == "text/plain" {
		q, _ := url.ParseQuery(string(body))
		e.Code, e.Description = q.Get("error"), q.Get("error_description")
	} else {
		_ = json.Unmarshal(body, &e)
	}
	de := oauthDeviceError("device authorization endpoint", e.Code, e.Description, secret)
	if de.Code == "" {
		de.Description = "it answered " + redact.Text(resp.Status)
	}
	return de
}

// pollError turns what ended the polling into an error to show: ctx is
// the login's, waitCtx the one bounded by the timeout.
func pollError(ctx, waitCtx context.Context, cfg *DeviceConfig, da *oauth2.DeviceAuthResponse, err error) error {
	if re, ok := errors.AsType[*oauth2.RetrieveError](err); ok {
		switch re.ErrorCode { // RFC 8628 §3.5
		case "access_denied":
			return detailed(ErrDenied, "the login was refused on the provider's page (access_denied): nothing was saved; run coop-proxy login --device again and approve it")
		case "expired_token":
			return ErrExpired
		}
		de := oauthDeviceError("token endpoint", re.ErrorCode, re.ErrorDescription, cfg.OAuth.ClientSecret, da.DeviceCode)
		if de.Code == "" && re.Response != nil {
			de.Description = "it answered " + redact.Text(re.Response.Status)
		}
		return de
	}
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("login cancelled: %w", ctx.Err())
	case waitCtx.Err() != nil:
		return detailed(ErrTimeout, "no approval came within %s: nothing was saved; run coop-proxy login --device again (--login-timeout gives more time)", cfg.Timeout)
	case !da.Expiry.IsZero() && !time.Now().Before(da.Expiry):
		return ErrExpired // x/oauth2 stops polling at the code's expires_in
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = fmt.Errorf("%s %s: %v", ue.Op, cfg.OAuth.Endpoint.TokenURL, redact.Text(ue.Err.Error(), cfg.OAuth.ClientSecret, da.DeviceCode))
	}
	return fmt.Errorf("waiting for the approval at the token endpoint: %v", err)
}

// oauthDeviceError keeps of an OAuth error answer only a code RFC 6749
// defines and a cleaned description: a server can echo the request (the
// secret, the device code) in either.
func oauthDeviceError(endpoint, code, description string, sent ...string) *DeviceError {
	if !slices.Contains(oauthErrorCodes, code) {
		code = ""
	}
	return &DeviceError{Endpoint: endpoint, Code: code, Description: redact.Text(description, sent...)}
}

// DeviceError is an OAuth error of the device grant: the device
// authorization endpoint refused to give a code (RFC 8628 §3.2, with RFC
// 6749 §5.2's errors), or the token endpoint answered a poll with an error
// other than those of RFC 8628 §3.5. Code is empty when the endpoint
// failed without an OAuth error (an HTML page, a 500).
type DeviceError struct {
	Endpoint    string // "device authorization endpoint" or "token endpoint"
	Code        string // RFC 6749 "error", e.g. "unauthorized_client"
	Description string // "error_description", cleaned
}

func (e *DeviceError) Error() string {
	what := "the provider's " + e.Endpoint + " refused the device login"
	if e.Code != "" {
		what += ": " + oneLine(e.Code)
	}
	if e.Description != "" {
		what += " (" + oneLine(e.Description) + ")"
	}
	return what + ": " + e.advice()
}

func (e *DeviceError) advice() string {
	switch e.Code {
	case "invalid_client":
		return "check the client id and its credential (AUTH_STYLE and the secret or key file)"
	case "unauthorized_client", "unsupported_grant_type":
		return "the client may not use the device grant: allow it for the client on the provider"
	case "invalid_scope":
		return "ask only for scopes the client may have (--scopes)"
	default:
		return "run coop-proxy login --device again"
	}
}
