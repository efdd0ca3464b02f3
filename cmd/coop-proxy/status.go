package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// statusJSON is `coop-proxy status --json`: a shape scripts may rely on
// (the README documents it). Fields are only ever added; Format changes
// if one is removed or changes meaning. Times are RFC 3339 in UTC; absent
// ones are omitted. No token is ever in it, only fingerprints.
type statusJSON struct {
	Format int           `json:"format"` // 1
	Routes []routeStatus `json:"routes"`
}

// routeStatus is one route's grant.
type routeStatus struct {
	Route         string       `json:"route"`
	Store         string       `json:"store"`   // the token file
	Backend       string       `json:"backend"` // tokenstore.Info.Backend: "file /path"
	Grant         string       `json:"grant"`
	ClientID      string       `json:"client_id"`
	Issuer        string       `json:"issuer,omitempty"`
	TokenURL      string       `json:"token_url,omitempty"`
	TokenURLError string       `json:"token_url_error,omitempty"` // why the token URL is unknown
	Stored        bool         `json:"stored"`                    // the store holds this route's grant
	Farmer        *farmer      `json:"farmer,omitempty"`
	Scopes        []string     `json:"scopes,omitempty"`
	AccessToken   *tokenStatus `json:"access_token,omitempty"`
	RefreshToken  *tokenStatus `json:"refresh_token,omitempty"`
	DPoPJKT       string       `json:"dpop_jkt,omitempty"`
	// DPoPKey is where the DPoP key is: "store" (generated, kept with the
	// grant) or "key_file".
	DPoPKey    string     `json:"dpop_key,omitempty"`
	GrantedAt  *time.Time `json:"granted_at,omitempty"`
	WrittenAt  *time.Time `json:"written_at,omitempty"`
	Writer     string     `json:"writer,omitempty"`
	LockHolder string     `json:"lock_holder,omitempty"`
	// OtherGrants are the keys of the grants the store holds when this
	// route's is not there (other settings stored them).
	OtherGrants []string `json:"other_grants,omitempty"`
	// Error says why the route's store could not be read (one line, no
	// secret); the fields before it are what is known all the same.
	Error string `json:"error,omitempty"`
}

type farmer struct {
	Email string `json:"email"`
	ID    int64  `json:"id"`
}

// tokenStatus is a token shown by its fingerprint (redact.Fingerprint).
type tokenStatus struct {
	Fingerprint string     `json:"fingerprint"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"` // access token only; absent: no expiry given
	// ExpiresIn is the seconds left (negative once expired).
	ExpiresIn *int64 `json:"expires_in,omitempty"`
}

// runStatus shows what the store holds for each route (the one --route
// names, else all of them); never a token.
func runStatus(ctx context.Context, inv *invocation) error {
	s := inv.settings
	routes := s.AllRoutes()
	if s.RouteName != "" || s.Config == "" {
		routes = []config.Route{s.Route}
	}
	out := statusJSON{Format: 1}
	var failed []error
	for i := range routes {
		rs, err := routeState(ctx, s, &routes[i])
		if err != nil {
			err = s.InRoute(routes[i].Name, err)
			if len(routes) == 1 && !inv.json {
				return err // the one line says it all
			}
			rs.Error = err.Error()
			failed = append(failed, err)
		}
		out.Routes = append(out.Routes, rs)
	}
	if inv.json {
		enc := json.NewEncoder(inv.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		now := time.Now()
		for i, rs := range out.Routes {
			if i > 0 {
				fmt.Fprintln(inv.out)
			}
			printStatus(inv.out, &rs, &routes[i], s.Config != "", now)
		}
	}
	// A route that could not be read does not hide the others, and still
	// ends status with an error (exit 1).
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0]
	}
	return fmt.Errorf("the stores of %d routes could not be read (see each route's error)", len(failed))
}

// routeState reads the route's grant from its store.
func routeState(ctx context.Context, s *config.Settings, r *config.Route) (routeStatus, error) {
	log, flush := quietLogger()
	defer flush()
	key := server.StoreKey(r)
	rs := routeStatus{Route: r.Name, Grant: string(r.Grant), ClientID: r.ClientID, Issuer: r.Issuer}
	st, err := server.OpenBackend(ctx, s, key, log, nil)
	if err != nil {
		return rs, err
	}
	defer st.Close()
	rs.Store = server.StoreName(st)
	ectx, cancel := context.WithTimeout(ctx, 5*time.Second) // an issuer's metadata; status is a quick look
	if ep, err := server.Endpoints(ectx, r); err != nil {
		rs.TokenURLError = err.Error()
	} else {
		rs.TokenURL = ep.TokenURL
	}
	cancel()
	info, err := st.Info(ctx, key)
	if err != nil {
		return rs, err
	}
	rs.Backend, rs.Writer, rs.LockHolder = info.Backend, info.Writer, info.LockHolder
	rec, ok, err := st.Load(ctx, key)
	if err != nil {
		return rs, err
	}
	if !ok {
		// Other grants there often mean other settings (grant, scopes, URL).
		rs.OtherGrants, err = st.Keys(ctx)
		return rs, err
	}
	rs.Stored = true
	if rec.Email != "" || rec.UserID != 0 {
		rs.Farmer = &farmer{Email: rec.Email, ID: rec.UserID}
	}
	rs.Scopes = rec.Scopes
	rs.AccessToken = &tokenStatus{Fingerprint: redact.Fingerprint(rec.AccessToken)}
	if !rec.Expiry.IsZero() {
		at := rec.Expiry.UTC()
		in := int64(time.Until(at) / time.Second)
		rs.AccessToken.ExpiresAt, rs.AccessToken.ExpiresIn = &at, &in
	}
	if rec.RefreshToken != "" {
		rs.RefreshToken = &tokenStatus{Fingerprint: redact.Fingerprint(rec.RefreshToken)}
	}
	rs.DPoPJKT = rec.DPoPJKT
	rs.GrantedAt = utcOrNil(rec.GrantedAt)
	rs.WrittenAt = utcOrNil(info.WrittenAt)
	if rs.DPoPJKT != "" {
		rs.DPoPKey = "store"
		if len(rec.DPoPKey) == 0 {
			rs.DPoPKey = "key_file"
		}
	}
	return rs, nil
}

