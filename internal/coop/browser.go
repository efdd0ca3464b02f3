package coop

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Browser plays a farmer's browser against COOP's pages, for tests and
// scripted demos: it keeps COOP's session cookie and follows no redirect by
// itself, so the caller decides where the final redirect goes.
type Browser struct {
	Client          *http.Client
	coop            string
	email, password string
	location        string // of the last answer
}

// NewBrowser returns a browser for the COOP at coopURL that logs in as the
// given farmer when asked.
func NewBrowser(coopURL, email, password string) *Browser {
	jar, _ := cookiejar.New(nil) // never fails with nil options
	return &Browser{
		Client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		coop: strings.TrimSuffix(coopURL, "/"), email: email, password: password,
	}
}

// The page patterns, compiled on first use: the package is in every
// coop-proxy process, and what initialization leaves on the heap, every
// collection scans.
var (
	returnToField = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`name="return_to" value="([^"]*)"`) })
	approveLink   = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`<a href="([^"]*)">Yes, I Authorize This Request</a>`)
	})
	denyLink = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`<a href="([^"]*)">get me out of here!</a>`) })
)

// Decide opens the authorization URL, logs in on COOP's login page when it
// shows, clicks "Yes, I Authorize This Request" (approve) or "get me out of
// here!", and returns the address COOP redirects the browser to (at once,
// for a request COOP refuses with a redirected error).
func (b *Browser) Decide(authURL string, approve bool) (string, error) {
	status, page, err := b.get(authURL)
	if err != nil {
		return "", err
	}
	if status == http.StatusFound {
		return b.location, nil
	}
	if m := returnToField().FindStringSubmatch(page); m != nil {
		resp, err := b.Client.PostForm(b.coop+"/login", url.Values{
			"email": {b.email}, "password": {b.password}, "return_to": {html.UnescapeString(m[1])},
		})
		if err != nil {
			return "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			return "", fmt.Errorf("COOP's login answered %d", resp.StatusCode)
		}
		if status, page, err = b.get(b.coop + resp.Header.Get("Location")); err != nil {
			return "", err
		}
		if status == http.StatusFound {
			return b.location, nil
		}
	}
	link := denyLink()
	if approve {
		link = approveLink()
	}
	m := link.FindStringSubmatch(page)
	if status != http.StatusOK || m == nil {
		return "", fmt.Errorf("COOP answered %d without a consent page: %.200q", status, page)
	}
	resp, err := b.Client.Get(b.coop + html.UnescapeString(m[1]))
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("the consent link answered %d", resp.StatusCode)
	}
	return resp.Header.Get("Location"), nil
}

func (b *Browser) get(u string) (int, string, error) {
	resp, err := b.Client.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b.location = resp.Header.Get("Location")
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}
