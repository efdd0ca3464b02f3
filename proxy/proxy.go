// Package proxy is coop-proxy's HTTP handler: it forwards every request to
// COOP with the caller's own credentials removed and a valid bearer token
// added, retries once when COOP rejects the token, and turns token and
// upstream failures into JSON answers the caller can act on.
package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/coop-proxy/coop-proxy/internal/tokensource"
)

// Tokens is what the handler needs of the token cache.
type Tokens interface {
	// Token returns a token that is not known to be expired, or a
	// *tokensource.Error saying why there is none.
	Token(ctx context.Context) (*tokensource.Token, error)
	// Invalidate reports that COOP rejected the token.
	Invalidate(*tokensource.Token)
	// Current returns the token held now, or nil; it never fetches.
	Current() *tokensource.Token
}

// Options configure a Handler.
type Options struct {
	Upstream *url.URL          // COOP's base URL; the only place requests go
	Tokens   Tokens            // where bearer tokens come from
	Base     http.RoundTripper // the transport to COOP; nil: NewTransport(30s)
	// RetryBodyLimit is the largest request body kept in memory so that the
	// request can be sent again after COOP rejects the token; 0 keeps none.
	// A larger body is streamed, and when COOP rejects the token its request
	// is not sent again: the caller gets 503 + Retry-After to send it again.
	// A form body is read to check it for a caller's token up to the larger
	// of this and 1 MiB, and refused (400) over that.
	RetryBodyLimit int64
	// LoopbackOnly refuses requests whose Host is not a loopback name or
	// address: a web page in a browser on this machine cannot then reach
	// COOP as the farmer through a DNS name rebound to 127.0.0.1.
	LoopbackOnly bool
	// AdminPaths are never forwarded: they belong to the admin listener.
	AdminPaths []string
	// MaxHeaderBytes answers 431 to a larger request header; 0: no limit
	// here (http.Server's own, which answers in plain text, still applies).
	MaxHeaderBytes int
	// MaxBodyBytes answers 413 to a larger request body; 0: no limit.
	MaxBodyBytes int64
	// RequestTimeout bounds a whole request, COOP's answer included (a COOP
	// that stalls in the middle of its body too); 0: none. It is the
	// caller connection's read deadline (see bound), so it applies to
	// requests served by net/http's HTTP/1 server, as serve's are; a
	// request whose body is streamed to COOP has a timer.
	RequestTimeout time.Duration
	Log            *zap.Logger // nil: no log
	// Requests takes one line per request; nil: ZapRequestLog(Log).
	Requests RequestLog
	// Route names the handler's route in its request lines; "" for none
	// (a single route).
	Route   string
	Metrics *Metrics // nil: no metrics
}

// Handler is the reverse proxy. Create it with New.
type Handler struct {
	inbound        atomic.Pointer[[sha256.Size]byte] // the inbound secret's hash; nil: none asked
	maxHeaderBytes int
	maxBodyBytes   int64
	requestTimeout time.Duration
	upstream       *url.URL
	rp             *httputil.ReverseProxy     // what each token's is a copy of
	byToken        atomic.Pointer[tokenProxy] // the last token's (see proxyFor)
	forwarded      forwarded
	bearer         *bearer
	retryBodyLimit int64
	loopbackOnly   bool
	adminPaths     []string // a few: compared, not hashed, on every request
	requests       RequestLog
	route          string
	metrics        *Metrics
}

// maxUpstreamHeaderBytes is the largest response header read from COOP; a
// larger one is a 502.
const maxUpstreamHeaderBytes = 1 << 20

// NewTransport returns the transport to COOP: keep-alive connections enough
// for a busy sidecar, a bound on the wait for COOP's response headers, and
// on COOP's silence in the middle of an answer (silentConn).
func NewTransport(upstreamTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: nil, // coop-proxy talks to COOP directly
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &silentConn{Conn: c, limit: 2 * upstreamTimeout}, nil
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: upstreamTimeout,
		// COOP's headers are a few hundred bytes; net/http's default
		// would hold up to 10 MiB per request of a broken upstream.
		MaxResponseHeaderBytes: maxUpstreamHeaderBytes,
		ExpectContinueTimeout:  time.Second,
	}
}

