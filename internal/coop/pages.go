package coop

import (
	"bytes"
	"html/template"
	"net/http"
	"sync"
)

// pages are COOP's HTML pages. html/template escapes everything they show.
// They are parsed on first use: the package is in every coop-proxy process,
// and what initialization leaves on the heap, every collection scans.
var pages = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("pages").Parse(`
{{define "head"}}<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">{{end}}

{{define "home"}}{{template "head"}}<title>COOP</title></head><body>
<h1>COOP</h1>
<p>The Chicken Oversight Operations Platform. <a href="/login">Login</a></p>
</body></html>
{{end}}

{{define "login"}}{{template "head"}}<title>Login - COOP</title></head><body>
<h1>Login</h1>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<label>Email <input type="email" name="email" value="{{.Email}}"></label>
<label>Password <input type="password" name="password"></label>
<input type="hidden" name="return_to" value="{{.ReturnTo}}">
<button type="submit">Login!</button>
</form>
</body></html>
{{end}}

{{define "consent"}}{{template "head"}}<title>Authorize "{{.ClientID}}"</title></head><body>
<h1>Authorize "{{.ClientID}}"</h1>
<p>Welcome, chicken owner!</p>
<p>"{{.ClientID}}" would like to:</p>
<ul>
{{range .Scopes}}<li><strong>{{.Name}}</strong>{{with .Meaning}}: {{.}}{{end}}</li>
{{else}}<li>know nothing more than that you use it</li>
{{end}}</ul>
<p><a href="{{.Approve}}">Yes, I Authorize This Request</a></p>
<p><a href="{{.Deny}}">get me out of here!</a></p>
</body></html>
{{end}}

{{define "error"}}{{template "head"}}<title>Error - COOP</title></head><body>
<h1>Error</h1>
<p class="error">{{.}}</p>
</body></html>
{{end}}

{{define "notfound"}}{{template "head"}}<title>Not Found - COOP</title></head><body>
<h1>Not Found</h1>
<p>Sorry, the page you are looking for could not be found.</p>
</body></html>
{{end}}

{{define "notallowed"}}{{template "head"}}<title>Method Not Allowed - COOP</title></head><body>
<h1>Method Not Allowed</h1>
<p>This page does not take that method.</p>
</body></html>
{{end}}
`))
})

// render answers the page name with data.
func render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages().ExecuteTemplate(&buf, name, data); err != nil {
		panic(err) // the templates and their data are the package's own
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// notFound answers COOP's 404 page.
func notFound(w http.ResponseWriter) {
	render(w, http.StatusNotFound, "notfound", nil)
}

// methodNotAllowed answers COOP's 405 page with the methods allowed.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	render(w, http.StatusMethodNotAllowed, "notallowed", nil)
}

// serveHome is COOP's home page.
func (s *Server) serveHome(w http.ResponseWriter, r *http.Request) {
	if !isGet(r) {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	render(w, http.StatusOK, "home", nil)
}

// isGet reports whether r is a GET or a HEAD.
func isGet(r *http.Request) bool {
	return r.Method == http.MethodGet || r.Method == http.MethodHead
}
