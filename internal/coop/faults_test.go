package coop

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTokenFaults(t *testing.T) {
	f := newFixture(t, false)
	form := creds(f.cron, "grant_type", "client_credentials")
	post := func(ctx context.Context) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.ts.URL+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return http.DefaultClient.Do(req)
	}

	t.Run("500 with an HTML page", func(t *testing.T) {
		f.s.SetTokenFault(Fault500)
		r := f.token(t, form)
		if r.status != http.StatusInternalServerError || strings.Contains(r.header.Get("Content-Type"), "json") || json.Valid([]byte(r.body)) {
			t.Errorf("%d %q %s", r.status, r.header.Get("Content-Type"), r.body)
		}
	})
	t.Run("hang until the client gives up", func(t *testing.T) {
		f.s.SetTokenFault(FaultHang)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		resp, err := post(ctx)
		if err == nil {
			resp.Body.Close()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v, want the deadline", err)
		}
	})
	t.Run("down: connection closed without a response", func(t *testing.T) {
		f.s.SetTokenFault(FaultDown)
		resp, err := post(context.Background())
		if err == nil {
			resp.Body.Close()
			t.Fatalf("got a response: %d", resp.StatusCode)
		}
	})
	t.Run("back to normal", func(t *testing.T) {
		f.s.SetTokenFault(FaultNone)
		wantTokens(t, f.token(t, form), "eggs-collect eggs-count", false)
	})

	var statuses []int
	for _, r := range f.s.TokenRequests() {
		if r.GrantType != "client_credentials" || r.ClientID != f.cron.ClientID {
			t.Errorf("recorded %+v", r)
		}
		statuses = append(statuses, r.Status)
	}
	if want := []int{500, 0, 0, 200}; !slices.Equal(statuses, want) {
		t.Errorf("recorded statuses %v, want %v", statuses, want)
	}
}

func TestFaultsLeaveTheFarmAPIAlone(t *testing.T) {
	f := newFixture(t, false)
	token := f.clientCredentials(t, f.cron, "")
	f.s.SetTokenFault(FaultDown)
	if r := f.api(t, http.MethodPost, "/api/1/eggs-count", token); r.status != http.StatusOK {
		t.Errorf("API under a token fault: %d %s", r.status, r.body)
	}
}

func TestRevokeToken(t *testing.T) {
	f := newFixture(t, false)
	access, refresh := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	kept, _ := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, false)
	f.s.RevokeToken(access)
	f.s.RevokeToken(refresh)

	r := f.api(t, http.MethodGet, "/api/me", access)
	if r.status != http.StatusUnauthorized || r.body != bearerBody("invalid_token", descInvalid) {
		t.Errorf("revoked access token: %d %s", r.status, r.body)
	}
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", refresh)), "invalid_grant", "Invalid refresh token")
	if r := f.api(t, http.MethodGet, "/api/me", kept); r.status != http.StatusOK {
		t.Errorf("another token: %d %s", r.status, r.body)
	}
}

func TestExpireAllTokens(t *testing.T) {
	f := newFixture(t, false)
	access, refresh := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	cron := f.clientCredentials(t, f.cron, "eggs-count")
	f.s.ExpireAllTokens()

	for _, token := range []string{access, cron} {
		r := f.api(t, http.MethodPost, "/api/1/eggs-count", token)
		if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != challenge("", "invalid_token", descExpired) {
			t.Errorf("expired token: %d %s %q", r.status, r.body, r.header.Get("WWW-Authenticate"))
		}
	}
	// Refresh tokens still work, and new access tokens are fresh.
	body := wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", refresh)), "profile", true)
	if r := f.api(t, http.MethodGet, "/api/me", body["access_token"].(string)); r.status != http.StatusOK {
		t.Errorf("token issued after ExpireAllTokens: %d %s", r.status, r.body)
	}
}

func TestRefreshTokenLive(t *testing.T) {
	f := newFixture(t, false)
	access, first := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	if !f.s.RefreshTokenLive(first) || f.s.RefreshTokenLive(access) || f.s.RefreshTokenLive("") {
		t.Fatal("only the refresh token just issued is live")
	}
	body := wantTokens(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", first)), "profile", true)
	second := body["refresh_token"].(string)
	if f.s.RefreshTokenLive(first) || !f.s.RefreshTokenLive(second) {
		t.Fatal("after a refresh the rotated token is live and the one used is not")
	}
	if !f.s.RefreshTokenLive(second) { // asking does not spend it
		t.Fatal("asking spent the token")
	}
	_, revoked := f.s.IssueToken(f.topCluck.ClientID, f.brent.ID, []string{"profile"}, true)
	f.s.RevokeToken(revoked)
	if f.s.RefreshTokenLive(revoked) {
		t.Fatal("a revoked refresh token is live")
	}
	f.clock.Advance(defaultRefreshTokenLifetime + time.Second)
	if f.s.RefreshTokenLive(second) {
		t.Fatal("an expired refresh token is live")
	}
	wantTokenError(t, f.token(t, creds(f.topCluck, "grant_type", "refresh_token", "refresh_token", second)), "invalid_grant", "Refresh token has expired")
}