// New returns the handler.
func New(o Options) *Handler {
	if o.Base == nil {
		o.Base = NewTransport(30 * time.Second)
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	h := &Handler{
		upstream:       o.Upstream,
		retryBodyLimit: max(o.RetryBodyLimit, 0),
		loopbackOnly:   o.LoopbackOnly,
		maxHeaderBytes: o.MaxHeaderBytes,
		maxBodyBytes:   o.MaxBodyBytes,
		requestTimeout: o.RequestTimeout,
		adminPaths:     slices.Clone(o.AdminPaths),
		requests:       o.Requests,
		route:          o.Route,
		metrics:        o.Metrics,
	}
	if h.requests == nil {
		h.requests = ZapRequestLog(o.Log)
	}
	h.bearer = &bearer{base: o.Base, tokens: o.Tokens, metrics: o.Metrics}
	h.rp = &httputil.ReverseProxy{
		Rewrite: h.rewrite,
		// A status under 100 ("099" is read by Go's client) would make
		// ReverseProxy call WriteHeader with it, which panics.
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode < 100 {
				return fmt.Errorf("COOP answered with status %d", resp.StatusCode)
			}
			return nil
		},
		Transport:    h.bearer,
		ErrorHandler: h.errorHandler,
		ErrorLog:     zap.NewStdLog(o.Log.Named("reverseproxy")),
		BufferPool:   newBufferPool(),
	}
	return h
}

// SetInboundSecret sets the secret callers must present, or none with "".
// It may be called while serving (a reload).
func (h *Handler) SetInboundSecret(secret string) {
	if secret == "" {
		h.inbound.Store(nil)
		return
	}
	sum := sha256.Sum256([]byte(secret))
	h.inbound.Store(&sum)
}

// inboundOK reports whether the request carries the inbound secret, as
// "Proxy-Authorization: Bearer S" (RFC 9110 §11.7.2, removed before
// forwarding as a hop-by-hop field) or "Authorization: Bearer S" (replaced
// before forwarding). Hashing first makes the comparison constant-time
// whatever the lengths.
func (h *Handler) inboundOK(r *http.Request) bool {
	want := h.inbound.Load()
	if want == nil {
		return true
	}
	for _, name := range [...]string{"Proxy-Authorization", "Authorization"} {
		v := r.Header.Get(name)
		if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			got := sha256.Sum256([]byte(v[7:]))
			if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
				return true
			}
		}
	}
	return false
}

// rewrite builds the outbound request. ProxyRequest.SetURL points it at COOP
// and sets Host to COOP's; Rewrite has already removed hop-by-hop headers
// (RFC 9110 §7.6.1) and any X-Forwarded-* the caller sent. The
// Authorization header is set by the token's own Rewrite (see proxyFor).
func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	// A caller's DPoP proof is not for coop-proxy's token (RFC 9449 §7.1),
	// and COOP would read it with ours. With a DPoP-bound token, bearer
	// adds a proof of its own (see proving).
	delete(pr.Out.Header, "Dpop")
	// No protocol switch (h2c, websocket): COOP serves none, and a 101 would
	// make the connection a raw tunnel to COOP, where the caller's bytes
	// (its own token among them) pass unchecked. ReverseProxy has put these
	// back after removing the hop-by-hop fields; a 101 is now its error.
	delete(pr.Out.Header, "Upgrade")
	delete(pr.Out.Header, "Connection")
	// Trailer fields (RFC 9110 §6.5) could carry one too: none is forwarded.
	pr.Out.Trailer = nil
	// After the deletions, which cost a hash each only in a header that
	// has fields: often none of the caller's are left by now.
	pr.SetURL(h.upstream)
	h.forwarded.set(pr)
}

// forwarded sets X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto on
// an outbound request, as ProxyRequest.SetXForwarded does (Rewrite has
// removed the caller's own, so there is no earlier hop to keep). The value
// slices of the last caller address and Host are kept and shared by the
// requests that have the same, nearly all of a sidecar's: SetXForwarded
// allocates three and canonicalizes three names on every request, a twentieth
// of what a request allocates. Nothing changes a value slice once set, and
// one of capacity one is copied by an append.
type forwarded struct {
	last atomic.Pointer[forwardedValues]
}

