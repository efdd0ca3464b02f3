package server

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/oidctest"
	"github.com/coop-proxy/coop-proxy/internal/poll"
)

// fileSettings loads a configuration file holding text, the store and the
// admin listener in dir.
func fileSettings(t *testing.T, dir, text string) *config.Settings {
	t.Helper()
	file := filepath.Join(dir, "coop-proxy.yaml")
	writeFile(t, file, text)
	s, err := config.Load("test", nil, map[string]string{config.EnvPrefix + "CONFIG": file,
		config.EnvPrefix + "STORE": filepath.Join(dir, "state", "tokens.json"), config.EnvPrefix + "ADMIN_LISTEN": "127.0.0.1:0"}, config.Everything)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// route is a route of a configuration file to the farm, with lines (each
// "key: value") added or replacing the farm's.
func (f *farm) route(name string, lines ...string) string {
	out := "  - name: " + name + "\n"
	for _, l := range []string{"upstream: " + f.url, "client_id: " + f.app.ClientID, "client_secret_file: " + f.secretFile} {
		key, _, _ := strings.Cut(l, ":")
		if !slices.ContainsFunc(lines, func(o string) bool { return strings.HasPrefix(o, key+":") }) {
			out += "    " + l + "\n"
		}
	}
	for _, l := range lines {
		out += "    " + l + "\n"
	}
	return out
}

// post POSTs to url, answering within 5 s.
func post(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(url, "", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// echoUpstream answers with the path it was asked for and the
// Authorization header it got.
func echoUpstream(t *testing.T) string {
	t.Helper()
	srv := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "query": r.URL.RawQuery, "auth": r.Header.Get("Authorization")})
	}))
	return srv
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return "http://" + ln.Addr().String()
}

