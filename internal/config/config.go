// Package config holds coop-proxy's settings as one immutable value: read
// once from the environment with the command-line flags layered over it,
// secret files read once, and every value checked. A reload builds a new
// value beside the one in effect; nothing ever changes a Settings in place.
package config

import (
	"cmp"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/coop-proxy/coop-proxy/internal/clientauth"
	"github.com/coop-proxy/coop-proxy/internal/redact"
	"github.com/coop-proxy/coop-proxy/tokenstore/redisstore"
)

// EnvPrefix starts the name of every environment variable coop-proxy reads.
const EnvPrefix = "COOP_PROXY_"

// Settings is every setting. Each one is read from the environment (env
// tag, after EnvPrefix) and can be overridden by the flag of the same
// meaning (flag tag); the help tag is the line --help and the README give.
// Secrets have no flag: a flag shows in `ps` to every user of the machine.
//
// Route holds what belongs to one upstream and its grant; the rest belongs
// to the process. The environment describes one route.
type Settings struct {
	// Route is the route a command acts on: the environment's (named
	// "default"), or with a configuration file the one ROUTE names (the
	// first when none is named; see Needs.OneRoute). Routes are the
	// file's routes, nil without a file: AllRoutes gives what serve runs.
	Route  Route
	Routes []Route `env:"-"`

	Config    string `env:"CONFIG" flag:"config" help:"configuration file (YAML) listing routes: several upstream APIs in one process; with it, route settings come from the file alone"`
	RouteName string `env:"ROUTE" flag:"route" help:"status, token, login, logout: the route of the configuration file to act on (needed when it has several)"`

	AdminListen string `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:9090" flag:"admin-listen" help:"address of /healthz, /readyz and /metrics; off: none"`
	Store       string `env:"STORE" flag:"store" help:"token store: a file (default: $XDG_STATE_HOME/coop-proxy/tokens.json, else ~/.local/state/coop-proxy/tokens.json; macOS ~/Library/Application Support/coop-proxy/tokens.json; Windows %LOCALAPPDATA%\\coop-proxy\\tokens.json), or Redis shared by replicas: redis://host:6379/0, rediss://... (TLS)"`
	// The Redis store's settings; see the README's "Which token store".
	StorePasswordFile string        `env:"STORE_PASSWORD_FILE" flag:"store-password-file" help:"Redis store: file holding the Redis password (never in STORE, which ps shows); read again on SIGHUP"`
	StoreKeyFile      string        `env:"STORE_KEY_FILE" flag:"store-key-file" help:"Redis store: file of the keys sealing the grants, one base64 32-byte key a line: the first seals, every one opens (rotation)"`
	StorePlaintext    bool          `env:"STORE_PLAINTEXT" flag:"store-plaintext" help:"Redis store: keep the grants in Redis unsealed, without a key file (refused unless set)"`
	StoreCAFile       string        `env:"STORE_CA_FILE" flag:"store-ca-file" help:"Redis store, rediss://: file of the CA certificates (PEM) Redis's certificate is checked against (default: the system's)"`
	StoreCertFile     string        `env:"STORE_CERT_FILE" flag:"store-cert-file" help:"Redis store, rediss://: file of the client certificate (PEM) presented to Redis"`
	StoreCertKeyFile  string        `env:"STORE_CERT_KEY_FILE" flag:"store-cert-key-file" help:"Redis store, rediss://: file of the client certificate's private key (PEM)"`
	StoreLockTTL      time.Duration `env:"STORE_LOCK_TTL" envDefault:"45s" flag:"store-lock-ttl" help:"Redis store: how long a grant's lock lasts when its holder dies; more than TOKEN_TIMEOUT"`
	StoreLockGrace    time.Duration `env:"STORE_LOCK_GRACE" envDefault:"0s" flag:"store-lock-grace" help:"Redis store: how long the next holder of a grant's lock waits for a holder that never finished (it died, or it or Redis paused) to write its tokens, before it refreshes itself; 0: as long as STORE_LOCK_TTL"`
	StoreWaitReplicas int           `env:"STORE_WAIT_REPLICAS" envDefault:"0" flag:"store-wait-replicas" help:"Redis store: Redis replicas a write must reach (WAIT) before new tokens are used; 0: the primary alone"`
	StoreWaitTimeout  time.Duration `env:"STORE_WAIT_TIMEOUT" envDefault:"1s" flag:"store-wait-timeout" help:"Redis store: how long a write waits for STORE_WAIT_REPLICAS"`
	Replica           string        `env:"REPLICA" flag:"replica" help:"Redis store: this replica's name in the grant's lock and in status (default: hostname-pid)"`
	// StorePassword is read from StorePasswordFile, StoreKeys from
	// StoreKeyFile (its text, checked with redisstore.ParseKeys), by Load.
	StorePassword   redact.Secret `env:"-"`
	StoreKeys       redact.Secret `env:"-"`
	MaxHeaderBytes  int           `env:"MAX_HEADER_BYTES" envDefault:"65536" flag:"max-header-bytes" help:"largest request header (bytes); larger gets 431"`
	MaxConns        int           `env:"MAX_CONNS" envDefault:"1024" flag:"max-conns" help:"most caller connections open at once; further callers wait to be accepted"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" flag:"shutdown-timeout" help:"on SIGINT/SIGTERM, how long in-flight requests may take to finish"`
	LogFormat       LogFormat     `env:"LOG_FORMAT" envDefault:"json" flag:"log-format" help:"json or console"`
	LogLevel        LogLevel      `env:"LOG_LEVEL" envDefault:"info" flag:"log-level" help:"debug, info, warn or error"`
	LoginTimeout    time.Duration `env:"LOGIN_TIMEOUT" envDefault:"5m" flag:"login-timeout" help:"login: how long to wait for the farmer's answer"`
	NoBrowser       bool          `env:"NO_BROWSER" flag:"no-browser" help:"login: only print the address to open, do not start a browser"`
	Paste           bool          `env:"PASTE" flag:"paste" help:"login: no listener; paste the address the browser was sent to (for machines without a browser)"`
	Device          bool          `env:"DEVICE" flag:"device" help:"login: the device grant (RFC 8628): print a code to enter in a browser on any other device (for machines without a browser)"`
}

