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
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	needs   needs
	run     func(ctx context.Context, cfg *Config, reread rereadFunc, out io.Writer) error
}

// rereadFunc reads the settings again from the environment and the same
// command line, for a reload.
type rereadFunc func() (*Config, error)

func commands() []command {
	return []command{
		{"serve", "run the proxy (the default command)", needs{client: true, listen: true, store: true}, runServe},
		{"token", "print a valid access token and nothing else", needs{client: true, store: true}, runToken},
		{"status", "show the stored grant: grant type, scopes, expiry, store path (never a token)", needs{store: true}, runStatus},
		{"login", "log a farmer in with the authorization-code grant and store the grant", needs{client: true, store: true}, runLogin},
		{"logout", "remove the stored farmer's grant", needs{store: true}, runLogout},
		{"check-config", "check every setting, print each problem on its own line", needs{client: true, listen: true, store: true}, runCheckConfig},
		{"demo", "run a COOP emulator and the proxy in front of it, and print commands to try", needs{}, runDemo},
		{"version", "print the version", needs{}, runVersion},
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
	if name == "help" {
		usage(stdout)
		return 0
	}
	var cmd *command
	for _, c := range commands() {
		if c.name == name {
			cmd = &c
		}
	}
	if cmd == nil {
		fmt.Fprintf(stderr, "coop-proxy: unknown command %q (try: coop-proxy help)\n", name)
		return 2
	}
	fs := flag.NewFlagSet("coop-proxy "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, rest, err := loadConfig(fs, args, nil)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(stdout, cmd, fs)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "coop-proxy %s: %v\n", name, err)
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "coop-proxy %s: unexpected argument %q\n", name, rest[0])
		return 2
	}
	if name != "check-config" && name != "demo" {
		if errs := cfg.check(cmd.needs); len(errs) > 0 {
			fmt.Fprintf(stderr, "coop-proxy %s: %v\n", name, errs[0])
			return 2
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reread := func() (*Config, error) {
		cfg, _, err := loadConfig(flag.NewFlagSet(name, flag.ContinueOnError), args, nil)
		return cfg, err
	}
	if err := cmd.run(ctx, cfg, reread, stdout); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "coop-proxy %s: %v\n", name, err)
		return 1
	}
	return 0
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
}

func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: coop-proxy %s [flags]\n\n%s.\n\nSettings (flag, environment variable, current value):\n", c.name, capitalize(c.summary))
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		lines = append(lines, fmt.Sprintf("  --%s  (%s%s)  [%s]\n      %s\n", f.Name, envPrefix, envOfFlag(f.Name), f.Value, f.Usage))
	})
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Fprint(w, l)
	}
	fmt.Fprintf(w, "  (%sCLIENT_SECRET)  the client secret, environment only\n", envPrefix)
}

func envOfFlag(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
