package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Problem is what is wrong with one setting, named as the user wrote it.
type Problem struct {
	Setting string // "COOP_PROXY_LISTEN (--listen)", or "route coop: listen" in a configuration file
	Msg     string
	field   string // the Go field name, to rename the setting for a configuration file
}

func (e *Problem) Error() string { return e.Setting + ": " + e.Msg }

// Problems lists every problem a load found, in the order of the settings.
type Problems []error

func (p Problems) Error() string { return p[0].Error() }

// firstPerSetting keeps one problem per setting: a value that could not be
// read is not also reported as out of range.
func (p Problems) firstPerSetting() Problems {
	seen := map[string]bool{}
	var out Problems
	for _, err := range p {
		var pr *Problem
		if errors.As(err, &pr) {
			if seen[pr.Setting] {
				continue
			}
			seen[pr.Setting] = true
		}
		out = append(out, err)
	}
	return out
}

// Add appends err unless it is nil.
func (p *Problems) Add(err error) {
	if err != nil {
		*p = append(*p, err)
	}
}

func problem(field, format string, args ...any) error {
	return &Problem{Setting: SettingName(field), Msg: fmt.Sprintf(format, args...), field: field}
}

// IssuerProblem is a problem with the issuer found once its metadata is read.
func IssuerProblem(msg string) error { return problem("Issuer", "%s", msg) }

// addParseErrors names each value caarlos0/env could not read.
func (p *Problems) addParseErrors(err error, environ map[string]string) {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		p.Add(err)
		return
	}
	for _, e := range agg.Errors {
		var pe env.ParseError
		if !errors.As(e, &pe) {
			p.Add(e)
			continue
		}
		value := environ[EnvPrefix+fieldEnv(pe.Name)]
		var ve *valueError
		switch {
		case errors.As(pe.Err, &ve):
			p.Add(problem(pe.Name, "%s", ve.msg))
		case pe.Type == reflect.TypeFor[time.Duration]():
			p.Add(problem(pe.Name, "%q is not a duration such as 30s or 5m", value))
		case pe.Type.Kind() == reflect.Bool:
			p.Add(problem(pe.Name, "%q is not true or false", value))
		default:
			p.Add(problem(pe.Name, "%q is not a whole number", value))
		}
	}
}

// check validates every route setting the command needs.
func (r *Route) check(need Needs, p *Problems) {
	p.Add(checkURL("Upstream", r.Upstream))
	if r.TokenURL != "" {
		p.Add(checkURL("TokenURL", r.TokenURL))
	}
	if r.AuthorizeURL != "" {
		p.Add(checkURL("AuthorizeURL", r.AuthorizeURL))
	}
	if r.DeviceAuthorizationURL != "" {
		p.Add(checkURL("DeviceAuthorizationURL", r.DeviceAuthorizationURL))
	}
	r.checkProvider(p)
	if need.Client && r.ClientID == "" {
		p.Add(problem("ClientID", "no client id: the application's name as registered on COOP"))
	}
	if need.Client {
		p.Add(r.checkClientAuth())
		p.Add(r.checkDPoP())
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"RefreshMargin", r.RefreshMargin}, {"UpstreamTimeout", r.UpstreamTimeout}, {"RequestTimeout", r.RequestTimeout}, {"TokenTimeout", r.TokenTimeout}} {
		if d.v <= 0 {
			p.Add(problem(d.field, "must be more than 0"))
		}
	}
	if r.RetryBodyLimit < 0 {
		p.Add(problem("RetryBodyLimit", "must be 0 or more"))
	}
	if r.MaxBodyBytes <= 0 {
		p.Add(problem("MaxBodyBytes", "must be more than 0"))
	}
	if r.MaxUpstreamConns <= 0 {
		p.Add(problem("MaxUpstreamConns", "must be more than 0"))
	}
	p.Add(checkPathPrefix(r.PathPrefix))
	if need.Listen {
		p.Add(r.checkFrontDoor())
	}
}