// Route is one upstream API, the grant that gets its tokens, and the
// listener its callers reach it on.
type Route struct {
	// Name names the route in a configuration file; "default" for the
	// environment's. It is not a setting of the environment.
	Name string `env:"-"`

	Upstream                    string        `env:"UPSTREAM" envDefault:"http://coop.apps.knpuniversity.com" flag:"upstream" help:"COOP's base URL: the only place requests are forwarded to"`
	TokenURL                    string        `env:"TOKEN_URL" flag:"token-url" help:"token endpoint (default: upstream + /token)"`
	AuthorizeURL                string        `env:"AUTHORIZE_URL" flag:"authorize-url" help:"authorization endpoint for login (default: upstream + /authorize)"`
	DeviceAuthorizationURL      string        `env:"DEVICE_AUTHORIZATION_URL" flag:"device-authorization-url" help:"device authorization endpoint for login --device (RFC 8628 §3.1; default: the issuer's metadata's, or the provider preset's)"`
	Issuer                      string        `env:"ISSUER" flag:"issuer" help:"issuer URL of an OAuth 2.0 or OpenID provider: the endpoints come from its metadata (RFC 8414, OpenID Connect Discovery); TOKEN_URL and AUTHORIZE_URL win"`
	Provider                    Provider      `env:"PROVIDER" flag:"provider" help:"a provider without metadata, by name (github, google, ...): its endpoints and auth style; TOKEN_URL, AUTHORIZE_URL and AUTH_STYLE win"`
	Resource                    Resources     `env:"RESOURCE" flag:"resource" help:"RFC 8707 resource indicators for the tokens: absolute URIs, space or comma separated; sent on every token request"`
	Audience                    string        `env:"AUDIENCE" flag:"audience" help:"audience parameter sent on every token request (Auth0 and others)"`
	TokenParams                 TokenParams   `env:"TOKEN_PARAMS" flag:"token-params" help:"further parameters sent on every token request, as k=v&k2=v2 (percent-encoded)"`
	Grant                       Grant         `env:"GRANT" envDefault:"client_credentials" flag:"grant" help:"client_credentials (the application's own token) or authorization_code (a farmer's grant from 'coop-proxy login')"`
	ClientID                    string        `env:"CLIENT_ID" flag:"client-id" help:"the application's client id, as registered on COOP (its name, e.g. \"Brent's Lazy CRON Job\")"`
	ClientSecret                redact.Secret `env:"CLIENT_SECRET" help:"the application's client secret (environment only; prefer the file)"`
	ClientSecretFile            string        `env:"CLIENT_SECRET_FILE" flag:"client-secret-file" help:"file holding the client secret (surrounding white space ignored)"`
	Scopes                      Scopes        `env:"SCOPES" flag:"scopes" help:"scopes to ask for, space or comma separated (client_credentials default: all the application has; login default: all six)"`
	AuthStyle                   AuthStyle     `env:"AUTH_STYLE" envDefault:"body" flag:"auth-style" help:"how the client authenticates to the token endpoint: body (works with every COOP client id), basic, auto, client_secret_basic (basic), client_secret_post (body), private_key_jwt, tls_client_auth or self_signed_tls_client_auth"`
	ClientKeyFile               string        `env:"CLIENT_KEY_FILE" flag:"client-key-file" help:"private_key_jwt and the TLS styles: file holding the client's private key, PEM (for private_key_jwt: RSA of 2048 bits or more, EC P-256 or Ed25519)"`
	ClientKeyID                 string        `env:"CLIENT_KEY_ID" flag:"client-key-id" help:"private_key_jwt: the kid the assertion names (default: the key's RFC 7638 JWK thumbprint)"`
	ClientAssertionAudience     string        `env:"CLIENT_ASSERTION_AUDIENCE" flag:"client-assertion-audience" help:"private_key_jwt: the assertion's aud (default: the token endpoint's URL; some providers want their issuer)"`
	ClientCertFile              string        `env:"CLIENT_CERT_FILE" flag:"client-cert-file" help:"tls_client_auth, self_signed_tls_client_auth: file holding the client's certificate (chain), PEM; its key in CLIENT_KEY_FILE"`
	DPoP                        bool          `env:"DPOP" flag:"dpop" help:"sender-constrained tokens (RFC 9449 DPoP): bind the tokens to a key pair and send a proof with every token request and every forwarded request"`
	DPoPKeyFile                 string        `env:"DPOP_KEY_FILE" flag:"dpop-key-file" help:"DPoP: file holding the key pair's private key, PEM (EC P-256, RSA of 2048 bits or more, or Ed25519); default: an ES256 key generated for each grant and kept with it in the token store"`
	Listen                      string        `env:"LISTEN" envDefault:"127.0.0.1:8080" flag:"listen" help:"address the proxy listens on: host:port, or unix:/path for a Unix socket (mode 0660)"`
	PathPrefix                  string        `env:"PATH_PREFIX" flag:"path-prefix" help:"serve only requests under this path (as /coop), removed before forwarding; routes of a configuration file share a listen address this way"`
	InboundSecret               redact.Secret `env:"INBOUND_SECRET" help:"a secret callers must present (Proxy-Authorization: Bearer ... or Authorization: Bearer ...); environment only, prefer the file"`
	InboundSecretFile           string        `env:"INBOUND_SECRET_FILE" flag:"inbound-secret-file" help:"file holding the secret callers must present; required to listen on a non-loopback address"`
	AllowUnauthenticatedCallers bool          `env:"ALLOW_UNAUTHENTICATED_CALLERS" flag:"allow-unauthenticated-callers" help:"accept callers without the inbound secret on a non-loopback address: anyone who can reach it acts as the farmer"`
	RefreshMargin               time.Duration `env:"REFRESH_MARGIN" envDefault:"5m" flag:"refresh-margin" help:"renew a token this long before it expires (at most half its lifetime)"`
	RetryBodyLimit              int64         `env:"RETRY_BODY_LIMIT" envDefault:"1048576" flag:"retry-body-limit" help:"largest request body (bytes) kept to resend after COOP rejects a token; 0: never resend a request with a body"`
	UpstreamTimeout             time.Duration `env:"UPSTREAM_TIMEOUT" envDefault:"30s" flag:"upstream-timeout" help:"longest wait for COOP's response headers; then 504"`
	RequestTimeout              time.Duration `env:"REQUEST_TIMEOUT" envDefault:"2m" flag:"request-timeout" help:"longest a whole request may take, body included; then 504 (or the connection is cut mid-answer)"`
	MaxBodyBytes                int64         `env:"MAX_BODY_BYTES" envDefault:"10485760" flag:"max-body-bytes" help:"largest request body (bytes); larger gets 413"`
	MaxUpstreamConns            int           `env:"MAX_UPSTREAM_CONNS" envDefault:"256" flag:"max-upstream-conns" help:"most connections open to COOP at once; further requests wait"`
	TokenTimeout                time.Duration `env:"TOKEN_TIMEOUT" envDefault:"30s" flag:"token-timeout" help:"longest wait for the token endpoint's answer"`
	RedirectURI                 string        `env:"REDIRECT_URI" envDefault:"http://127.0.0.1:8085/callback" flag:"redirect-uri" help:"login: loopback redirect URI, exactly as registered on COOP"`

	// ClientKey (private_key_jwt) and ClientCert (the TLS styles) are read
	// from ClientKeyFile and ClientCertFile by Load, not settings of their
	// own: a key is never given in a flag or the environment.
	ClientKey  *clientauth.Key  `env:"-"`
	ClientCert *tls.Certificate `env:"-"`
	// DPoPKey is read from DPoPKeyFile by Load; nil without one.
	DPoPKey *clientauth.Key `env:"-"`
}

