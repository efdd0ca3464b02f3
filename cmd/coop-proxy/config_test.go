package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	cfg, rest, err := loadConfig(newFlagSet(), []string{"--listen", "127.0.0.1:9999", "--refresh-margin=1m", "--no-browser"},
		map[string]string{envPrefix + "LISTEN": "127.0.0.1:7777", envPrefix + "REFRESH_MARGIN": "10m", envPrefix + "CLIENT_ID": "Brent's Lazy CRON Job"})
	if err != nil || len(rest) != 0 {
		t.Fatal(err, rest)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.RefreshMargin != time.Minute || !cfg.NoBrowser || cfg.ClientID != "Brent's Lazy CRON Job" {
		t.Fatalf("%+v", cfg)
	}
	if cfg.Upstream != "http://coop.apps.knpuniversity.com" || cfg.tokenURL() != "http://coop.apps.knpuniversity.com/token" {
		t.Fatalf("defaults: %s %s", cfg.Upstream, cfg.tokenURL())
	}
}

func TestEverySettingHasAMatchingFlagAndIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	ty := reflect.TypeOf(Config{})
	for i := range ty.NumField() {
		f := ty.Field(i)
		env := f.Tag.Get("env")
		if env == "" || f.Tag.Get("help") == "" {
			t.Errorf("%s lacks an env or help tag", f.Name)
		}
		if fl := f.Tag.Get("flag"); fl != "" && envOfFlag(fl) != env {
			t.Errorf("%s: flag --%s does not match %s", f.Name, fl, env)
		}
		if !bytes.Contains(readme, []byte("`"+envPrefix+env+"`")) {
			t.Errorf("README's settings table lacks %s%s", envPrefix, env)
		}
	}
}

func TestCommandLineMistakesAreOneLineAndNonZero(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(secret, []byte("s3cret-value"), 0o600)
	t.Setenv(envPrefix+"CLIENT_ID", "Brent's Lazy CRON Job")
	t.Setenv(envPrefix+"CLIENT_SECRET_FILE", secret)
	t.Setenv(envPrefix+"STORE", filepath.Join(t.TempDir(), "tokens.json"))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"serv"}, nil, `unknown command "serv"`},
		{"unknown flag", []string{"serve", "--lisen", "x"}, nil, "flag provided but not defined: -lisen"},
		{"bad duration flag", []string{"serve", "--refresh-margin", "soon"}, nil, `"soon" is not a duration`},
		{"bad duration env", []string{"token"}, map[string]string{envPrefix + "UPSTREAM_TIMEOUT": "forever"}, envPrefix + "UPSTREAM_TIMEOUT (--upstream-timeout)"},
		{"bad grant", []string{"token", "--grant", "password"}, nil, envPrefix + `GRANT (--grant): "password" is not client_credentials or authorization_code`},
		{"bad listen", []string{"serve", "--listen", "8080"}, nil, envPrefix + `LISTEN (--listen): "8080" is not host:port`},
		{"missing secret file", []string{"token", "--client-secret-file", "/nonexistent/secret"}, nil, "/nonexistent/secret"},
		{"bad upstream", []string{"token", "--upstream", "coop.apps.knpuniversity.com"}, nil, envPrefix + "UPSTREAM (--upstream)"},
		{"stray argument", []string{"status", "extra"}, nil, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code == 0 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 {
				t.Fatalf("exit %d, stderr %q; want one line with %q", code, stderr.String(), tt.want)
			}
			if strings.Contains(stderr.String(), "s3cret-value") {
				t.Fatal("the secret was printed")
			}
		})
	}
}

func TestCheckConfigListsEveryProblem(t *testing.T) {
	t.Setenv(envPrefix+"STORE", filepath.Join(t.TempDir(), "tokens.json"))
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config", "--grant", "password", "--auth-style", "header", "--log-format", "xml"}, &stdout, &stderr)
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if code == 0 || len(lines) != 5 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), stdout.String())
	}
	for i, want := range []string{"GRANT", "AUTH_STYLE", "CLIENT_ID", "no client secret", "LOG_FORMAT"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d does not mention %s:\n%s", i+1, want, stdout.String())
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--listen") || !strings.Contains(stdout.String(), envPrefix+"LISTEN") {
		t.Fatalf("serve --help: %d\n%s", code, stdout.String())
	}
	stdout.Reset()
	t.Setenv("HOME", "") // version needs no store, so no home directory
	t.Setenv("XDG_STATE_HOME", "")
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "coop-proxy ") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("version: %d %q", code, stdout.String())
	}
}
