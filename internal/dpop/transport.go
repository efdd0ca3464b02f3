package dpop

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/tokenform"
)

// TokenTransport adds a DPoP proof (RFC 9449 §5) to every token request
// (a POSTed form: client credentials, refresh, login's code exchange) made
// with a context carrying a key (WithKey); other requests pass as they
// are. When the token endpoint asks for a nonce (§8: 400 use_dpop_nonce
// with a DPoP-Nonce header), the request is sent once more with it.
//
// It sits above the client authentication (clientauth.AssertionTransport),
// so that a request sent again carries a fresh client assertion too.
type TokenTransport struct {
	Base   http.RoundTripper
	Nonces Nonces // the token endpoint's, by origin
	Now    func() time.Time
}

// maxAnswer bounds what is read of a 400 answer checked for
// use_dpop_nonce.
const maxAnswer = 1 << 20

// RoundTrip implements http.RoundTripper.
func (t *TokenTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key := KeyFrom(req.Context())
	if key == nil || !tokenform.Is(req) {
		return t.Base.RoundTrip(req)
	}
	body, err := tokenform.Read(req)
	if err != nil {
		return nil, fmt.Errorf("DPoP: reading the token request's form: %w", err)
	}
	htu := HTU(req.URL)
	for try := 0; ; try++ {
		proof, err := key.Proof(http.MethodPost, htu, "", t.Nonces.Get(req.URL), now(t.Now))
		if err != nil {
			return nil, fmt.Errorf("DPoP: signing the proof: %w", err)
		}
		out := tokenform.WithBody(req, body)
		out.Header.Set("DPoP", proof)
		resp, err := t.Base.RoundTrip(out)
		if err != nil {
			return nil, err
		}
		given := t.Nonces.Observe(req.URL, resp.Header)
		if try > 0 || !given || resp.StatusCode != http.StatusBadRequest {
			return resp, nil
		}
		if resp, asked := useNonce(resp); !asked {
			return resp, nil
		}
		// §8: asked for a nonce, and given one: send it once more.
	}
}

// useNonce reports whether a 400 answer of the token endpoint is RFC 9449
// §8's use_dpop_nonce error; when it is not, it returns the answer with
// its body whole again for x/oauth2 to read.
func useNonce(resp *http.Response) (*http.Response, bool) {
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return resp, false
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if err == nil && json.Unmarshal(b, &e) == nil && e.Error == "use_dpop_nonce" {
		return nil, true
	}
	resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), errReader{err}))
	return resp, false
}

// errReader fails with err, or ends with io.EOF when err is nil.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	return 0, io.EOF
}

func now(f func() time.Time) time.Time {
	if f == nil {
		return time.Now()
	}
	return f()
}
