package config

import (
	"reflect"
	"strings"

	"github.com/coop-proxy/coop-proxy/internal/provider"
)

// Values lists the fixed values the setting of a flag takes, for shell
// completion; nil when it takes any value.
func Values(flag string) []string {
	switch flag {
	case "grant":
		return []string{string(ClientCredentials), string(AuthorizationCode)}
	case "auth-style":
		out := make([]string, len(authStyles))
		for i, a := range authStyles {
			out[i] = string(a)
		}
		return out
	case "provider":
		return strings.Split(provider.Names(), ", ")
	case "log-level":
		return []string{"debug", "info", "warn", "error"}
	case "log-format":
		return []string{"json", "console"}
	}
	return nil
}

// IsBool reports whether the field is a switch (--dpop), which takes no
// value on the command line.
func (f Field) IsBool() bool { return f.kind == reflect.Bool }