// unixDo sends a request for path over the Unix socket sock.
func unixDo(t *testing.T, sock, method, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	req, _ := http.NewRequest(method, "http://localhost"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", method, path, sock, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTwoRoutesOnTwoListenersReachTwoUpstreamsWithTheirOwnGrants(t *testing.T) {
	f := newFarm(t)
	p := oidctest.New(t)
	c := p.AddClient(oidctest.Client{ID: "reporting-job", AuthMethod: oidctest.ClientSecretBasic, Scopes: []string{"things:read"}})
	dir := t.TempDir()
	secret := filepath.Join(dir, "things-secret")
	writeFile(t, secret, c.Secret)
	s := fileSettings(t, dir, "routes:\n"+f.route("coop", "listen: 127.0.0.1:0")+
		"  - name: things\n    upstream: "+p.APIURL+"\n    token_url: "+p.TokenURL+"\n    client_id: reporting-job\n"+
		"    client_secret_file: "+secret+"\n    auth_style: client_secret_basic\n    scopes: [things:read]\n    listen: 127.0.0.1:0\n")
	a := start(t, s, Options{}).addrs
	if a.Routes["coop"] == a.Routes["things"] || a.Routes["coop"] == "" {
		t.Fatalf("addresses: %+v", a.Routes)
	}
	if code, body := post(t, "http://"+a.Routes["coop"]+"/api/1/eggs-count"); code != 200 || !strings.Contains(body, "eggs") {
		t.Fatalf("coop route: %d %s", code, body)
	}
	code, body := get(t, "http://"+a.Routes["things"]+"/things/1")
	var seen struct{ Sub, Path string }
	if code != 200 || json.Unmarshal([]byte(body), &seen) != nil || seen.Sub != "reporting-job" || seen.Path != "/things/1" {
		t.Fatalf("things route: %d %s", code, body)
	}
	if reqs := f.em.TokenRequests(); len(reqs) != 1 || reqs[0].ClientID != f.app.ClientID {
		t.Fatalf("COOP's token requests: %+v", reqs)
	}
}

func TestRoutesByPathPrefixShareAListenerAndTheLongestPrefixWins(t *testing.T) {
	f := newFarm(t)
	up1, up2 := echoUpstream(t), echoUpstream(t)
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	dir := t.TempDir()
	s := fileSettings(t, dir, "routes:\n"+
		f.route("coop", "upstream: "+up1, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /coop")+
		f.route("coop-eggs", "upstream: "+up2, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /coop/eggs", "scopes: eggs-count"))
	start(t, s, Options{})

	for _, tt := range []struct{ path, want string }{
		{"/coop/api/x?a=1", `"path":"/api/x","query":"a=1"`},
		{"/coop", `"path":"/"`},
		{"/coop/eggs/api/1/eggs-count", `"path":"/api/1/eggs-count"`},
		{"/coop/eggsy", `"path":"/eggsy"`}, // under /coop, not under /coop/eggs
	} {
		code, body := unixDo(t, sock, "GET", tt.path)
		if code != 200 || !strings.Contains(body, tt.want) || !strings.Contains(body, "Bearer ") {
			t.Errorf("%s: %d %s; want %s", tt.path, code, body, tt.want)
		}
	}
	for _, path := range []string{"/coopers/api/x", "/api/x", "/"} {
		code, body := unixDo(t, sock, "GET", path)
		if code != 404 || !strings.Contains(body, `"error":"not_found"`) || !strings.Contains(body, "/coop/eggs, /coop") {
			t.Errorf("%s: %d %s; want a JSON 404 naming the prefixes", path, code, body)
		}
	}
}

func TestRoutesWithOneStoreKeyShareOneTokenStack(t *testing.T) {
	f := newFarm(t)
	up := echoUpstream(t)
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	s := fileSettings(t, t.TempDir(), "routes:\n"+
		f.route("a", "upstream: "+up, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /a")+
		f.route("b", "upstream: "+up, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /b"))
	r := start(t, s, Options{})
	_, a := unixDo(t, sock, "GET", "/a/x")
	_, b := unixDo(t, sock, "GET", "/b/x")
	if !strings.Contains(a, "Bearer ") || a[strings.Index(a, "auth"):] != b[strings.Index(b, "auth"):] {
		t.Fatalf("the routes used different tokens:\n%s\n%s", a, b)
	}
	if n := len(f.em.TokenRequests()); n != 1 {
		t.Fatalf("%d token requests for one store key, want 1", n)
	}
	if len(r.srv.stacks) != 1 {
		t.Fatalf("%d token stacks", len(r.srv.stacks))
	}
}

// One route's token endpoint hanging slows no other route, and /readyz
// and /metrics say which route is not ready.
func TestAHangingProviderSlowsNoOtherRoute(t *testing.T) {
	f := newFarm(t)
	tokenURL, calls := hangingTokenEndpoint(t)
	s := fileSettings(t, t.TempDir(), "routes:\n"+
		f.route("stuck", "token_url: "+tokenURL, "listen: 127.0.0.1:0")+
		f.route("coop", "listen: 127.0.0.1:0", "scopes: eggs-count"))
	r := start(t, s, Options{})
	a := r.addrs
	poll.Until(t, "the hanging token request", func() bool { return calls.Load() > 0 })

	began := time.Now()
	if code, body := post(t, "http://"+a.Routes["coop"]+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("the other route: %d %s", code, body)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("the other route took %s", d)
	}
	code, body := get(t, r.adm+"/readyz")
	var rz struct {
		Status, Reason string
		Routes         map[string]struct{ Status, Reason string }
	}
	if err := json.Unmarshal([]byte(body), &rz); err != nil || code != 503 || rz.Routes["coop"].Status != "ready" ||
		rz.Routes["stuck"].Status != "not ready" || !strings.HasPrefix(rz.Reason, "stuck: no valid token") {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	_, metrics := get(t, r.adm+"/metrics")
	for _, want := range []string{`coop_proxy_requests_total{code="200",route="coop"} 1`, `coop_proxy_token_fetches_total{outcome="ok",route="coop"} 1`,
		`coop_proxy_token_expiry_seconds{route="stuck"} -1`, `coop_proxy_token_store_durable{route="stuck"} 1`,
		`coop_proxy_upstream_duration_seconds_count{route="coop"} 1`, `coop_proxy_retries_total{route="coop"} 0`, "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAReloadAddsAndRemovesRoutes(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	routeA := f.route("a", "listen: unix:"+sockA, "scopes: eggs-count")
	routeB := f.route("b", "listen: unix:"+sockB, "scopes: eggs-count")
	r := start(t, fileSettings(t, dir, "routes:\n"+routeA), Options{})
	if code, _ := unixDo(t, sockA, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("a: %d", code)
	}

	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeA+routeB))
	if code, _ := unixDo(t, sockB, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("b, added: %d", code)
	}
	if code, body := get(t, r.adm+"/readyz"); code != 200 || !strings.Contains(body, `"b":{"status":"ready"`) {
		t.Fatalf("/readyz with b: %d %s", code, body)
	}

	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeB))
	poll.Until(t, "a's socket removed", func() bool { _, err := os.Stat(sockA); return os.IsNotExist(err) })
	if code, _ := unixDo(t, sockB, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("b, after a was removed: %d", code)
	}
	if _, metrics := get(t, r.adm+"/metrics"); strings.Contains(metrics, `route="a"`) || !strings.Contains(metrics, `route="b"`) {
		t.Fatalf("/metrics after a was removed:\n%s", metrics)
	}
	if got := r.srv.settings.Load(); len(got.Routes) != 1 || got.Routes[0].Name != "b" {
		t.Fatalf("routes in effect: %+v", got.Routes)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
}

// A changed route setting that cannot change live is reported with the
// route and the file's key, and the inbound secret rule holds per route.
func TestAReloadNamesTheRouteOfEachSettingWaitingForARestart(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	inbound := filepath.Join(dir, "inbound")
	writeFile(t, inbound, "open-sesame")
	r := start(t, fileSettings(t, dir, "routes:\n"+f.route("a", "listen: 127.0.0.1:0", "inbound_secret_file: "+inbound)), Options{})
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+f.route("a", "listen: 127.0.0.1:0", "upstream_timeout: 5s")))
	logs := r.logs.String()
	if !strings.Contains(logs, `"route a: upstream_timeout"`) || !strings.Contains(logs, `"route a: inbound_secret_file"`) {
		t.Fatalf("logs:\n%s", logs)
	}
	if code, _ := post(t, r.proxy+"/api/1/eggs-count"); code != http.StatusUnauthorized {
		t.Fatalf("without the inbound secret after the reload: %d, want 401", code)
	}
}

// The configuration file rewritten on disk (as Kubernetes updates a
// ConfigMap volume) is read again: a route added to it starts.
func TestAChangedConfigurationFileIsReloaded(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	routeA := f.route("a", "listen: unix:"+sockA, "scopes: eggs-count")
	s := fileSettings(t, dir, "routes:\n"+routeA)
	reread := func() (*config.Settings, error) {
		return config.Load("test", nil, map[string]string{config.EnvPrefix + "CONFIG": s.Config, config.EnvPrefix + "STORE": s.Store,
			config.EnvPrefix + "ADMIN_LISTEN": "127.0.0.1:0"}, config.Everything)
	}
	r := start(t, s, Options{Reread: reread, WatchEvery: 20 * time.Millisecond})
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(r.logs.String())
		}
	})
	writeFile(t, s.Config, "routes:\n"+routeA+f.route("b", "listen: unix:"+sockB, "scopes: eggs-count"))
	poll.Until(t, "route b's socket", func() bool { _, err := os.Stat(sockB); return err == nil })
	if code, _ := unixDo(t, sockB, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("b, added by editing the file: %d", code)
	}
}

// A route a reload adds whose provider cannot serve its settings stops no
// other route: it answers 503, and the log says why.
func TestAReloadAddingARouteItsProviderCannotServeStopsNothing(t *testing.T) {
	f := newFarm(t)
	is := newIssuer(t, func(string) string {
		return `{"issuer":"https://elsewhere.example","token_endpoint":"` + f.url + `/token"}`
	})
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	routeA := f.route("a", "listen: unix:"+sockA, "scopes: eggs-count")
	r := start(t, fileSettings(t, dir, "routes:\n"+routeA), Options{})
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeA+f.route("b", "listen: unix:"+sockB, "issuer: "+is.url)))
	poll.Until(t, "the provider's refusal in the log", func() bool {
		return strings.Contains(r.logs.String(), "the provider cannot serve the route's settings")
	})
	if code, body := unixDo(t, sockB, "POST", "/api/1/eggs-count"); code != 503 || !strings.Contains(body, "token_endpoint_unavailable") {
		t.Fatalf("b: %d %s", code, body)
	}
	if code, _ := unixDo(t, sockA, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("a: %d", code)
	}
	if !strings.Contains(r.logs.String(), `"route":"b","error":"route b: issuer: `) {
		t.Errorf("the refusal does not name the route and key:\n%s", r.logs.String())
	}
}

