package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/coop-proxy/coop-proxy/internal/redact"
)

// envPrefix starts the name of every environment variable coop-proxy reads.
const envPrefix = "COOP_PROXY_"

// Config is every setting. Each one is read from the environment (env tag,
// with envPrefix) and can be overridden by the flag of the same meaning
// (flag tag). The help tag is the one line --help and the README give.
// Secrets have no flag: a flag shows in `ps` to every user of the machine.
type Config struct {
	Upstream                    string        `env:"UPSTREAM" envDefault:"http://coop.apps.knpuniversity.com" flag:"upstream" help:"COOP's base URL: the only place requests are forwarded to"`
	TokenURL                    string        `env:"TOKEN_URL" flag:"token-url" help:"token endpoint (default: upstream + /token)"`
	AuthorizeURL                string        `env:"AUTHORIZE_URL" flag:"authorize-url" help:"authorization endpoint for login (default: upstream + /authorize)"`
	Grant                       string        `env:"GRANT" envDefault:"client_credentials" flag:"grant" help:"client_credentials (the application's own token) or authorization_code (a farmer's grant from 'coop-proxy login')"`
	ClientID                    string        `env:"CLIENT_ID" flag:"client-id" help:"the application's client id, as registered on COOP (its name, e.g. \"Brent's Lazy CRON Job\")"`
	ClientSecret                redact.Secret `env:"CLIENT_SECRET" help:"the application's client secret (environment only; prefer the file)"`
	ClientSecretFile            string        `env:"CLIENT_SECRET_FILE" flag:"client-secret-file" help:"file holding the client secret (surrounding white space ignored)"`
	Scopes                      string        `env:"SCOPES" flag:"scopes" help:"scopes to ask for, space or comma separated (client_credentials default: all the application has; login default: all six)"`
	AuthStyle                   string        `env:"AUTH_STYLE" envDefault:"body" flag:"auth-style" help:"how client credentials reach the token endpoint: body (works with every COOP client id), basic, or auto"`
	Listen                      string        `env:"LISTEN" envDefault:"127.0.0.1:8080" flag:"listen" help:"address the proxy listens on: host:port, or unix:/path for a Unix socket (mode 0660)"`
	InboundSecret               redact.Secret `env:"INBOUND_SECRET" help:"a secret callers must present (Proxy-Authorization: Bearer ... or Authorization: Bearer ...); environment only, prefer the file"`
	InboundSecretFile           string        `env:"INBOUND_SECRET_FILE" flag:"inbound-secret-file" help:"file holding the secret callers must present; required to listen on a non-loopback address"`
	AllowUnauthenticatedCallers bool          `env:"ALLOW_UNAUTHENTICATED_CALLERS" flag:"allow-unauthenticated-callers" help:"accept callers without the inbound secret on a non-loopback address: anyone who can reach it acts as the farmer"`
	AdminListen                 string        `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:9090" flag:"admin-listen" help:"address of /healthz, /readyz and /metrics; off: none"`
	Store                       string        `env:"STORE" flag:"store" help:"token store file (default: $XDG_STATE_HOME/coop-proxy/tokens.json, else ~/.local/state/coop-proxy/tokens.json)"`
	RefreshMargin               time.Duration `env:"REFRESH_MARGIN" envDefault:"5m" flag:"refresh-margin" help:"renew a token this long before it expires (at most half its lifetime)"`
	RetryBodyLimit              int64         `env:"RETRY_BODY_LIMIT" envDefault:"1048576" flag:"retry-body-limit" help:"largest request body (bytes) kept to resend after COOP rejects a token"`
	MaxHeaderBytes              int           `env:"MAX_HEADER_BYTES" envDefault:"65536" flag:"max-header-bytes" help:"largest request header (bytes); larger gets 431"`
	UpstreamTimeout             time.Duration `env:"UPSTREAM_TIMEOUT" envDefault:"30s" flag:"upstream-timeout" help:"longest wait for COOP's response headers; then 504"`
	RequestTimeout              time.Duration `env:"REQUEST_TIMEOUT" envDefault:"2m" flag:"request-timeout" help:"longest a whole request may take, body included; then 504 (or the connection is cut mid-answer)"`
	MaxBodyBytes                int64         `env:"MAX_BODY_BYTES" envDefault:"10485760" flag:"max-body-bytes" help:"largest request body (bytes); larger gets 413"`
	MaxUpstreamConns            int           `env:"MAX_UPSTREAM_CONNS" envDefault:"256" flag:"max-upstream-conns" help:"most connections open to COOP at once; further requests wait"`
	ShutdownTimeout             time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" flag:"shutdown-timeout" help:"on SIGINT/SIGTERM, how long in-flight requests may take to finish"`
	LogFormat                   string        `env:"LOG_FORMAT" envDefault:"json" flag:"log-format" help:"json or console"`
	LogLevel                    string        `env:"LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`
	RedirectURI                 string        `env:"REDIRECT_URI" envDefault:"http://127.0.0.1:8085/callback" flag:"redirect-uri" help:"login: loopback redirect URI, exactly as registered on COOP"`
	LoginTimeout                time.Duration `env:"LOGIN_TIMEOUT" envDefault:"5m" flag:"login-timeout" help:"login: how long to wait for the farmer's answer"`
	NoBrowser                   bool          `env:"NO_BROWSER" flag:"no-browser" help:"login: only print the address to open, do not start a browser"`
	Paste                       bool          `env:"PASTE" flag:"paste" help:"login: no listener; paste the address the browser was sent to (for machines without a browser)"`
}

