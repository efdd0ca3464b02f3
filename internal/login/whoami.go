package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// APIError is a failure answered by COOP's API to WhoAmI: a non-200 status,
// or (a COOP quirk) a 200 carrying an OAuth error.
type APIError struct {
	Status      int    // HTTP status
	Code        string // "error", e.g. "invalid_token" or "insufficient_scope"
	Description string // "error_description" (or COOP's "error_message")
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("COOP's /api/me answered %d", e.Status)
	if e.Code != "" {
		msg += " " + oneLine(e.Code)
	}
	if e.Description != "" {
		msg += " (" + oneLine(e.Description) + ")"
	}
	switch e.Code {
	case "insufficient_scope":
		return msg + ": log in again asking for the profile scope"
	case "invalid_token", "access_denied":
		return msg + ": run coop-proxy login again"
	default:
		return msg + ": check the API address and that COOP is up"
	}
}

// WhoAmI calls GET <apiBase>/api/me with the bearer token (RFC 6750 §2.1)
// and returns the farmer's id and email. The token needs the profile scope.
// A nil client means http.DefaultClient. COOP's answers with an error are
// an *APIError.
func WhoAmI(ctx context.Context, client *http.Client, apiBase string, accessToken string) (id int64, email string, err error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(apiBase, "/")+"/api/me", nil)
	if err != nil {
		return 0, "", fmt.Errorf("asking COOP who logged in: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("asking COOP who logged in: %w", err)
	}
	defer resp.Body.Close()

	var body struct {
		ID          int64  `json:"id"`
		Email       string `json:"email"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"error_message"` // COOP's word for it on ownership errors
	}
	decodeErr := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
	if resp.StatusCode != http.StatusOK || body.Error != "" {
		desc := body.Description
		if desc == "" {
			desc = body.Message
		}
		return 0, "", &APIError{Status: resp.StatusCode, Code: body.Error, Description: desc}
	}
	if decodeErr != nil {
		return 0, "", fmt.Errorf("COOP's /api/me answered something other than a farmer: %w", decodeErr)
	}
	if body.ID == 0 || body.Email == "" {
		return 0, "", errors.New("COOP's /api/me answered no farmer id or email")
	}
	return body.ID, body.Email, nil
}