func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// printStatus writes one route's status for a person: a key and its value
// a line, the values aligned, times left in words.
func printStatus(w io.Writer, rs *routeStatus, r *config.Route, withRoute bool, now time.Time) {
	p := func(k, v string) { fmt.Fprintf(w, "%-15s %s\n", k+":", v) }
	if withRoute {
		p("route", rs.Route)
	}
	if rs.Backend != "" {
		p("store", rs.Backend)
	}
	p("grant", rs.Grant)
	p("client id", rs.ClientID)
	if rs.Issuer != "" {
		p("issuer", rs.Issuer)
	}
	if rs.Error != "" {
		p("error", rs.Error)
		return
	}
	if rs.TokenURLError != "" {
		p("token url", "unknown ("+rs.TokenURLError+")")
	} else {
		p("token url", rs.TokenURL)
	}
	if !rs.Stored {
		if r.Grant == config.AuthorizationCode {
			p("state", "no farmer logged in: run `coop-proxy login`")
		} else {
			p("state", "no token stored yet (serve or token fetches one)")
		}
		for _, k := range rs.OtherGrants {
			p("stored", k)
		}
		return
	}
	if rs.Farmer != nil {
		p("farmer", fmt.Sprintf("%s (id %d)", rs.Farmer.Email, rs.Farmer.ID))
	}
	p("scopes", strings.Join(rs.Scopes, " "))
	at := rs.AccessToken
	switch {
	case at.ExpiresAt == nil:
		p("access token", at.Fingerprint+", no expiry given")
	case now.After(*at.ExpiresAt):
		p("access token", fmt.Sprintf("%s, expired %s ago (%s)", at.Fingerprint, inWords(now.Sub(*at.ExpiresAt)), at.ExpiresAt.Local().Format(time.RFC3339)))
	default:
		p("access token", fmt.Sprintf("%s, expires in %s (%s)", at.Fingerprint, inWords(at.ExpiresAt.Sub(now)), at.ExpiresAt.Local().Format(time.RFC3339)))
	}
	if rs.RefreshToken != nil {
		p("refresh token", "held ("+rs.RefreshToken.Fingerprint+")")
	} else if r.Grant == config.AuthorizationCode {
		p("refresh token", "none: log in again when the access token expires")
	}
	if rs.DPoPJKT != "" {
		where := "kept with the grant in the store"
		if rs.DPoPKey == "key_file" {
			where = "from the key file"
		}
		p("DPoP key", fmt.Sprintf("%s (RFC 7638 thumbprint), %s", rs.DPoPJKT, where))
	}
	if rs.GrantedAt != nil {
		p("granted", fmt.Sprintf("%s ago (%s)", inWords(now.Sub(*rs.GrantedAt)), rs.GrantedAt.Local().Format(time.RFC3339)))
	}
	if rs.WrittenAt != nil {
		written := fmt.Sprintf("%s ago (%s)", inWords(now.Sub(*rs.WrittenAt)), rs.WrittenAt.Local().Format(time.RFC3339))
		if rs.Writer != "" {
			written += " by " + rs.Writer
		}
		p("last written", written)
	}
	if rs.LockHolder != "" {
		p("lock held by", rs.LockHolder)
	}
}

// inWords says a duration as a person would, to the unit that matters:
// "45 seconds", "1 minute", "42 minutes", "3 hours 5 minutes", "2 days".
func inWords(d time.Duration) string {
	d = d.Abs()
	n := func(v int64, unit string) string {
		if v == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", v, unit)
	}
	switch {
	case d < time.Minute:
		return n(int64(d/time.Second), "second")
	case d < time.Hour:
		return n(int64(d/time.Minute), "minute")
	case d < 48*time.Hour:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if m == 0 {
			return n(h, "hour")
		}
		return n(h, "hour") + " " + n(m, "minute")
	}
	return n(int64(d/(24*time.Hour)), "day")
}
