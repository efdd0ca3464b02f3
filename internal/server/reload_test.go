package server

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coop-proxy/coop-proxy/internal/config"
	"github.com/coop-proxy/coop-proxy/internal/poll"
)

// freePort is a loopback address no one listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// A route renamed in the file (removed and added at once) keeps its
// listen address: the new route must be served there, not fail to listen
// while the old listener drains; and with settings of its own for the
// token stack of its store key, it gets a stack of its own.
func TestAReloadRenamingARouteKeepsItsListenAddressServed(t *testing.T) {
	for _, changed := range []string{"refresh_margin: 5m", "refresh_margin: 1m"} {
		t.Run(changed, func(t *testing.T) { testRenaming(t, changed) })
	}
}

func testRenaming(t *testing.T, changed string) {
	f := newFarm(t)
	dir := t.TempDir()
	addr := freePort(t)
	r := start(t, fileSettings(t, dir, "routes:\n"+f.route("a", "listen: "+addr, "scopes: eggs-count")), Options{})
	if code, _ := post(t, "http://"+addr+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("a: %d", code)
	}
	http.DefaultClient.CloseIdleConnections() // a drained listener closes its idle connections
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+f.route("b", "listen: "+addr, "scopes: eggs-count", changed)))
	if names := r.srv.current(); len(names) != 1 || names[0].name != "b" {
		t.Fatalf("routes after the rename: %d\n%s", len(names), r.logs.String())
	}
	if code, body := post(t, "http://"+addr+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("b, renamed from a: %d %s", code, body)
	}
}

// A configuration file seen while it is being written (a script appending
// its routes one by one, an editor writing in place) can read as valid
// settings with routes missing: the watcher reads a change once the file
// has stayed as it was at the last look, and a route is not switched off
// by a moment of the write.
func TestAFileBeingWrittenIsReadOnceItSettles(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	sockA, sockB := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	routeA := f.route("a", "listen: unix:"+sockA, "scopes: eggs-count")
	routeB := f.route("b", "listen: unix:"+sockB, "scopes: eggs-count")
	s := fileSettings(t, dir, "routes:\n"+routeA+routeB)
	reread := func() (*config.Settings, error) {
		return config.Load("test", nil, map[string]string{config.EnvPrefix + "CONFIG": s.Config, config.EnvPrefix + "STORE": s.Store,
			config.EnvPrefix + "ADMIN_LISTEN": "127.0.0.1:0"}, config.Everything)
	}
	r := start(t, s, Options{Reread: reread, WatchEvery: 300 * time.Millisecond})
	writeFile(t, s.Config, "routes:\n"+routeA) // half written: b is yet to come
	poll.Until(t, "the change seen", func() bool { return strings.Contains(r.logs.String(), "reloading once it stays unchanged") })
	writeFile(t, s.Config, "routes:\n"+routeA+routeB)
	poll.Until(t, "the reload", func() bool { return strings.Contains(r.logs.String(), "settings reloaded") })
	if logs := r.logs.String(); strings.Contains(logs, "route removed") {
		t.Fatalf("a route was removed by a file half written:\n%s", logs)
	}
	if code, _ := unixDo(t, sockB, "POST", "/api/1/eggs-count"); code != 200 {
		t.Fatalf("b: %d", code)
	}
}

// A reload that comes while the server drains (SIGHUP, or the file
// changing, just after SIGTERM) changes nothing: a route it added opened a
// listener after the drain had listed them, which then outlived Run.
func TestAReloadWhileDrainingChangesNothing(t *testing.T) {
	f := newFarm(t)
	release := make(chan struct{})
	up := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	dir := t.TempDir()
	addrA, addrC := freePort(t), freePort(t)
	routeA := f.route("a", "listen: "+addrA, "upstream: "+up, "token_url: "+f.url+"/token")
	r := start(t, fileSettings(t, dir, "routes:\n"+routeA), Options{})
	inFlight := make(chan struct{})
	go func() {
		defer close(inFlight)
		if resp, err := http.Get("http://" + addrA + "/x"); err == nil {
			resp.Body.Close()
		}
	}()
	poll.Until(t, "a token", func() bool { return r.srv.current()[0].tokens.tokens.Cache.Current() != nil })
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	poll.Until(t, "the drain", func() bool { return strings.Contains(r.logs.String(), "shutting down") })
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeA+f.route("c", "listen: "+addrC, "scopes: eggs-count")))
	close(release)
	<-inFlight
	<-stopped
	if c, err := net.Dial("tcp", addrC); err == nil {
		c.Close()
		t.Fatalf("route c, added while draining, still listens after Run returned:\n%s", r.logs.String())
	}
}

// A route's prefix and listen address change on restart only, so a route a
// reload adds at the prefix another still has in effect would never be
// reached: its callers' requests would go to the other route's API. It is
// refused, and says why.
func TestAReloadAddingARouteAtAPrefixInEffectRefusesIt(t *testing.T) {
	f := newFarm(t)
	upA, upB := echoUpstream(t), echoUpstream(t)
	dir := t.TempDir()
	addr := freePort(t)
	routeA := func(prefix string) string {
		return f.route("a", "listen: "+addr, "path_prefix: "+prefix, "upstream: "+upA, "token_url: "+f.url+"/token")
	}
	r := start(t, fileSettings(t, dir, "routes:\n"+routeA("/x")), Options{})
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeA("/y")+
		f.route("b", "listen: "+addr, "path_prefix: /x", "upstream: "+upB, "token_url: "+f.url+"/token", "scopes: eggs-count")))
	if !strings.Contains(r.logs.String(), `"route added, but it cannot start: keeping the others as they are","route":"b"`) {
		t.Fatalf("b, at a's prefix in effect, was not refused:\n%s", r.logs.String())
	}
	if routes := r.srv.current(); len(routes) != 1 || routes[0].name != "a" {
		t.Fatalf("routes: %d", len(routes))
	}
}

// A route a reload adds to a listener already open gets its own
// REQUEST_TIMEOUT, not the one the listener was opened with for the routes
// then: its answers were cut off at the listener's write deadline.
func TestARouteAddedToAnOpenListenerKeepsItsRequestTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("waits 7 s")
	}
	f := newFarm(t)
	slow := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(7 * time.Second) // past the listener's 1 s + 5 s
		_, _ = w.Write([]byte("report"))
	}))
	dir := t.TempDir()
	addr := freePort(t)
	routeA := f.route("a", "listen: "+addr, "path_prefix: /a", "request_timeout: 1s", "scopes: eggs-count")
	r := start(t, fileSettings(t, dir, "routes:\n"+routeA), Options{})
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+routeA+
		f.route("b", "listen: "+addr, "path_prefix: /b", "upstream: "+slow, "token_url: "+f.url+"/token", "request_timeout: 30s", "upstream_timeout: 30s")))
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get("http://" + addr + "/b/report")
	if err != nil {
		t.Fatalf("b: %v", err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 || string(b) != "report" {
		t.Fatalf("b: %d %q %v", resp.StatusCode, b, err)
	}
}