// settingError is a problem with one setting, named as the user wrote it.
type settingError struct {
	setting string // "COOP_PROXY_LISTEN (--listen)"
	msg     string
}

func (e *settingError) Error() string { return e.setting + ": " + e.msg }

// settingName names a Config field by its environment variable and flag.
func settingName(field string) string {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if !ok {
		return field
	}
	name := envPrefix + f.Tag.Get("env")
	if fl := f.Tag.Get("flag"); fl != "" {
		name += " (--" + fl + ")"
	}
	return name
}

func problem(field, format string, args ...any) error {
	return &settingError{setting: settingName(field), msg: fmt.Sprintf(format, args...)}
}

// loadConfig reads the environment, then the flags in args; it returns the
// arguments left after the flags.
func loadConfig(fs *flag.FlagSet, args []string, environ map[string]string) (*Config, []string, error) {
	cfg := &Config{}
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: envPrefix, Environment: environ}); err != nil {
		return nil, nil, envError(err, environ)
	}
	bindFlags(fs, cfg)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	return cfg, fs.Args(), nil
}

// envError turns caarlos0/env's error into one naming the variable.
// environ is the environment read (nil: the process's).
func envError(err error, environ map[string]string) error {
	var agg env.AggregateError
	if errors.As(err, &agg) && len(agg.Errors) > 0 {
		var pe env.ParseError
		if errors.As(agg.Errors[0], &pe) {
			name := envPrefix + fieldEnv(pe.Name)
			value, ok := environ[name]
			if !ok {
				value = os.Getenv(name)
			}
			return problem(pe.Name, "cannot read %q as %s", value, pe.Type)
		}
		return agg.Errors[0]
	}
	return err
}

func fieldEnv(field string) string {
	f, _ := reflect.TypeOf(Config{}).FieldByName(field)
	return f.Tag.Get("env")
}

// bindFlags registers a flag for every field with a flag tag, its default
// being the value already read from the environment.
func bindFlags(fs *flag.FlagSet, cfg *Config) {
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name := f.Tag.Get("flag")
		if name == "" {
			continue
		}
		fs.Var(&fieldFlag{v: v.Field(i), name: f.Name}, name, f.Tag.Get("help"))
	}
}

// fieldFlag is a flag.Value backed by one Config field.
type fieldFlag struct {
	v    reflect.Value
	name string
}

func (f *fieldFlag) String() string {
	if !f.v.IsValid() {
		return ""
	}
	return fmt.Sprint(f.v.Interface())
}

func (f *fieldFlag) IsBoolFlag() bool { return f.v.IsValid() && f.v.Kind() == reflect.Bool }

func (f *fieldFlag) Set(s string) error {
	switch f.v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 30s or 5m", s)
		}
		f.v.SetInt(int64(d))
		return nil
	}
	switch f.v.Kind() {
	case reflect.String:
		f.v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		f.v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		f.v.SetInt(n)
	default:
		return fmt.Errorf("unsupported setting type %s", f.v.Type())
	}
	return nil
}

// scopeList splits the scopes setting on spaces and commas.
func (c *Config) scopeList() []string {
	return strings.FieldsFunc(c.Scopes, func(r rune) bool { return r == ' ' || r == ',' })
}

// tokenURL and authorizeURL default to COOP's paths under the upstream.
func (c *Config) tokenURL() string {
	if c.TokenURL != "" {
		return c.TokenURL
	}
	return strings.TrimSuffix(c.Upstream, "/") + "/token"
}

func (c *Config) authorizeURL() string {
	if c.AuthorizeURL != "" {
		return c.AuthorizeURL
	}
	return strings.TrimSuffix(c.Upstream, "/") + "/authorize"
}

// storePath is the token store file, by default in the user's state
// directory (XDG Base Directory specification).
func (c *Config) storePath() (string, error) {
	if c.Store != "" {
		return c.Store, nil
	}
	if dir := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "coop-proxy", "tokens.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", problem("Store", "no home directory to default to (%v): set it", err)
	}
	return filepath.Join(home, ".local", "state", "coop-proxy", "tokens.json"), nil
}

// secret returns the client secret from the environment or its file.
func (c *Config) secret() (redact.Secret, error) {
	s, err := readSecret("ClientSecret", "ClientSecretFile", c.ClientSecret, c.ClientSecretFile)
	if err == nil && s == "" {
		err = problem("ClientSecret", "no client secret: set %sCLIENT_SECRET_FILE (--client-secret-file) or %sCLIENT_SECRET", envPrefix, envPrefix)
	}
	return s, err
}

