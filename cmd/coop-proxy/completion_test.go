package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"completion", shell}, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
		t.Fatalf("completion %s: exit %d, %s", shell, code, stderr.String())
	}
	return stdout.String()
}

// scriptWithRoutes writes shell's script to a file and a configuration
// file with the routes eggs and farmer (COOP_PROXY_CONFIG).
func scriptWithRoutes(t *testing.T, shell string) string {
	t.Helper()
	newFarm(t).routesFile(t, "")
	script := filepath.Join(t.TempDir(), "coop-proxy."+shell)
	if err := os.WriteFile(script, []byte(completionScript(t, shell)), 0o600); err != nil {
		t.Fatal(err)
	}
	return script
}

// onPath puts a coop-proxy on a fresh PATH (with the system's after it)
// that is this test binary run as the program (see TestMain), for the
// scripts' `coop-proxy __complete routes`.
func onPath(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\nCOOP_PROXY_TEST_AS_MAIN=1 exec '" + os.Args[0] + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "coop-proxy"), []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
}

// Each script is valid in its shell (bash -n, zsh -n, fish -n; the shells
// come from scripts/test-deps.sh) and names every command and flag.
func TestCompletionScriptsParseAndCoverEverything(t *testing.T) {
	for _, shell := range shells {
		t.Run(shell, func(t *testing.T) {
			script := completionScript(t, shell)
			if shell != "powershell" { // no PowerShell here: its text is checked below
				path, err := exec.LookPath(shell)
				if err != nil {
					t.Fatalf("%s is needed for this test (scripts/test-deps.sh installs it): %v", shell, err)
				}
				file := filepath.Join(t.TempDir(), "script")
				if err := os.WriteFile(file, []byte(script), 0o600); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(path, "-n", file).CombinedOutput(); err != nil {
					t.Fatalf("%s -n: %v\n%s\n%s", shell, err, out, script)
				}
			} else if !strings.Contains(script, "Register-ArgumentCompleter -Native -CommandName 'coop-proxy', 'coop-proxy.exe'") {
				t.Errorf("no argument completer registered:\n%s", script)
			}
			for _, c := range commands() {
				if !strings.Contains(script, c.name) {
					t.Errorf("command %s missing", c.name)
				}
			}
			flag := "--" // fish names a long option without its dashes
			if shell == "fish" {
				flag = "-l "
			}
			for _, f := range config.Fields() {
				// the name whole: --dpop is not found in --dpop-key-file
				if f.Flag != "" && !regexp.MustCompile(`(^|[^a-z-])`+flag+regexp.QuoteMeta(f.Flag)+`([^a-z-]|$)`).MatchString(script) {
					t.Errorf("flag --%s missing", f.Flag)
				}
			}
			for _, v := range []string{"authorization_code", "private_key_jwt", "github", "console", "warn", "__complete routes", "json"} {
				if !strings.Contains(script, v) {
					t.Errorf("%q missing", v)
				}
			}
		})
	}
}