// Needs says which settings a command uses, and so which are required and
// which secret files are read.
type Needs struct {
	Client bool // client id and secret (the secret file is read)
	Listen bool // the listeners (the inbound secret file is read)
	Store  bool // the token store path
	// OneRoute: the command acts on one route; with several in the
	// configuration file, ROUTE must name it.
	OneRoute bool
}

// Everything is what serve and check-config need.
var Everything = Needs{Client: true, Listen: true, Store: true}

// Load reads the settings: the environment (environ; nil means the
// process's), then the flags in args over it, parsed once by caarlos0/env;
// then the secret files the command needs, each read once; then every
// check. Problems are returned as a *Problems listing each one; the
// Settings returned with them holds what could be read (for --help). A
// flag.ErrHelp is returned as is.
func Load(name string, args []string, environ map[string]string, need Needs) (*Settings, error) {
	if environ == nil {
		environ = processEnviron()
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range Fields() {
		if f.Flag != "" {
			fs.Var(&rawFlag{bool: f.kind == reflect.Bool}, f.Flag, f.Help)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	merged := make(map[string]string, len(environ))
	for k, v := range environ {
		merged[k] = v
	}
	fs.Visit(func(fl *flag.Flag) {
		merged[EnvPrefix+EnvOfFlag(fl.Name)] = fl.Value.String()
	})

	if file := merged[EnvPrefix+"CONFIG"]; file != "" {
		return loadFile(file, merged, need)
	}
	s := &Settings{}
	var p Problems
	if err := env.ParseWithOptions(s, env.Options{Prefix: EnvPrefix, Environment: merged}); err != nil {
		p.addParseErrors(err, merged)
	}
	s.Route.Name = DefaultRoute
	s.Route.presetAuthStyle(merged)
	s.resolveProcess(need, &p)
	s.Route.resolve(need, &p)
	s.checkProcess(need, &p)
	s.Route.check(need, &p)
	if s.RouteName != "" && s.RouteName != DefaultRoute {
		p.Add(problem("RouteName", "%q: without a configuration file (%sCONFIG) the only route is %q", s.RouteName, EnvPrefix, DefaultRoute))
	}
	if p = p.firstPerSetting(); len(p) > 0 {
		return s, p
	}
	return s, nil
}

// DefaultRoute names the route the environment describes.
const DefaultRoute = "default"

// AllRoutes are the routes serve runs: the file's, or without a file
// Route alone (as callers may have changed it since Load).
func (s *Settings) AllRoutes() []Route {
	if s.Config == "" {
		r := s.Route
		r.Name = cmp.Or(r.Name, DefaultRoute) // a Settings made by hand
		return []Route{r}
	}
	return s.Routes
}

func processEnviron() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix) {
			m[k] = v
		}
	}
	return m
}