type forwardedValues struct {
	ip, host       string
	forIP, forHost []string
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

func (f *forwarded) set(pr *httputil.ProxyRequest) {
	out := pr.Out.Header
	ip, _, err := net.SplitHostPort(pr.In.RemoteAddr)
	v := f.last.Load()
	if v == nil || v.ip != ip || v.host != pr.In.Host {
		v = &forwardedValues{ip: ip, host: pr.In.Host, forIP: []string{ip}, forHost: []string{pr.In.Host}}
		f.last.Store(v)
	}
	if err == nil {
		out["X-Forwarded-For"] = v.forIP
	}
	out["X-Forwarded-Host"] = v.forHost
	if pr.In.TLS == nil {
		out["X-Forwarded-Proto"] = protoHTTP
	} else {
		out["X-Forwarded-Proto"] = protoHTTPS
	}
}

// ServeHTTP checks the request, removes a token the caller put in it, keeps
// a small body for a possible retry, forwards it, and logs one line.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := recorders.Get().(*recorder)
	*rec = recorder{ResponseWriter: w, status: http.StatusOK, http10: !r.ProtoAtLeast(1, 1),
		line: RequestLine{Route: h.route, Method: r.Method, Path: r.URL.Path}}
	defer h.account(rec, start)
	if r.Context().Err() != nil {
		connectionSpent(rec)
		return
	}
	if !h.admit(rec, r) {
		return
	}
	query, ok := stripTokenFields(r.URL.RawQuery)
	if !ok {
		refuse(rec, r, http.StatusBadRequest, "invalid_query",
			"the query string could not be parsed (a ';', or a '%' without two hex digits), so it cannot be checked for a caller's access_token")
		return
	}
	if query != r.URL.RawQuery {
		u := *r.URL
		u.RawQuery = query
		r.URL = &u
	}
	if h.maxBodyBytes > 0 && r.ContentLength != 0 {
		// w, not rec: past the limit, it has the server close the connection
		r.Body = http.MaxBytesReader(w, r.Body, h.maxBodyBytes)
	}
	if h.requestTimeout > 0 {
		rec.state.deadline = start.Add(h.requestTimeout)
	}
	if err := h.readBody(r); err != nil {
		h.bodyRefused(rec, r, err)
		return
	}
	if rec.state.body, _ = r.Body.(*callerBody); rec.state.body != nil && h.requestTimeout > 0 {
		// COOP may answer before reading a streamed body to its end, and
		// then nothing more is read of the caller's connection: its read
		// deadline would never be noticed (see bound). A timer bounds such
		// a request instead; bodies over RETRY_BODY_LIMIT are rare enough
		// for its cost.
		ctx, cancel := context.WithDeadline(r.Context(), rec.state.deadline)
		defer cancel()
		r = r.WithContext(ctx)
	} else {
		bound(w, rec.state.deadline)
	}
	if h.forward(rec, r); rec.state.retry {
		h.retry(rec, r)
	}
}

// forward sends r to COOP with a token, through the token's ReverseProxy.
func (h *Handler) forward(rec *recorder, r *http.Request) {
	tok, err := h.bearer.tokens.Token(r.Context())
	if err != nil {
		if pastDeadline(rec, r) {
			err = errNoTokenInTime // not COOP's timeout: COOP was not asked
		}
		h.errorHandler(rec, r, err)
		return
	}
	h.proxyFor(tok).ServeHTTP(rec, r)
}

// tokenProxy is the ReverseProxy of one token.
type tokenProxy struct {
	tok *tokensource.Token
	rp  *httputil.ReverseProxy
}

