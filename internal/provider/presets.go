package provider

import (
	"slices"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"
)

// Preset is a provider that publishes no metadata: its endpoints, from
// golang.org/x/oauth2/endpoints, and how its token endpoint takes the
// client credentials.
type Preset struct {
	Endpoint oauth2.Endpoint
	// AuthMethod is client_secret_post or client_secret_basic (the names
	// of RFC 8414 §2): what the provider documents for its token endpoint.
	AuthMethod string
}

// presets are the providers --provider knows. Providers that publish
// metadata (Microsoft Entra ID, Auth0, Okta, Keycloak) are reached with
// --issuer instead, which also tells their tenant's endpoints; Google and
// GitLab publish it too, and are here for users who know them by name.
var presets = map[string]Preset{
	"bitbucket": {endpoints.Bitbucket, "client_secret_basic"},
	"discord":   {endpoints.Discord, "client_secret_post"},
	"dropbox":   {endpoints.Dropbox, "client_secret_post"},
	"fitbit":    {endpoints.Fitbit, "client_secret_basic"},
	"github":    {endpoints.GitHub, "client_secret_post"},
	"gitlab":    {endpoints.GitLab, "client_secret_post"},
	"google":    {endpoints.Google, "client_secret_post"},
	"slack":     {endpoints.Slack, "client_secret_post"},
	"spotify":   {endpoints.Spotify, "client_secret_basic"},
	"twitch":    {endpoints.Twitch, "client_secret_post"},
}

// Lookup returns the preset named name.
func Lookup(name string) (Preset, bool) {
	p, ok := presets[name]
	return p, ok
}

// Names lists the presets' names, sorted, comma separated.
func Names() string {
	var names []string
	for n := range presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
