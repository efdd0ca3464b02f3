package tokensource

import (
	"math"
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestRecordFromTokenClampsExpiresIn(t *testing.T) {
	now := newClock().Now()
	year1759 := time.Date(1759, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		tok  *oauth2.Token
		want time.Duration // the lifetime recorded; 0: unknown (no expiry)
	}{
		{"an hour", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": 3600.0}), time.Hour},
		{"an hour, as a string", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": "3600"}), time.Hour},
		{"an hour, form-encoded", (&oauth2.Token{}).WithExtra(url.Values{"expires_in": {"3600"}}), time.Hour},
		{"absent: unknown", (&oauth2.Token{}).WithExtra(map[string]any{}), 0},
		{"absent from a form: unknown", (&oauth2.Token{}).WithExtra(url.Values{}), 0},
		{"negative", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": -100.0}), minLifetime},
		{"zero", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": 0.0}), minLifetime},
		{"one second", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": 1.0}), minLifetime},
		{"unparsable", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": "soon"}), minLifetime},
		{"not a number", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": true}), minLifetime},
		{"NaN", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": "NaN"}), minLifetime},
		{"overflowing time.Duration", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": 1e10}), maxLifetime},
		{"overflowing, as a string", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": "10000000000"}), maxLifetime},
		{"overflowing float64", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": "1e400"}), maxLifetime},
		{"overflowing int64", (&oauth2.Token{}).WithExtra(map[string]any{"expires_in": math.MaxFloat64}), maxLifetime},
		{"x/oauth2's own expiry ignored", (&oauth2.Token{Expiry: year1759}).WithExtra(map[string]any{"expires_in": 1e10}), maxLifetime},
		{"x/oauth2's ExpiresIn when there is no raw answer", &oauth2.Token{ExpiresIn: 3600, Expiry: year1759}, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := RecordFromToken(tt.tok, nil, now)
			if tt.want == 0 {
				if !rec.Expiry.IsZero() {
					t.Fatalf("expiry %v, want unknown", rec.Expiry)
				}
				return
			}
			if got := rec.Expiry.Sub(now); got != tt.want {
				t.Fatalf("lifetime %v, want %v", got, tt.want)
			}
			// Neither expired on arrival nor renewed on every request.
			rec.UpdatedAt = now
			if rec.Expiry.Add(-expirySkew).Before(now.Add(expirySkew)) || !renewAt(rec, now, 5*time.Minute).After(now.Add(10*time.Second)) {
				t.Fatalf("expiry %v, renewal at %v: unusable", rec.Expiry.Sub(now), renewAt(rec, now, 5*time.Minute).Sub(now))
			}
		})
	}
}