// rawFlag keeps a flag's text; caarlos0/env parses it with the environment.
type rawFlag struct {
	value string
	bool  bool
}

func (f *rawFlag) String() string     { return f.value }
func (f *rawFlag) Set(s string) error { f.value = s; return nil }
func (f *rawFlag) IsBoolFlag() bool   { return f.bool }

// resolve fills in what the route's settings imply: the secrets from
// their files (each read once, here).
func (r *Route) resolve(need Needs, p *Problems) {
	if need.Client && r.AuthStyle.UsesSecret() {
		secret, err := readSecret("ClientSecret", "ClientSecretFile", r.ClientSecret, r.ClientSecretFile)
		if err == nil && secret == "" {
			err = problem("ClientSecret", "no client secret: set %sCLIENT_SECRET_FILE (--client-secret-file) or %sCLIENT_SECRET", EnvPrefix, EnvPrefix)
		}
		p.Add(err)
		r.ClientSecret = secret
	}
	if need.Client && r.AuthStyle == AuthPrivateKeyJWT {
		key, err := readKey("ClientKeyFile", r.ClientKeyFile)
		p.Add(err)
		r.ClientKey = key
	}
	if need.Client && r.AuthStyle.UsesCertificate() {
		cert, err := readCertificate(r.ClientCertFile, r.ClientKeyFile)
		p.Add(err)
		r.ClientCert = cert
	}
	if need.Client && r.DPoP && r.DPoPKeyFile != "" {
		key, err := readKey("DPoPKeyFile", r.DPoPKeyFile)
		p.Add(err)
		r.DPoPKey = key
	}
	if need.Listen {
		secret, err := readSecret("InboundSecret", "InboundSecretFile", r.InboundSecret, r.InboundSecretFile)
		p.Add(err)
		r.InboundSecret = secret
	}
}

