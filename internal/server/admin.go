package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves /healthz, /readyz and /metrics. None of them waits on
// a token fetch or the token store: they read what is in memory.
func (srv *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET /readyz", srv.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(srv.reg, promhttp.HandlerOpts{}))
	return mux
}

func (srv *Server) expiresIn() float64 {
	t := srv.tokens.Cache.Current()
	if t == nil {
		return -1
	}
	return time.Until(t.Expiry).Seconds()
}

// readyz is ready when a valid token is held, every token in use is in the
// store, and the proxy is not draining.
func (srv *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	reason := ""
	t := srv.tokens.Cache.Current()
	switch {
	case srv.draining.Load():
		reason = "shutting down"
	case t == nil || (!t.Expiry.IsZero() && time.Now().After(t.Expiry)):
		reason = "no valid token"
		if e := srv.tokens.Cache.LastError(); e != nil {
			reason += ": " + e.Error()
		} else {
			reason += " yet: fetching one"
		}
	case !srv.tokens.Stored.Durable():
		reason = "new tokens are not yet written to the token store"
	}
	if reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
		return
	}
	ready := map[string]any{"status": "ready"}
	if !t.Expiry.IsZero() {
		ready["token_expires_in_seconds"] = int(time.Until(t.Expiry).Seconds())
	}
	writeJSON(w, http.StatusOK, ready)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