// checkProcess validates every process setting the command needs.
func (s *Settings) checkProcess(need Needs, p *Problems) {
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"ShutdownTimeout", s.ShutdownTimeout}, {"LoginTimeout", s.LoginTimeout}} {
		if d.v <= 0 {
			p.Add(problem(d.field, "must be more than 0"))
		}
	}
	if s.MaxHeaderBytes < 1024 {
		p.Add(problem("MaxHeaderBytes", "must be at least 1024"))
	}
	if s.MaxConns <= 0 {
		p.Add(problem("MaxConns", "must be more than 0"))
	}
	if need.Listen && s.AdminEnabled() {
		p.Add(checkListen("AdminListen", s.AdminListen))
	}
	if need.Store && RedisStore(s.Store) {
		s.checkRedisStore(p)
	}
	if s.Device && s.Paste {
		p.Add(problem("Device", "set either %sDEVICE or %sPASTE, not both: the device grant needs no paste", EnvPrefix, EnvPrefix))
	}
}

// checkPathPrefix: a prefix is a clean absolute path without a trailing
// slash ("/coop", not "/coop/"), so that matching it is plain string
// comparison at a segment boundary and no two spellings mean one prefix.
func checkPathPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasPrefix(prefix, "/") || prefix == "/" || path.Clean(prefix) != prefix || strings.ContainsAny(prefix, "?#%") {
		return problem("PathPrefix", "%q is not a path such as /coop: absolute, without a trailing slash, dot segments, a query or percent-encoding", prefix)
	}
	return nil
}

// checkClientAuth refuses settings the auth style does not use: a key
// beside a secret is a sign the operator thinks one is in use when it is
// the other.
func (r *Route) checkClientAuth() error {
	style := fieldEnv("AuthStyle") + "=" + string(r.AuthStyle)
	for _, f := range []struct {
		field, value string
		usedWith     []AuthStyle
	}{
		{"ClientKeyFile", r.ClientKeyFile, []AuthStyle{AuthPrivateKeyJWT, AuthTLSClientAuth, AuthSelfSignedTLSClientAuth}},
		{"ClientKeyID", r.ClientKeyID, []AuthStyle{AuthPrivateKeyJWT}},
		{"ClientAssertionAudience", r.ClientAssertionAudience, []AuthStyle{AuthPrivateKeyJWT}},
		{"ClientCertFile", r.ClientCertFile, []AuthStyle{AuthTLSClientAuth, AuthSelfSignedTLSClientAuth}},
	} {
		if f.value != "" && !slices.Contains(f.usedWith, r.AuthStyle) {
			return problem(f.field, "only used with %s=%s, not %s", fieldEnv("AuthStyle"), orList(f.usedWith), style)
		}
	}
	if r.AuthStyle.UsesSecret() {
		return nil
	}
	for _, f := range []struct{ field, value string }{{"ClientSecretFile", r.ClientSecretFile}, {"ClientSecret", r.ClientSecret.Reveal()}} {
		if f.value != "" {
			return problem(f.field, "not used with %s: the client authenticates with its key (%sCLIENT_KEY_FILE); remove the secret", style, EnvPrefix)
		}
	}
	return nil
}

// checkDPoP refuses a DPoP key file without DPoP: the operator would
// believe the tokens sender-constrained.
func (r *Route) checkDPoP() error {
	if r.DPoPKeyFile != "" && !r.DPoP {
		return problem("DPoPKeyFile", "only used with %sDPOP=true", EnvPrefix)
	}
	return nil
}