// resolveProcess fills in the default store path, the replica's name, and
// the Redis store's password and keys from their files.
func (s *Settings) resolveProcess(need Needs, p *Problems) {
	if need.Store && s.Store == "" {
		path, err := defaultStorePath()
		p.Add(err)
		s.Store = path
	}
	if s.Replica == "" {
		host, _ := os.Hostname()
		s.Replica = fmt.Sprintf("%s-%d", cmp.Or(host, "coop-proxy"), os.Getpid())
	}
	if need.Store && RedisStore(s.Store) {
		password, err := readSecret("StorePassword", "StorePasswordFile", "", s.StorePasswordFile)
		p.Add(err)
		s.StorePassword = password
		if s.StoreKeyFile != "" {
			keys, err := readCredentialFile("StoreKeyFile", "key", s.StoreKeyFile)
			if err == nil {
				if _, perr := redisstore.ParseKeys(keys); perr != nil {
					err = problem("StoreKeyFile", "%s: %v", s.StoreKeyFile, perr)
				}
			}
			p.Add(err)
			s.StoreKeys = redact.Secret(keys)
		}
		return
	}
	if info, err := os.Stat(s.Store); need.Store && err == nil && info.IsDir() {
		p.Add(problem("Store", "%s is a directory: name the token file in it, as %s", s.Store, filepath.Join(s.Store, "tokens.json")))
	}
}

