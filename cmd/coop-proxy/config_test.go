package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

func TestEverySettingIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range config.Fields() {
		if !bytes.Contains(readme, []byte("`"+f.Env+"`")) {
			t.Errorf("README's settings table lacks %s", f.Env)
		}
	}
}

func TestCommandLineMistakesAreOneLineAndNonZero(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	_ = os.WriteFile(secret, []byte("s3cret-value"), 0o600)
	t.Setenv(config.EnvPrefix+"CLIENT_ID", "Brent's Lazy CRON Job")
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET_FILE", secret)
	t.Setenv(config.EnvPrefix+"STORE", filepath.Join(t.TempDir(), "tokens.json"))
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown command", []string{"serv"}, nil, `unknown command "serv"`},
		{"unknown flag", []string{"serve", "--lisen", "x"}, nil, "flag provided but not defined: -lisen"},
		{"bad duration flag", []string{"serve", "--refresh-margin", "soon"}, nil, `"soon" is not a duration`},
		{"bad duration env", []string{"token"}, map[string]string{config.EnvPrefix + "UPSTREAM_TIMEOUT": "forever"}, config.EnvPrefix + "UPSTREAM_TIMEOUT (--upstream-timeout)"},
		{"bad grant", []string{"token", "--grant", "password"}, nil, config.EnvPrefix + `GRANT (--grant): "password" is not client_credentials or authorization_code`},
		{"bad listen", []string{"serve", "--listen", "8080"}, nil, config.EnvPrefix + `LISTEN (--listen): "8080" is not host:port`},
		{"missing secret file", []string{"token", "--client-secret-file", "/nonexistent/secret"}, nil, "/nonexistent/secret"},
		{"bad upstream", []string{"token", "--upstream", "coop.apps.knpuniversity.com"}, nil, config.EnvPrefix + "UPSTREAM (--upstream)"},
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
	t.Setenv(config.EnvPrefix+"STORE", filepath.Join(t.TempDir(), "tokens.json"))
	var stdout, stderr bytes.Buffer
	code := run([]string{"check-config", "--grant", "password", "--auth-style", "header", "--log-format", "xml"}, &stdout, &stderr)
	out := stdout.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code == 0 || len(lines) != 5 {
		t.Fatalf("exit %d, %d lines:\n%s", code, len(lines), out)
	}
	for _, want := range []string{"GRANT", "AUTH_STYLE", "CLIENT_ID", "no client secret", "LOG_FORMAT"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("the output does not mention %s once:\n%s", want, out)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	t.Setenv(config.EnvPrefix+"CLIENT_SECRET", "s3cret-value")
	if code := run([]string{"serve", "--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("serve --help: %d\n%s", code, stdout.String())
	}
	for _, f := range config.Fields() {
		if !strings.Contains(stdout.String(), f.Env) || f.Flag != "" && !strings.Contains(stdout.String(), "--"+f.Flag) {
			t.Errorf("serve --help lacks %s", f.Env)
		}
	}
	if strings.Contains(stdout.String(), "s3cret-value") {
		t.Error("--help shows the secret")
	}
	stdout.Reset()
	t.Setenv("HOME", "") // version needs no store, so no home directory
	t.Setenv("XDG_STATE_HOME", "")
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "coop-proxy ") || !strings.Contains(stdout.String(), "go1.") {
		t.Fatalf("version: %d %q", code, stdout.String())
	}
}
