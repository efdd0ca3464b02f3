package server

import (
	"net"
	"net/http"
	"testing"
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
// while the old listener drains.
func TestAReloadRenamingARouteKeepsItsListenAddressServed(t *testing.T) {
	f := newFarm(t)
	dir := t.TempDir()
	addr := freePort(t)
	r := start(t, fileSettings(t, dir, "routes:\n"+f.route("a", "listen: "+addr, "scopes: eggs-count")), Options{})
	if code, _ := post(t, "http://"+addr+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("a: %d", code)
	}
	http.DefaultClient.CloseIdleConnections() // a drained listener closes its idle connections
	r.srv.Reload(fileSettings(t, dir, "routes:\n"+f.route("b", "listen: "+addr, "scopes: eggs-count")))
	if names := r.srv.current(); len(names) != 1 || names[0].name != "b" {
		t.Fatalf("routes after the rename: %d\n%s", len(names), r.logs.String())
	}
	if code, body := post(t, "http://"+addr+"/api/1/eggs-count"); code != 200 {
		t.Fatalf("b, renamed from a: %d %s", code, body)
	}
}