// proxyFor returns the ReverseProxy that sends requests with tok, built
// once per token: its Rewrite sets the Authorization header of the
// outbound request, replacing the caller's, as a bare ReverseProxy sets a
// fixed one. COOP refuses a token sent two ways at once (RFC 6750 §2: "MUST
// NOT use more than one method"), and the caller's own credentials are not
// ours to forward (RFC 6750 §2.1); ServeHTTP has removed the caller's token
// from the query and the form. Set on the inbound request instead, the
// header would be copied with it and go through ReverseProxy's removal of
// hop-by-hop fields, a dozen map deletions that then find a field to hash
// each time. (Header names are canonical here, so the map is used directly;
// requests share the value: nothing changes a header value slice once set.)
// A DPoP-bound token's requests go through proving, which adds a proof to
// each: known by its ReverseProxy, the token is not looked up per request.
func (h *Handler) proxyFor(tok *tokensource.Token) *httputil.ReverseProxy {
	if tp := h.byToken.Load(); tp != nil && tp.tok == tok {
		return tp.rp
	}
	value := []string{tok.Header()}
	rp := *h.rp
	rp.Rewrite = func(pr *httputil.ProxyRequest) {
		h.rewrite(pr)
		pr.Out.Header["Authorization"] = value
	}
	if tok.DPoP() != nil {
		rp.Transport = proving{h.bearer, tok}
	}
	h.byToken.Store(&tokenProxy{tok, &rp})
	return &rp
}

// retry sends a request again, once, after COOP rejected its token (RFC 6750
// §3.1 invalid_token: "expired, revoked, malformed, or invalid for other
// reasons"): the token, not the request, was at fault, and bearer has
// dropped it, so forward gets a new one. Or after COOP asked for a DPoP
// nonce (RFC 9449 §9): bearer keeps it, and the new proof carries it.
// errorHandler asks for it, having answered nothing.
func (h *Handler) retry(rec *recorder, r *http.Request) {
	rec.state.retry, rec.state.retried = false, true
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			h.errorHandler(rec, r, err)
			return
		}
		r.Body = body
	}
	h.metrics.retry()
	h.forward(rec, r)
}

// account logs and counts a request when ServeHTTP ends, also when
// ReverseProxy aborts the response by panicking (http.ErrAbortHandler, when
// COOP's body fails after the headers went out): the panic goes on to
// net/http, which closes the connection. The request's end is its start
// and the time since, on the monotonic clock: the wall clock is read once.
// Its method and path were noted at its start: the request is out of the
// processor's caches by now, and under perf its two loads here were four
// fifths of account's time.
func (h *Handler) account(rec *recorder, start time.Time) {
	p := recover()
	h.metrics.request(rec.status)
	d := time.Since(start)
	l := &rec.line
	l.End, l.Duration, l.Status, l.Bytes = start.Add(d), d, rec.status, rec.bytes
	l.Retried, l.Aborted = rec.state.retried, p != nil
	h.requests.Request(l)
	if p != nil {
		panic(p)
	}
	// Nothing uses the recorder once ServeHTTP returns (ReverseProxy's
	// flushing stops before it does); one a panic left is not reused.
	*rec = recorder{}
	recorders.Put(rec)
}

// recorders are the handler's recorders, one per request in flight: the
// allocation ReverseProxy alone does not make.
var recorders = sync.Pool{New: func() any { return new(recorder) }}

// admit refuses what a reverse proxy for one upstream must not forward.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case !h.inboundOK(r):
		w.Header().Set("WWW-Authenticate", `Bearer realm="coop-proxy"`)
		refuse(w, r, http.StatusUnauthorized, "inbound_credential_required",
			"coop-proxy requires its inbound secret: send Proxy-Authorization: Bearer <secret>")
	case h.maxHeaderBytes > 0 && headerSize(r) > h.maxHeaderBytes:
		refuse(w, r, http.StatusRequestHeaderFieldsTooLarge, "header_too_large",
			fmt.Sprintf("the request header is larger than %d bytes", h.maxHeaderBytes))
	case h.maxBodyBytes > 0 && r.ContentLength > h.maxBodyBytes:
		h.tooLarge(w, r)
	case r.Method == http.MethodConnect:
		refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "coop-proxy is not a forward proxy: CONNECT is refused")
	case r.URL.IsAbs() && !strings.EqualFold(r.URL.Host, h.upstream.Host):
		// absolute-form (RFC 9112 §3.2.2) is accepted only for COOP itself
		refuse(w, r, http.StatusBadRequest, "foreign_host", fmt.Sprintf("coop-proxy forwards only to %s", h.upstream.Host))
	case slices.Contains(h.adminPaths, r.URL.Path):
		refuse(w, r, http.StatusNotFound, "not_found", r.URL.Path+" is served on the admin listener, not here")
	case h.loopbackOnly && !r.URL.IsAbs() && !isLoopbackHost(r.Host):
		refuse(w, r, http.StatusForbidden, "host_not_allowed", "coop-proxy on a loopback address answers only requests addressed to 127.0.0.1, [::1] or localhost")
	case first(r.Header, "Origin") != "" || first(r.Header, "Sec-Fetch-Site") == "cross-site":
		// A page in a browser must not act as the farmer (cross-site request forgery).
		refuse(w, r, http.StatusForbidden, "browser_request_refused", "requests from web pages (with an Origin header) are refused")
	default:
		return true
	}
	return false
}

