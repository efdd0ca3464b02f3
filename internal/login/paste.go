package login

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// paste runs the login without a listener: the farmer approves in any
// browser, which is then sent to the redirect URI and fails to load there;
// the farmer pastes that address back. It is the RFC 8252 §7.3 redirect
// carried by hand, so the same state check and exchange apply.
//
// A read of In cannot be interrupted: when ctx or the timeout ends the wait,
// the read is abandoned and its line, if one comes, is dropped.
func (f *flow) paste(ctx context.Context) (*Result, error) {
	f.printURL()
	fmt.Fprintf(f.cfg.Out, "After approving, your browser goes to %s?code=...; it will fail to load: copy the address from the address bar and paste it here (waiting up to %s):\n",
		f.cfg.OAuth.RedirectURL, f.cfg.Timeout)

	type pasted struct {
		line string
		err  error
	}
	lines := make(chan pasted, 1)
	go func() {
		line, err := readPastedLine(f.cfg.In)
		lines <- pasted{line, err}
	}()

	timer := time.NewTimer(f.cfg.Timeout)
	defer timer.Stop()
	select {
	case p := <-lines:
		if p.err != nil {
			return nil, p.err
		}
		q, err := parsePasted(p.line, f.redirect)
		if err != nil {
			return nil, err
		}
		return f.finish(ctx, q)
	case <-timer.C:
		return nil, f.timeoutError()
	case <-ctx.Done():
		return nil, fmt.Errorf("login cancelled: %w", ctx.Err())
	}
}

// readPastedLine returns the first non-blank line of in, trimmed.
func readPastedLine(in io.Reader) (string, error) {
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			return line, nil
		}
	}
	switch err := sc.Err(); {
	case err == nil:
		return "", detailed(ErrBadPaste, "nothing was pasted: paste the whole address from the address bar after approving")
	case errors.Is(err, bufio.ErrTooLong):
		return "", ErrBadPaste
	default:
		return "", fmt.Errorf("reading the pasted address: %w", err)
	}
}

// answerKeys are the parameters of an authorization response
// (RFC 6749 §4.1.2 and §4.1.2.1).
var answerKeys = map[string]bool{"code": true, "state": true, "error": true, "error_description": true, "error_uri": true}

// parsePasted returns the authorization response's parameters from a pasted
// line: the whole address, which must be on the redirect URI (scheme, host
// and path), or its query string alone, with or without the "?". The line
// itself is never put in an error: it holds the code and the state.
func parsePasted(line string, redirect *url.URL) (url.Values, error) {
	if !strings.Contains(line, "://") {
		q, err := url.ParseQuery(strings.TrimPrefix(line, "?"))
		if err != nil || len(q) == 0 {
			return nil, ErrBadPaste
		}
		for k := range q {
			if !answerKeys[k] {
				return nil, ErrBadPaste
			}
		}
		return q, nil
	}
	u, err := url.Parse(line)
	if err != nil {
		return nil, ErrBadPaste
	}
	if !strings.EqualFold(u.Scheme, redirect.Scheme) || !strings.EqualFold(u.Host, redirect.Host) || pathOrRoot(u.Path) != pathOrRoot(redirect.Path) {
		return nil, detailed(ErrBadPaste, "the pasted address is not on the redirect URI %s: paste the whole address from the address bar after approving", redirect)
	}
	return u.Query(), nil
}