// Without a file, PATH_PREFIX serves the environment's route under it.
func TestThePathPrefixOfTheEnvironmentsRoute(t *testing.T) {
	f := newFarm(t)
	up := echoUpstream(t)
	r := start(t, f.settings(t, "UPSTREAM", up, "TOKEN_URL", f.url+"/token", "PATH_PREFIX", "/coop"), Options{})
	if code, body := get(t, r.proxy+"/coop/api/me"); code != 200 || !strings.Contains(body, `"path":"/api/me"`) {
		t.Fatalf("/coop/api/me: %d %s", code, body)
	}
	if code, body := get(t, r.proxy+"/api/me"); code != 404 || !strings.Contains(body, "/coop") {
		t.Fatalf("/api/me: %d %s", code, body)
	}
}

// Routes with one store key share one token stack, built with the first
// route's settings: a second route asking for DPoP (or another credential
// or auth style) would silently get the first's plain bearer tokens.
func TestRoutesSharingAStoreKeyMustAgreeOnTheStacksSettings(t *testing.T) {
	f := newFarm(t)
	s := fileSettings(t, t.TempDir(), "routes:\n"+
		f.route("plain", "listen: 127.0.0.1:0", "scopes: eggs-count")+
		f.route("bound", "listen: 127.0.0.1:0", "scopes: eggs-count", "dpop: true"))
	err := CheckSharedStacks(s.AllRoutes())
	if err == nil || !strings.Contains(err.Error(), "route bound: dpop") || !strings.Contains(err.Error(), "plain") {
		t.Fatalf("CheckSharedStacks: %v", err)
	}
	if _, err := New(s, Options{}); err == nil || !strings.Contains(err.Error(), "route bound: dpop") {
		t.Fatalf("New: %v", err)
	}
}