// RedisStore reports whether the store setting names a Redis server
// rather than a file.
func RedisStore(store string) bool {
	return strings.HasPrefix(store, "redis://") || strings.HasPrefix(store, "rediss://")
}

// readSecret reads a secret given in the environment (field) or in a file
// (fileField), not both; "" when neither is set. A file that cannot be read
// or holds nothing is an error, never an empty secret.
func readSecret(field, fileField string, value redact.Secret, file string) (redact.Secret, error) {
	switch {
	case value != "" && file != "":
		return "", problem(fileField, "set either %s%s or the file, not both", EnvPrefix, fieldEnv(field))
	case file != "":
		b, err := readBounded(file)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = fmt.Errorf("%s: %v", pe.Path, pe.Err)
			}
			return "", problem(fileField, "cannot read the secret file: %v", err)
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", problem(fileField, "%s is empty", file)
		}
		return redact.Secret(s), nil
	}
	return value, nil
}

// readKey reads a private key from the file the setting field names (PEM;
// see clientauth.ParseKey for the keys taken): the client's, or the DPoP
// key pair's.
func readKey(field, file string) (*clientauth.Key, error) {
	if file == "" { // the client's: a DPoP key file is optional
		return nil, problem(field, "no client key: set it to the PEM file of the private key whose public key is registered with the provider")
	}
	b, err := readCredentialFile(field, "key", file)
	if err != nil {
		return nil, err
	}
	key, err := clientauth.ParseKey(b)
	if err != nil {
		return nil, problem(field, "%s %v", file, err)
	}
	return key, nil
}

// readCertificate reads the client's TLS certificate and its key, for
// the mutual-TLS styles (RFC 8705 §2).
func readCertificate(certFile, keyFile string) (*tls.Certificate, error) {
	if certFile == "" {
		return nil, problem("ClientCertFile", "no client certificate: set it to the PEM file of the certificate registered with the provider")
	}
	if keyFile == "" {
		return nil, problem("ClientKeyFile", "no client key: set it to the PEM file of the certificate's private key")
	}
	certPEM, err := readCredentialFile("ClientCertFile", "certificate", certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readCredentialFile("ClientKeyFile", "key", keyFile)
	if err != nil {
		return nil, err
	}
	cert, err := clientauth.LoadCertificate(certPEM, keyPEM, time.Now())
	if err != nil {
		return nil, problem("ClientCertFile", "%s with the key %s: %v", certFile, keyFile, err)
	}
	return cert, nil
}

// readCredentialFile reads a key or certificate file, bounded as a secret
// file is; the problem names the field's setting and the file.
func readCredentialFile(field, what, file string) ([]byte, error) {
	b, err := readBounded(file)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = fmt.Errorf("%s: %v", pe.Path, pe.Err)
		}
		return nil, problem(field, "cannot read the %s file: %v", what, err)
	}
	return b, nil
}

// maxSecretFile bounds what is read of a secret file: a secret is a line.
const maxSecretFile = 64 << 10

// readBounded reads file, refusing one over maxSecretFile (a setting naming
// /dev/zero or a large file by mistake would otherwise be read until memory
// runs out). The open does not block (O_NONBLOCK, which changes nothing for
// a regular file): a FIFO at the path would otherwise hold the load, and
// every reload after it, until a writer came; without one it reads as
// empty. A pipe with a writer (a shell's <(...)) is still read to its end.
func readBounded(file string) ([]byte, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err == nil && len(b) > maxSecretFile {
		err = fmt.Errorf("%s: larger than %d KiB, not a secret", file, maxSecretFile>>10)
	}
	return b, err
}