// inboundSecret returns the secret callers must present, or "" for none.
func (c *Config) inboundSecret() (redact.Secret, error) {
	return readSecret("InboundSecret", "InboundSecretFile", c.InboundSecret, c.InboundSecretFile)
}

// readSecret reads a secret given in the environment (field) or in a file
// (fileField), not both; "" when neither is set.
func readSecret(field, fileField string, value redact.Secret, file string) (redact.Secret, error) {
	switch {
	case value != "" && file != "":
		return "", problem(fileField, "set either %s%s or the file, not both", envPrefix, fieldEnv(field))
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", problem(fileField, "cannot read the secret file: %v", unwrapPathError(err))
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", problem(fileField, "%s is empty", file)
		}
		return redact.Secret(s), nil
	}
	return value, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// check validates every setting a command needs and returns each problem.
// need says which groups apply: the client (id, secret, token URL), the
// listeners, the login settings.
func (c *Config) check(need needs) []error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(checkURL("Upstream", c.Upstream))
	if c.TokenURL != "" {
		add(checkURL("TokenURL", c.TokenURL))
	}
	if c.AuthorizeURL != "" {
		add(checkURL("AuthorizeURL", c.AuthorizeURL))
	}
	switch c.Grant {
	case "client_credentials", "authorization_code":
	default:
		add(problem("Grant", "%q is not client_credentials or authorization_code", c.Grant))
	}
	switch c.AuthStyle {
	case "body", "basic", "auto":
	default:
		add(problem("AuthStyle", "%q is not body, basic or auto", c.AuthStyle))
	}
	if need.client {
		if c.ClientID == "" {
			add(problem("ClientID", "no client id: the application's name as registered on COOP"))
		}
		_, err := c.secret()
		add(err)
	}
	if need.store {
		_, err := c.storePath()
		add(err)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"RefreshMargin", c.RefreshMargin}, {"UpstreamTimeout", c.UpstreamTimeout}, {"ShutdownTimeout", c.ShutdownTimeout}, {"LoginTimeout", c.LoginTimeout}} {
		if d.v <= 0 {
			add(problem(d.field, "must be more than 0"))
		}
	}
	if c.RetryBodyLimit < 0 {
		add(problem("RetryBodyLimit", "must be 0 or more"))
	}
	if c.MaxHeaderBytes < 1024 {
		add(problem("MaxHeaderBytes", "must be at least 1024"))
	}
	switch c.LogFormat {
	case "json", "console":
	default:
		add(problem("LogFormat", "%q is not json or console", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add(problem("LogLevel", "%q is not debug, info, warn or error", c.LogLevel))
	}
	inbound, err := c.inboundSecret()
	add(err)
	if need.listen {
		add(c.checkFrontDoor(inbound != ""))
		if c.adminEnabled() {
			add(checkListen("AdminListen", c.AdminListen))
		}
	}
	if c.MaxBodyBytes <= 0 {
		add(problem("MaxBodyBytes", "must be more than 0"))
	}
	if c.MaxUpstreamConns <= 0 {
		add(problem("MaxUpstreamConns", "must be more than 0"))
	}
	return errs
}

// checkFrontDoor: anyone who can reach the proxy acts as the farmer, so it
// listens beyond loopback only with an inbound secret, or when the operator
// says in so many words that anyone may use it. A Unix socket is guarded by
// its file mode.
func (c *Config) checkFrontDoor(haveInbound bool) error {
	if path, ok := strings.CutPrefix(c.Listen, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return problem("Listen", "%q: a Unix socket needs an absolute path, as unix:/run/coop-proxy/proxy.sock", c.Listen)
		}
		return nil
	}
	if err := checkListen("Listen", c.Listen); err != nil {
		return err
	}
	if !isLoopbackListen(c.Listen) && !haveInbound && !c.AllowUnauthenticatedCallers {
		return problem("Listen", "%q is reachable from other machines, and whoever reaches coop-proxy acts as the farmer: set %sINBOUND_SECRET_FILE (callers send Proxy-Authorization: Bearer <secret>), or %sALLOW_UNAUTHENTICATED_CALLERS=true to accept that", c.Listen, envPrefix, envPrefix)
	}
	return nil
}

// adminEnabled: an admin listener is wanted ("off", or an empty flag, says none).
func (c *Config) adminEnabled() bool { return c.AdminListen != "" && c.AdminListen != "off" }

// needs says which settings a command uses.
type needs struct{ client, listen, store bool }

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return problem(field, "%q is not an http(s) URL with a host", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return problem(field, "%q must not carry credentials, a query or a fragment", u.Redacted())
	}
	return nil
}

func checkListen(field, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return problem(field, "%q is not host:port", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return problem(field, "%q has no valid port", addr)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return problem(field, "%q: host must be an IP address (or localhost)", addr)
	}
	return nil
}
