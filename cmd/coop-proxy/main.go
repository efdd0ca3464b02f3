// Command coop-proxy is a local authenticating reverse proxy for COOP: it
// obtains and refreshes OAuth 2.0 tokens, keeps them in a file, and forwards
// plain HTTP requests to COOP with the bearer token added.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/server"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	needs   config.Needs
	run     func(ctx context.Context, inv *invocation) error
	json    bool // takes --json: output for scripts
}

// invocation is one run of a command: its settings, and how to read them
// again for a reload.
type invocation struct {
	name     string
	args     []string // the flags given
	settings *config.Settings
	reread   func() (*config.Settings, error)
	out      io.Writer
	json     bool // --json, for the commands that take it (command.json)
}

func commands() []command {
	return []command{
		{"serve", "run the proxy (the default command)", config.Everything, runServe, false},
		{"token", "print a valid access token and nothing else", config.Needs{Client: true, Store: true, OneRoute: true}, runToken, false},
		{"status", "show the stored grants: grant type, scopes, time left, store (never a token); --json for scripts", config.Needs{Store: true}, runStatus, true},
		{"login", "log a farmer in with the authorization-code grant (or --device, the device grant) and store the grant", config.Needs{Client: true, Store: true, OneRoute: true}, runLogin, false},
		{"logout", "remove the stored farmer's grant", config.Needs{Store: true, OneRoute: true}, runLogout, false},
		{"check-config", "check every setting, print each problem on its own line", config.Everything, nil, false},
		{"demo", "run a COOP emulator and the proxy in front of it, and print commands to try", config.Needs{}, runDemo, false},
		{"version", "print the version", config.Needs{}, runVersion, false},
		// run by runCompletion, before any setting is read
		{"completion", "print the shell completion script: completion bash|zsh|fish|powershell", config.Needs{}, nil, false},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without os.Exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	switch name {
	case "help":
		usage(stdout)
		return 0
	case "completion", completeCommand:
		return runCompletion(name, args, stdout, stderr)
	}
	cmd := findCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "coop-proxy: unknown command %q (try: coop-proxy help)\n", name)
		return 2
	}
	asJSON := false
	if cmd.json {
		args, asJSON = takeJSONFlag(args)
	}
	load := func() (*config.Settings, error) { return config.Load("coop-proxy "+name, args, nil, cmd.needs) }
	settings, err := load()
	var problems config.Problems
	switch {
	case errors.Is(err, flag.ErrHelp):
		commandUsage(stdout, cmd)
		return 0
	case cmd.run == nil: // check-config
		return checkConfig(stdout, settings, err)
	case errors.As(err, &problems) && cmd.name == "demo":
		// the demo replaces the settings it needs
	case err != nil:
		fmt.Fprintf(stderr, "coop-proxy %s: %v\n", name, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, &invocation{name: name, args: args, settings: settings, reread: load, out: stdout, json: asJSON}); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "coop-proxy %s: %v\n", name, err)
		return 1
	}
	return 0
}

// takeJSONFlag removes --json (or -json) from args: the flag is the
// command's own, not a setting.
func takeJSONFlag(args []string) (rest []string, found bool) {
	for _, a := range args {
		if a == "--json" || a == "-json" || a == "--json=true" {
			found = true
			continue
		}
		rest = append(rest, a)
	}
	return rest, found
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return &c
		}
	}
	return nil
}

// checkConfig prints every problem with the settings, one a line. With an
// issuer, its metadata is read too: a provider that cannot serve the
// settings is a problem, named with its route.
func checkConfig(out io.Writer, settings *config.Settings, err error) int {
	var problems config.Problems
	if err == nil {
		var shared config.Problems
		if errors.As(server.CheckSharedStacks(settings.AllRoutes()), &shared) {
			problems = shared
		}
		for _, r := range settings.AllRoutes() {
			if r.Issuer != "" {
				_, err := server.Endpoints(context.Background(), &r)
				problems.Add(settings.InRoute(r.Name, err))
			}
		}
		if len(problems) == 0 {
			fmt.Fprintln(out, "configuration OK")
			return 0
		}
	} else if !errors.As(err, &problems) {
		problems = config.Problems{err}
	}
	for _, e := range problems {
		fmt.Fprintln(out, e)
	}
	return 1
}

// exitError ends a command with a status and no further message (the
// command has printed its own).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: coop-proxy [command] [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nEvery setting is an environment variable (COOP_PROXY_...) or a flag; 'coop-proxy COMMAND --help' lists them.")
	fmt.Fprintln(w, "Several APIs in one process: --config FILE (YAML) lists routes; status, token, login and logout take --route NAME.")
}

// commandUsage lists every setting with its current value, from the
// settings' own description (config.Fields).
func commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: coop-proxy %s [flags]\n\n%s.\n\nSettings (flag, environment variable, current value):\n",
		c.name, strings.ToUpper(c.summary[:1])+c.summary[1:])
	settings, _ := config.Load("", nil, nil, config.Needs{})
	var lines, secrets []string
	for _, f := range config.Fields() {
		value := ""
		if settings != nil {
			value = f.Value(settings)
		}
		if f.Flag == "" {
			secrets = append(secrets, fmt.Sprintf("  (%s)  %s\n", f.Env, f.Help))
			continue
		}
		lines = append(lines, fmt.Sprintf("  --%s  (%s)  [%s]\n      %s\n", f.Flag, f.Env, value, f.Help))
	}
	sort.Strings(lines)
	for _, l := range append(lines, secrets...) {
		fmt.Fprint(w, l)
	}
}
