package login

import (
	"os"
	"os/exec"
	"strings"
)

// BrowserOpener returns a function that opens a URL in the farmer's browser
// (RFC 8252 §4: the authorization request goes through the system browser,
// never an embedded one), or nil when this machine has no way to: the first
// usable command of $BROWSER (a colon-separated list of commands, "%s" in one
// standing for the URL, which is appended otherwise), then xdg-open, then
// open (macOS), as found by exec.LookPath.
func BrowserOpener() func(url string) error {
	var candidates [][]string
	for _, entry := range strings.Split(os.Getenv("BROWSER"), ":") {
		if fields := strings.Fields(entry); len(fields) > 0 {
			candidates = append(candidates, fields)
		}
	}
	candidates = append(candidates, []string{"xdg-open"}, []string{"open"})
	for _, c := range candidates {
		path, err := exec.LookPath(c[0])
		if err != nil {
			continue
		}
		args := c[1:]
		return func(url string) error { return startBrowser(path, args, url) }
	}
	return nil
}

// startBrowser starts the command without waiting for it (a browser started
// directly runs until it is closed) and reaps it when it ends. The URL is
// one argument of its own: no shell sees it.
func startBrowser(path string, args []string, url string) error {
	argv := make([]string, 0, len(args)+1)
	substituted := false
	for _, a := range args {
		if strings.Contains(a, "%s") {
			a = strings.ReplaceAll(a, "%s", url)
			substituted = true
		}
		argv = append(argv, a)
	}
	if !substituted {
		argv = append(argv, url)
	}
	cmd := exec.Command(path, argv...)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