// A prefix ends at a slash as sent: an encoded slash (%2F) is part of a
// segment, so /coop%2Fx is not under /coop (it was, and reached the
// upstream as /%2Fx, a path the caller never sent under /coop).
func TestAnEncodedSlashIsNoPrefixBoundary(t *testing.T) {
	f := newFarm(t)
	up := echoUpstream(t)
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	s := fileSettings(t, t.TempDir(), "routes:\n"+
		f.route("coop", "upstream: "+up, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /coop")+
		f.route("other", "upstream: "+up, "token_url: "+f.url+"/token", "listen: unix:"+sock, "path_prefix: /café", "scopes: eggs-count"))
	start(t, s, Options{})
	if code, body := unixDo(t, sock, "GET", "/caf%C3%A9/x"); code != 200 || !strings.Contains(body, `"path":"/x"`) {
		t.Errorf("/café/x: %d %s", code, body)
	}
	for _, path := range []string{"/coop%2Fx", "/coop%2F..%2Fother/x", "/co%6Fp/x"} {
		if code, body := unixDo(t, sock, "GET", path); code != 404 {
			t.Errorf("%s: %d %s; want 404", path, code, body)
		}
	}
	if code, body := unixDo(t, sock, "GET", "/coop/a%2Fb"); code != 200 || !strings.Contains(body, `"path":"/a/b"`) {
		t.Errorf("/coop/a%%2Fb: %d %s", code, body)
	}
}

// The 404 for a path under no prefix names the prefixes, unless a route
// there asks callers for an inbound secret: a caller without it must not
// learn which APIs the listener serves.
func TestThe404NamesNoPrefixToCallersOfAGuardedListener(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	inbound := filepath.Join(dir, "inbound")
	writeFile(t, inbound, "open-sesame")
	addr := freePort(t)
	s := fileSettings(t, dir, "routes:\n"+
		f.route("coop", "listen: "+addr, "path_prefix: /coop", "inbound_secret_file: "+inbound)+
		f.route("internal-billing", "listen: "+addr, "path_prefix: /billing", "inbound_secret_file: "+inbound, "scopes: eggs-count"))
	start(t, s, Options{})
	if code, body := get(t, "http://"+addr+"/nope"); code != 404 || strings.Contains(body, "/billing") || strings.Contains(body, "/coop") {
		t.Fatalf("/nope: %d %s", code, body)
	}
}
