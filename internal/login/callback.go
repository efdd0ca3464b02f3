package login

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on the loopback listener's server: the browser is local, so
// anything slower is not a browser.
const (
	readHeaderTimeout = 10 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// errStopped is what the browser is told when its answer came after Run
// stopped waiting.
var errStopped = errors.New("the login command stopped waiting for this answer: run coop-proxy login again")

// listen opens the loopback listener on exactly the redirect URI's address
// (RFC 8252 §7.3).
func listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, &ListenError{Addr: addr, Err: err}
	}
	return ln, nil
}

// callback is one authorization response reaching the listener; Run answers
// on reply with the outcome the browser is shown.
type callback struct {
	query url.Values
	reply chan<- error
}

// callbackHandler serves the redirect URI's path once (RFC 8252 §7.3): the
// first GET there is the authorization response, handed to Run; later ones
// are told the login is over.
type callbackHandler struct {
	path      string
	claimed   atomic.Bool
	callbacks chan<- callback // buffered 1: only the first request sends
	done      <-chan struct{} // closed when Run stops waiting
	server    string          // Config.Server: who gave the grant, for the page
}

func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != h.path {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.claimed.CompareAndSwap(false, true) {
		writePage(w, http.StatusOK, page{Title: "coop-proxy: login done", Heading: "This login is already done"})
		return
	}
	reply := make(chan error, 1)
	h.callbacks <- callback{query: r.URL.Query(), reply: reply}
	var err error
	select {
	case err = <-reply:
	case <-h.done:
		select {
		case err = <-reply:
		default:
			err = errStopped
		}
	case <-r.Context().Done():
		return
	}
	if err != nil {
		writePage(w, http.StatusBadRequest, page{Title: "coop-proxy: login failed", Heading: "The login to coop-proxy failed", Text: sentence(err.Error())})
		return
	}
	gave := "The authorization server"
	if h.server != "" {
		gave = h.server
	}
	writePage(w, http.StatusOK, page{Title: "coop-proxy: logged in", Heading: "You are logged in to coop-proxy",
		Text: gave + " gave coop-proxy your grant. The terminal where you ran the login says who is logged in and where the grant is stored."})
}

// page is what the browser shows: how the login went (Title, Heading), why
// or what next (Text, may be empty), and that the tab is no longer needed.
type page struct{ Title, Heading, Text string }

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em;line-height:1.5}</style>
</head><body>
<h1>{{.Heading}}</h1>
{{with .Text}}<p>{{.}}</p>
{{end}}<p>You can close this tab.</p>
</body></html>
`))

// sentence makes an error message read as a sentence on the page.
func sentence(msg string) string {
	if msg == "" {
		return ""
	}
	r, n := utf8.DecodeRuneInString(msg)
	msg = string(unicode.ToUpper(r)) + msg[n:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

// writePage answers the browser with a small page. The URL it answers holds
// the code, so the page is not cached and sends no referrer.
func writePage(w http.ResponseWriter, status int, p page) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTemplate.Execute(w, p)
}

// serve waits on ln for the browser to come back from COOP, then finishes
// the login and shuts the listener down.
func (f *flow) serve(ctx context.Context, ln net.Listener) (*Result, error) {
	callbacks := make(chan callback, 1)
	done := make(chan struct{})
	srv := &http.Server{
		Handler:           &callbackHandler{path: pathOrRoot(f.redirect.Path), callbacks: callbacks, done: done, server: f.cfg.Server},
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		IdleTimeout:       readHeaderTimeout,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan struct{})
	var serveErr error
	go func() {
		defer close(served)
		serveErr = srv.Serve(ln)
	}()
	defer func() {
		close(done)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		if srv.Shutdown(shutdownCtx) != nil {
			srv.Close()
		}
		<-served
	}()

	f.printURL()
	fmt.Fprintf(f.cfg.Out, "Waiting up to %s for the browser to come back to %s\n", f.cfg.Timeout, f.cfg.OAuth.RedirectURL)
	if f.cfg.OpenBrowser != nil {
		if err := f.cfg.OpenBrowser(f.authURL); err != nil {
			fmt.Fprintln(f.cfg.Out, "Could not open a browser: open the address above yourself.")
		}
	}

	timer := time.NewTimer(f.cfg.Timeout)
	defer timer.Stop()
	select {
	case cb := <-callbacks:
		res, err := f.finish(ctx, cb.query)
		cb.reply <- err
		return res, err
	case <-timer.C:
		return nil, f.timeoutError()
	case <-ctx.Done():
		return nil, fmt.Errorf("login cancelled: %w", ctx.Err())
	case <-served:
		return nil, fmt.Errorf("the listener for COOP's redirect on %s stopped: %w", ln.Addr(), serveErr)
	}
}