// defaultStorePath is the token store in the user's state directory, as
// this system places it (storePathFor).
func defaultStorePath() (string, error) {
	return storePathFor(runtime.GOOS, os.Getenv, os.UserHomeDir)
}

// storePathFor is the default token file on goos, from the environment
// (getenv) and the home directory (home):
//
//   - Windows: %LOCALAPPDATA%\coop-proxy\tokens.json (local application
//     data: not roamed to other machines with the profile);
//   - elsewhere, $XDG_STATE_HOME/coop-proxy/tokens.json when it is set
//     (XDG Base Directory specification), else
//     ~/Library/Application Support/coop-proxy/tokens.json on macOS (Apple's
//     place for an application's data) and
//     ~/.local/state/coop-proxy/tokens.json on Linux and the other Unixes.
//
// A relative %LOCALAPPDATA% or home is refused (the tokens would land
// wherever the command runs); a relative $XDG_STATE_HOME is ignored, as
// the specification says.
func storePathFor(goos string, getenv func(string) string, home func() (string, error)) (string, error) {
	if goos == "windows" {
		dir := getenv("LOCALAPPDATA")
		switch {
		case dir == "":
			return "", problem("Store", "%%LOCALAPPDATA%% is not set, so there is no default token file: set it, or name the file")
		case !windowsAbs(dir):
			return "", problem("Store", "%%LOCALAPPDATA%% (%q) is not an absolute path, so there is no default token file: set it, or name the file", dir)
		}
		return filepath.Join(dir, "coop-proxy", "tokens.json"), nil
	}
	if dir := getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "coop-proxy", "tokens.json"), nil
	}
	h, err := home()
	if err != nil {
		return "", problem("Store", "no home directory to default to (%v): set it", err)
	}
	if !filepath.IsAbs(h) {
		return "", problem("Store", "the home directory %q is not an absolute path, so there is no default token file: set $HOME, or name the file", h)
	}
	if goos == "darwin" {
		return filepath.Join(h, "Library", "Application Support", "coop-proxy", "tokens.json"), nil
	}
	return filepath.Join(h, ".local", "state", "coop-proxy", "tokens.json"), nil
}

// windowsAbs reports whether p is an absolute Windows path, a drive's
// ("C:\...") or a share's ("\\server\share"), as filepath.IsAbs does on
// Windows: "C:dir" is relative to that drive's current directory. It is
// here so that the tests on other systems check Windows' default.
func windowsAbs(p string) bool {
	drive := len(p) >= 3 && p[1] == ':' && (p[2] == '\\' || p[2] == '/') && ('a' <= p[0]|0x20 && p[0]|0x20 <= 'z')
	return drive || strings.HasPrefix(p, `\\`) || strings.HasPrefix(p, "//")
}

// TokenEndpoint is the token endpoint known without the network: the
// setting, else the preset's, else COOP's path under the upstream. With an
// issuer and no TOKEN_URL it is "": the issuer's metadata tells (see
// Endpoints).
func (r *Route) TokenEndpoint() string {
	switch p, ok := r.Provider.Preset(); {
	case r.TokenURL != "":
		return r.TokenURL
	case r.Issuer != "":
		return ""
	case ok:
		return p.Endpoint.TokenURL
	}
	return strings.TrimSuffix(r.Upstream, "/") + "/token"
}

// AuthorizeEndpoint is the authorization endpoint, for login, known
// without the network: the setting, else the preset's, else COOP's path
// under the upstream; "" with an issuer and no AUTHORIZE_URL.
func (r *Route) AuthorizeEndpoint() string {
	switch p, ok := r.Provider.Preset(); {
	case r.AuthorizeURL != "":
		return r.AuthorizeURL
	case r.Issuer != "":
		return ""
	case ok:
		return p.Endpoint.AuthURL
	}
	return strings.TrimSuffix(r.Upstream, "/") + "/authorize"
}