// first is h.Get(key) for a canonical key, without canonicalizing it again
// (net/http's server has made the request's keys canonical).
func first(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h *Handler) tooLarge(w http.ResponseWriter, r *http.Request) {
	refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
		fmt.Sprintf("the request body is larger than %d bytes", h.maxBodyBytes))
}

// headerSize approximates the size of the request line and header on the wire.
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// readBody reads a body up to the retry limit into memory and sets GetBody,
// so that the request can be sent a second time; a larger body is left to
// stream (its request will not be retried). It reads a form up to its own
// limit to remove the fields COOP would read as a token, and refuses one it
// cannot check.
func (h *Handler) readBody(r *http.Request) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	form := formOf(r.Header)
	limit := h.retryBodyLimit
	if form != notForm {
		limit = max(limit, formCheckLimit)
	}
	if r.ContentLength > limit || limit == 0 {
		if form != notForm {
			return formTooLarge(limit)
		}
		r.Body = &callerBody{ReadCloser: r.Body}
		return nil
	}
	buf, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return err
	}
	if int64(len(buf)) > limit {
		if form != notForm {
			return formTooLarge(limit)
		}
		// chunked and larger than the limit: stream what was read, then the rest
		r.Body = &callerBody{ReadCloser: struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}}
		return nil
	}
	keep := int64(len(buf)) <= h.retryBodyLimit
	if form != notForm {
		if buf, err = checkForm(form, r.Header, buf); err != nil {
			return &refusal{http.StatusBadRequest, "invalid_form",
				"the form cannot be checked for a caller's access_token: it does not parse as COOP reads it (a ';', a '%' without two hex digits, a multipart boundary read two ways), or it has a Content-Encoding"}
		}
	}
	r.ContentLength = int64(len(buf))
	r.Body = io.NopCloser(bytes.NewReader(buf))
	if keep {
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	}
	return nil
}

// bound ends the request at deadline (none when zero), COOP's answer
// included, with the caller connection's read deadline rather than a timer
// of its own (a context timer per request was the costliest thing on this
// path). Once the request's body has been read to its end, net/http reads
// the connection in the background to notice a caller going away, and a
// failed read, the deadline's too, cancels the request's context, which
// stops the round trip to COOP. net/http clears the deadline when that
// background read starts: bound is called after the body has been read to
// its end (a body streamed to COOP has a timer instead, see ServeHTTP). A
// caller that pipelines its next request while this one is forwarded ends
// that background read with the next request's first byte: the deadline then
// goes unnoticed, and what bounds the request is the transport's: COOP's
// headers within UPSTREAM_TIMEOUT, and no longer silence than that (up to
// twice that) in the middle of its answer (silentConn).
func bound(w http.ResponseWriter, deadline time.Time) {
	if d, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok && !deadline.IsZero() {
		_ = d.SetReadDeadline(deadline)
	}
}

// callerBody is a body streamed to COOP as it arrives. It notes a failure
// to read it from the caller: net/http then cancels the request's context
// (the caller's connection failed), and the forward fails with an error
// that, without this note, reads as the caller gone (nothing answered, and
// net/http sends an empty 200 when the caller is still reading) or as COOP's
// fault (504, 502).
type callerBody struct {
	io.ReadCloser
	reading sync.Mutex // held by Read: see failed
	err     atomic.Pointer[error]
}