// orList is "a, b or c".
func orList(styles []AuthStyle) string {
	names := make([]string, len(styles))
	for i, v := range styles {
		names[i] = string(v)
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// checkFrontDoor: anyone who can reach the proxy acts as the farmer, so it
// listens beyond loopback only with an inbound secret, or when the operator
// says in so many words that anyone may use it. A Unix socket is guarded by
// its file mode.
func (r *Route) checkFrontDoor() error {
	if path, ok := r.UnixSocket(); ok {
		if !filepath.IsAbs(path) {
			return problem("Listen", "%q: a Unix socket needs an absolute path, as unix:/run/coop-proxy/proxy.sock", r.Listen)
		}
		return nil
	}
	if err := checkListen("Listen", r.Listen); err != nil {
		return err
	}
	if !IsLoopback(r.Listen) && r.InboundSecret == "" && !r.AllowUnauthenticatedCallers {
		return problem("Listen", "%q is reachable from other machines, and whoever reaches coop-proxy acts as the farmer: set %sINBOUND_SECRET_FILE (callers send Proxy-Authorization: Bearer <secret>), or %sALLOW_UNAUTHENTICATED_CALLERS=true to accept that", r.Listen, EnvPrefix, EnvPrefix)
	}
	return nil
}

// ListenKey tells which routes share a listener: those with one listen
// address, except with port 0 (any free port), which gives each route a
// listener of its own.
func (r *Route) ListenKey() string {
	if _, port, err := net.SplitHostPort(r.Listen); err == nil && port == "0" {
		return r.Listen + " " + r.Name
	}
	return r.Listen
}

// UnixSocket returns the socket path of a unix:/path listen address.
func (r *Route) UnixSocket() (string, bool) { return strings.CutPrefix(r.Listen, "unix:") }

// AdminEnabled: an admin listener is wanted ("off", or an empty value, says none).
func (s *Settings) AdminEnabled() bool { return s.AdminListen != "" && s.AdminListen != "off" }

// IsLoopback reports whether a host:port listen address is on loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func checkURL(field, s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		shown := "the value" // it does not parse: where a password in it ends is not known
		if err == nil {
			shown = strconv.Quote(u.Redacted()) // never a password in a message
		}
		return problem(field, "%s is not an http(s) URL with a host", shown)
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

// checkRedisStore checks the Redis store's settings: no password in the
// URL (ps shows it to every user of the machine), sealed grants unless
// plaintext is asked for in so many words, and a lock that outlives the
// token request it covers.
func (s *Settings) checkRedisStore(p *Problems) {
	u, err := url.Parse(s.Store)
	switch {
	case err != nil:
		p.Add(problem("Store", "not a Redis URL (redis://host:6379/0 or rediss://...)"))
	case u.User != nil || u.Query().Has("password") || u.Query().Has("sentinel_password"):
		if _, ok := u.User.Password(); ok || u.User == nil {
			p.Add(problem("Store", "the URL holds a password, which ps shows to every user of the machine: put it in a file and set %sSTORE_PASSWORD_FILE", EnvPrefix))
		}
	case u.Host == "":
		p.Add(problem("Store", "%s names no Redis server (redis://host:6379/0)", s.Store))
	}
	if s.StoreKeyFile == "" && !s.StorePlaintext {
		p.Add(problem("StoreKeyFile", "a Redis store keeps the grants sealed: set it to a file of keys (one base64 32-byte key a line; `head -c 32 /dev/urandom | base64`), or set %sSTORE_PLAINTEXT=true to keep them in Redis unsealed", EnvPrefix))
	}
	if s.StoreKeyFile != "" && s.StorePlaintext {
		p.Add(problem("StorePlaintext", "set either %sSTORE_KEY_FILE or %sSTORE_PLAINTEXT=true, not both", EnvPrefix, EnvPrefix))
	}
	if (s.StoreCertFile == "") != (s.StoreCertKeyFile == "") {
		p.Add(problem("StoreCertFile", "set both %sSTORE_CERT_FILE and %sSTORE_CERT_KEY_FILE, or neither", EnvPrefix, EnvPrefix))
	}
	if s.StoreLockGrace < 0 {
		p.Add(problem("StoreLockGrace", "must be 0 (as long as %sSTORE_LOCK_TTL) or more", EnvPrefix))
	}
	if s.StoreWaitReplicas < 0 {
		p.Add(problem("StoreWaitReplicas", "must be 0 or more"))
	}
	if s.StoreWaitTimeout <= 0 {
		p.Add(problem("StoreWaitTimeout", "must be more than 0"))
	}
	for _, r := range s.AllRoutes() {
		if s.StoreLockTTL <= r.TokenTimeout {
			p.Add(problem("StoreLockTTL", "%s is not more than %sTOKEN_TIMEOUT (%s): a lock must outlive the token request it covers, or another replica could refresh meanwhile", s.StoreLockTTL, EnvPrefix, r.TokenTimeout))
			break
		}
	}
}
