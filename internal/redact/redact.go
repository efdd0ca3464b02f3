// Package redact keeps secrets out of logs, error strings and panics.
//
// A token or client secret is never printed; when two of them must be told
// apart (in a log line, in `coop-proxy status`), their Fingerprint is.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Fingerprint returns a short, non-reversible identifier of a secret: the
// first 8 hex digits of its SHA-256, prefixed "sha256:". An empty secret gives "".
func Fingerprint(secret string) string {
	if secret == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(secret))
	return "sha256:" + hex.EncodeToString(sum[:4])
}

// Secret is a string that does not print itself. Its Format (every fmt verb:
// %v, %s, %q, %x, %d...), String, GoString, MarshalJSON and MarshalText all
// yield "[redacted]"; Reveal returns the value for the one place that needs it.
// The one exception is %p, which fmt handles before any method: it is not a
// verb for strings, and fmt's "%!p(...)" text then shows the raw value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the secret.
func (s Secret) String() string { return redacted }

// Format implements fmt.Formatter: whatever the verb, flags, width or
// precision, fmt prints "[redacted]" (without it, %x and %d would print the
// value's bytes, as fmt does for any string kind).
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// GoString implements fmt.GoStringer without revealing the secret.
func (s Secret) GoString() string { return redacted }

// MarshalJSON writes "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText writes "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// maxText bounds what Text keeps.
const maxText = 120

// tokenLike matches what could be a credential: a run of 16 or more of the
// characters tokens, secrets and their base64 and form encodings are made
// of (hex, base64, base64url, percent-encoding).
// It and word are compiled on first use, on an error's way out: what a
// package's initialization leaves on the heap, every collection scans.
var tokenLike = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[A-Za-z0-9_~+/=%-]{16,}`) })

// word is a name as OAuth and OpenID write theirs, lowercase letters in
// parts of at most 15 joined by "_" or "-" (client_secret_basic,
// authorization_pending, client-assertion-type, x-www-form-urlencoded).
var word = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z]{1,15}([_-][a-z]{1,15})*$`) })

// wordy reports whether a token-like run is made of words, such as
// "client_secret_basic" or "grant_type=client_credentials", and not a
// credential: split at "=", "/" and "+", every part is a word. A part of
// 16 letters or more, any digit or capital letter, a repeated separator
// is not: hex and base64 tokens, JWTs and random secrets hold those
// (a random base64url run of 16 characters is all lowercase letters and
// separators about twice in a million; one of 32, 3 times in 10^12). Secrets known
// to the caller are removed before, whatever they look like.
func wordy(run string) bool {
	parts := strings.FieldsFunc(run, func(r rune) bool { return r == '=' || r == '/' || r == '+' })
	for _, part := range parts {
		if !word().MatchString(part) {
			return false
		}
	}
	return len(parts) > 0
}

// Text returns a short printable form of text that came from outside (an
// authorization server's error_description, a host name), fit for a log
// line, an error or an answer: every value in secrets (as given and
// form-encoded) and every token-like run but one made of words (wordy) is
// replaced by "[redacted]", and only the characters RFC 6749 §5.2 allows
// in an error_description are kept (printable ASCII but `"` and `\`), on one line of at most 120.
func Text(text string, secrets ...string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, redacted)
			text = strings.ReplaceAll(text, url.QueryEscape(s), redacted)
		}
	}
	text = tokenLike().ReplaceAllStringFunc(text, func(run string) string {
		if wordy(run) {
			return run
		}
		return redacted
	})
	text = strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return ' '
		}
		return r
	}, text)
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > maxText {
		text = text[:maxText] + "..."
	}
	return text
}