func (b *callerBody) Read(p []byte) (int, error) {
	b.reading.Lock()
	defer b.reading.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err.Store(&err)
	}
	return n, err
}

// failed returns the error reading the body from the caller, or nil. With
// wait, it first waits for a Read in progress (the transport reads in its
// own goroutine): only when the caller's connection has failed, so that the
// Read returns at once.
func (b *callerBody) failed(wait bool) error {
	if wait {
		b.reading.Lock()
		defer b.reading.Unlock()
	}
	if err := b.err.Load(); err != nil {
		return *err
	}
	return nil
}

func formTooLarge(limit int64) error {
	return &refusal{http.StatusBadRequest, "form_too_large", fmt.Sprintf(
		"the form body is larger than %d bytes, the most coop-proxy reads to check a form for a caller's access_token: raise COOP_PROXY_RETRY_BODY_LIMIT to send a larger one", limit)}
}

// bodyRefused answers a request whose body could not be read or checked.
func (h *Handler) bodyRefused(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	var rf *refusal
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		h.tooLarge(w, r)
	case errors.As(err, &rf):
		refuse(w, r, rf.status, rf.code, rf.description)
	case errors.As(err, &ne) && ne.Timeout():
		// the server's read deadline (REQUEST_TIMEOUT) passed mid-body
		refuse(w, r, http.StatusRequestTimeout, "request_timeout", "the request body did not arrive in time")
	default:
		refuse(w, r, http.StatusBadRequest, "invalid_request", "the request body could not be read")
	}
}

// isLoopbackHost reports whether a Host names a loopback host. The Host of
// nearly every request to a loopback listener, 127.0.0.1 or localhost with
// a port, is known for one without parsing it (what net.SplitHostPort
// would split as that host).
func isLoopbackHost(hostport string) bool {
	for _, name := range [...]string{"127.0.0.1", "localhost"} {
		if rest, ok := strings.CutPrefix(hostport, name); ok && (rest == "" || rest[0] == ':' && portOnly(rest[1:])) {
			return true
		}
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host) // net.ParseIP's allocation is not needed
	return err == nil && ip.Zone() == "" && ip.IsLoopback()
}

// portOnly reports whether what follows a host's colon has none of the
// bytes that make net.SplitHostPort refuse it: another colon, or a bracket.
func portOnly(s string) bool {
	for i := range len(s) {
		if s[i] == ':' || s[i] == '[' || s[i] == ']' {
			return false
		}
	}
	return true
}

// requestState is what the handler keeps of a request while forwarding it:
// whether it must be sent again with a new token (errorHandler's ask) and
// whether it was (for the log line), a body streamed from the caller (to
// blame a failed forward on the right side), and when the request must end
// (zero: no bound).
type requestState struct {
	retry, retried bool
	body           *callerBody // the body when streamed, not kept
	deadline       time.Time
}

// recorder notes the status and size of the answer for the log and metrics.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	http10 bool // the caller's request is HTTP/1.0
	state  requestState
	line   RequestLine // here, not on the heap of its own
}

func (r *recorder) WriteHeader(code int) {
	switch {
	case code >= 200:
		r.status = code
		r.closePastDeadline()
	case r.http10:
		// COOP's 1xx (ReverseProxy passes them on) comes before the final
		// answer, but "a server MUST NOT send a 1xx response to an
		// HTTP/1.0 client" (RFC 9110 §15.2): it would read it as the answer.
		return
	}
	r.ResponseWriter.WriteHeader(code)
}

// closePastDeadline marks the answer "Connection: close" once the request's
// deadline has passed: net/http's HTTP/1 server notices it (see bound) by
// cancelling the connection's context, not only the request's, and every
// later request on a connection kept alive would start cancelled. The answer
// is the 504 for COOP's silence, or COOP's own, arrived as the deadline
// passed.
func (r *recorder) closePastDeadline() {
	if !r.state.deadline.IsZero() && time.Until(r.state.deadline) <= 0 { // the monotonic clock alone
		r.Header().Set("Connection", "close")
	}
}

func (r *recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
