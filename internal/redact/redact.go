// Package redact keeps secrets out of logs, error strings and panics.
//
// A token or client secret is never printed; when two of them must be told
// apart (in a log line, in `coop-proxy status`), their Fingerprint is.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
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

// Secret is a string that does not print itself. Its String, GoString and
// MarshalJSON (and so fmt's %v, %+v, %#v and zap's reflection encoder) all
// yield "[redacted]"; Reveal returns the value for the one place that needs it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the secret.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer without revealing the secret.
func (s Secret) GoString() string { return redacted }

// MarshalJSON writes "[redacted]".
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText writes "[redacted]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
