package login

import (
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// BrowserOpener returns a function that opens a URL in the farmer's browser
// (RFC 8252 §4: the authorization request goes through the system browser,
// never an embedded one), or nil when this machine has no way to: the first
// command of browserCommands found by exec.LookPath.
func BrowserOpener() func(url string) error {
	for _, c := range browserCommands(runtime.GOOS, os.Getenv("BROWSER"), os.PathListSeparator) {
		path, err := exec.LookPath(c[0])
		if err != nil {
			continue
		}
		args := c[1:]
		return func(url string) error { return startBrowser(path, args, url) }
	}
	return nil
}

// browserCommands lists the commands that may open a URL on goos, in the
// order they are tried: those of $BROWSER (browserEnv, a list separated by
// sep, the system's path list separator; "%s" in one stands for the URL,
// which is appended otherwise; see words), then the system's own way: open
// on macOS, rundll32's URL handler on Windows (what the shell's "start"
// does, without a shell that would read the URL's "&"), xdg-open
// elsewhere.
func browserCommands(goos, browserEnv string, sep rune) [][]string {
	quotes := `"'`
	if goos == "windows" {
		quotes = `"` // C:\Users\O'Brien\...
	}
	var candidates [][]string
	for _, entry := range strings.Split(browserEnv, string(sep)) {
		if fields := words(entry, quotes); len(fields) > 0 {
			candidates = append(candidates, fields)
		}
	}
	switch goos {
	case "darwin":
		return append(candidates, []string{"open"})
	case "windows":
		return append(candidates, []string{"rundll32", "url.dll,FileProtocolHandler"})
	}
	return append(candidates, []string{"xdg-open"})
}

// words splits a command of $BROWSER at blanks, but not inside quotes (one
// of quotes, removed): "C:\Program Files\...\firefox.exe" is one word, and
// firefox '%s' (as a shell would run it) gives the URL alone. Nothing else
// is special: no shell ever reads the command, and backslashes are
// Windows' separators.
func words(s, quotes string) []string {
	var out []string
	var w strings.Builder
	inWord := false
	var quote rune
	for _, c := range s {
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(c)
		case strings.ContainsRune(quotes, c):
			quote, inWord = c, true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteRune(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out
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
