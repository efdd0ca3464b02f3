package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// adminHandler serves /healthz, /readyz and /metrics. None of them waits on
// a token fetch or the token store: they read what is in memory.
func (srv *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", srv.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(prometheus.GathererFunc(srv.gather), promhttp.HandlerOpts{}))
	return mux
}

// gather merges the process's metrics with each route's (labelled with
// its name): a route a reload removes takes its series with it.
func (srv *Server) gather() ([]*dto.MetricFamily, error) {
	gs := prometheus.Gatherers{srv.reg}
	for _, rt := range srv.current() {
		gs = append(gs, rt.reg)
	}
	return gs.Gather()
}

// current is the routes in effect.
func (srv *Server) current() []*route {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	return srv.routes
}

func expiresIn(tk *Tokens) float64 {
	t := tk.Cache.Current()
	if t == nil {
		return -1
	}
	return time.Until(t.Expiry).Seconds()
}

// routeReady is one route's readiness: ready when its stack holds a valid
// token and every token in use is in the store.
type routeReady struct {
	Status    string `json:"status"`
	Reason    string `json:"reason,omitempty"`
	ExpiresIn *int   `json:"token_expires_in_seconds,omitempty"`
}

func (rt *route) ready() routeReady {
	tk := rt.tokens.tokens
	t := tk.Cache.Current()
	reason := ""
	switch {
	case t == nil || (!t.Expiry.IsZero() && time.Now().After(t.Expiry)):
		reason = "no valid token"
		if e := tk.Cache.LastError(); e != nil {
			reason += ": " + e.Error()
		} else {
			reason += " yet: fetching one"
		}
	case !tk.Stored.Durable():
		reason = "new tokens are not yet written to the token store"
	}
	if reason != "" {
		return routeReady{Status: "not ready", Reason: reason}
	}
	rr := routeReady{Status: "ready"}
	if !t.Expiry.IsZero() {
		in := int(time.Until(t.Expiry).Seconds())
		rr.ExpiresIn = &in
	}
	return rr
}

// readyz is ready when every route is, and the proxy is not draining. The
// answer names each route and why it is not ready; the top-level reason
// names the routes not ready (with one route, as it always has, its reason
// alone).
func (srv *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	routes := srv.current()
	byName := map[string]routeReady{}
	var reasons []string
	for _, rt := range routes {
		rr := rt.ready()
		byName[rt.name] = rr
		if rr.Reason != "" {
			reasons = append(reasons, rt.name+": "+rr.Reason)
		}
	}
	answer := map[string]any{"status": "ready", "routes": byName}
	if srv.storeMetrics != nil {
		// The held tokens serve on; a route whose token runs out says
		// store_unavailable itself.
		if down := srv.storeMetrics.unavailable(); down != "" {
			answer["store"] = down
		}
	}
	switch {
	case srv.draining.Load():
		reasons = []string{"shutting down"}
	case len(routes) == 1 && len(reasons) == 1:
		reasons = []string{byName[routes[0].name].Reason}
	case len(routes) == 1 && byName[routes[0].name].ExpiresIn != nil:
		answer["token_expires_in_seconds"] = *byName[routes[0].name].ExpiresIn
	}
	if len(reasons) > 0 {
		answer["status"], answer["reason"] = "not ready", strings.Join(reasons, "; ")
		writeJSON(w, http.StatusServiceUnavailable, answer)
		return
	}
	writeJSON(w, http.StatusOK, answer)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
