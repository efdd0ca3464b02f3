package redact

import (
	"strings"
	"testing"
)

// The names OAuth and OpenID give to methods, grants, errors and parameters
// are long enough to look like tokens, and must survive: an error
// description that names them is how a user learns what to change.
func TestTextKeepsOAuthWords(t *testing.T) {
	for _, text := range []string{
		"client must authenticate with client_secret_basic, not client_secret_post",
		"authorization_pending",
		"unsupported_grant_type: use client_credentials or authorization_code",
		"grant_type=urn:ietf:params:oauth:grant-type:device_code is not allowed",
		"client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
		"token_endpoint_auth_method private_key_jwt, self_signed_tls_client_auth or tls_client_auth",
		"Content-Type must be application/x-www-form-urlencoded",
		"grant_type=client_credentials",
		"insufficient_scope interaction_required unauthorized_client temporarily_unavailable",
		"code_challenge_method S256 required",
	} {
		if got := Text(text); got != text {
			t.Errorf("Text(%q) = %q", text, got)
		}
	}
}

// What could be a credential is still removed: long random strings in every
// encoding, JWTs, and the secrets the caller names, whatever they look like
// (a client secret made of words included).
func TestTextStillRemovesCredentials(t *testing.T) {
	const secret = "correct_horse_battery_staple"
	for _, tc := range []struct{ text, leak string }{
		{"token 834401f20deb9ba7ee94615b5ceedf1aba2187f1 refused", "834401f2"},
		{"refresh token Zk9xQ2hUeGt3c1Z6b0J5dFJpN0E refused", "Zk9xQ2hU"},
		{"refresh token 6b2c_Vq-0Jm8z1Qx3Lr4Tt9w refused", "6b2c_Vq"},
		{"refresh token abcdefghijklmnopqrstuvwx refused", "abcdefghijklmnop"}, // one part of 24 letters
		{"assertion eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJjIn0.MEUCIQDx refused", "eyJhbGci"},
		{"secret " + secret + " is wrong", secret},
		{"secret=" + secret, secret},
		{"client_secret_basic" + "Q2hUeGt3c1Z6b0J5", "Q2hUeGt3"}, // a word with a credential stuck to it
		{"grant_type=client_credentials&client_secret=Zk9xQ2hUeGt3c1Z6b0J5dFJpN0E", "Zk9xQ2hU"},
		{"session abcdefghij_KLMNOPQRSTUV refused", "KLMNOP"},
	} {
		got := Text(tc.text, secret)
		if strings.Contains(got, tc.leak) {
			t.Errorf("Text(%q) = %q: it keeps %q", tc.text, got, tc.leak)
		}
		if !strings.Contains(got, "[redacted]") {
			t.Errorf("Text(%q) = %q: nothing redacted", tc.text, got)
		}
	}
}