// bash completes commands, flags, fixed values and the configuration
// file's routes, as it would at a prompt (COMP_WORDS, COMP_CWORD).
func TestBashCompletionCompletes(t *testing.T) {
	script := scriptWithRoutes(t, "bash")
	tests := []struct {
		line string // the words; the last one is being completed
		want []string
	}{
		{"coop-proxy st", []string{"status"}},
		{"coop-proxy completion ", shells},
		{"coop-proxy status --js", []string{"--json"}},
		{"coop-proxy token --js", nil},
		{"coop-proxy login --gr", []string{"--grant"}},
		{"coop-proxy login --grant ", []string{"client_credentials", "authorization_code"}},
		{"coop-proxy serve --auth-style private", []string{"private_key_jwt"}},
		{"coop-proxy serve --log-level ", []string{"debug", "info", "warn", "error"}},
		{"coop-proxy status --route ", []string{"eggs", "farmer"}},
		{"coop-proxy status --route f", []string{"farmer"}},
		{"coop-proxy serve --upstream ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			words := strings.Split(tt.line, " ")
			var quoted []string
			for _, w := range words {
				quoted = append(quoted, "'"+w+"'")
			}
			prog := "source '" + script + "'\nCOMP_WORDS=(" + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)-1) +
				"\n_coop_proxy\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
			cmd := exec.Command("bash", "--norc", "-c", prog)
			cmd.Env = onPath(t)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// fish completes as at a prompt (complete -C).
func TestFishCompletionCompletes(t *testing.T) {
	if _, err := exec.LookPath("fish"); err != nil {
		t.Fatalf("fish is needed for this test (scripts/test-deps.sh installs it): %v", err)
	}
	script := scriptWithRoutes(t, "fish")
	tests := []struct {
		line string
		want []string
	}{
		{"coop-proxy chec", []string{"check-config"}},
		{"coop-proxy status --js", []string{"--json"}},
		{"coop-proxy token --grant ", []string{"authorization_code", "client_credentials"}},
		{"coop-proxy status --route ", []string{"eggs", "farmer"}},
		{"coop-proxy completion ", []string{"bash", "fish", "powershell", "zsh"}},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			cmd := exec.Command("fish", "--no-config", "-c", "source "+script+"; complete -C '"+tt.line+"'")
			cmd.Env = onPath(t)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("fish: %v\n%s", err, out)
			}
			var got []string
			for l := range strings.Lines(string(out)) {
				got = append(got, strings.SplitN(strings.TrimSpace(l), "\t", 2)[0])
			}
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCompletionMistakesAreOneLine(t *testing.T) {
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}, {"__complete", "flags"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 || stdout.Len() > 0 {
			t.Errorf("%q: exit %d, stderr %q, stdout %q", args, code, stderr.String(), stdout.String())
		}
	}
}

// __complete routes reads the file named by --config on the line being
// completed, else COOP_PROXY_CONFIG; nothing without one.
func TestCompleteRoutes(t *testing.T) {
	f := newFarm(t)
	env := f.routesFile(t, "")
	complete := func(args ...string) string {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"__complete", "routes"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		return stdout.String()
	}
	if got := complete("status"); got != "eggs\nfarmer\n" {
		t.Errorf("from COOP_PROXY_CONFIG: %q", got)
	}
	t.Setenv(config.EnvPrefix+"CONFIG", "")
	if got := complete("status"); got != "" {
		t.Errorf("without a file: %q", got)
	}
	if got := complete("status", "--config", env["CONFIG"], "--route"); got != "eggs\nfarmer\n" {
		t.Errorf("from --config: %q", got)
	}
	if got := complete("--config=" + env["CONFIG"]); got != "eggs\nfarmer\n" {
		t.Errorf("from --config=: %q", got)
	}
}

// A route name the file's checks refuse is not offered: the scripts put
// what __complete prints on the command line, where a shell would run a
// "$(...)" in it (a configuration file from a cloned repository is the
// user's own, so checkTrusted accepts it).
func TestCompleteRoutesOffersOnlyValidNames(t *testing.T) {
	newFarm(t).routesFile(t, "  - name: \"$(touch pwned)\"\n  - name: \"it's `x`\"\n  - name: Eggs\n")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"__complete", "routes"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if got := stdout.String(); got != "eggs\nfarmer\n" {
		t.Errorf("__complete routes printed %q, want only the valid names", got)
	}
}

// bash's compgen -W expands its word list, running a "$(...)" in it: the
// routes __complete prints are matched as they are, never expanded.
func TestBashCompletionNeverExpandsRoutes(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	script := filepath.Join(dir, "coop-proxy.bash")
	if err := os.WriteFile(script, []byte(completionScript(t, "bash")), 0o600); err != nil {
		t.Fatal(err)
	}
	// a coop-proxy whose __complete prints what an older one let through
	fake := "#!/bin/sh\nprintf '%s\\n' '$(touch " + marker + ")' farmer 'f*'\n"
	if err := os.WriteFile(filepath.Join(dir, "coop-proxy"), []byte(fake), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cur  string
		want []string
	}{{"", []string{"$(touch " + marker + ")", "farmer", "f*"}}, {"f", []string{"farmer", "f*"}}, {"f*", []string{"f*"}}} {
		prog := "source '" + script + "'\nCOMP_WORDS=(coop-proxy status --route '" + tt.cur + "')\nCOMP_CWORD=3\n_coop_proxy\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
		cmd := exec.Command("bash", "--norc", "-c", prog)
		cmd.Env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("completing --route %q ran the command in a route's name", tt.cur)
		}
		if got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n"); !slices.Equal(got, tt.want) {
			t.Errorf("--route %q: got %q, want %q", tt.cur, got, tt.want)
		}
	}
}
