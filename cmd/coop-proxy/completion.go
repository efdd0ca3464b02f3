package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// completeCommand is the hidden command the completion scripts run for
// what only the settings know: `coop-proxy __complete routes [ARGS]`
// prints the routes of the configuration file (--config in ARGS, else
// COOP_PROXY_CONFIG), one a line.
const completeCommand = "__complete"

// shells are the shells completion writes a script for.
var shells = []string{"bash", "zsh", "fish", "powershell"}

// runCompletion runs `completion SHELL` and `__complete routes`.
func runCompletion(name string, args []string, stdout, stderr io.Writer) int {
	if name == completeCommand {
		if len(args) == 0 || args[0] != "routes" {
			fmt.Fprintln(stderr, "coop-proxy __complete: usage: coop-proxy __complete routes [ARGS]")
			return 2
		}
		for _, r := range routeNames(args[1:]) {
			fmt.Fprintln(stdout, r)
		}
		return 0
	}
	if len(args) != 1 || !slices.Contains(shells, args[0]) {
		fmt.Fprintf(stderr, "coop-proxy completion: name one shell: coop-proxy completion %s\n", strings.Join(shells, "|"))
		return 2
	}
	spec := completionSpec()
	var script string
	switch args[0] {
	case "bash":
		script = bashCompletion(spec)
	case "zsh":
		script = zshCompletion(spec)
	case "fish":
		script = fishCompletion(spec)
	case "powershell":
		script = powershellCompletion(spec)
	}
	fmt.Fprint(stdout, script)
	return 0
}

// routeNames are the routes of the configuration file that args (a
// command line being completed) or the environment names; none when there
// is no file or it cannot be read. Nothing else of the settings is checked
// but the names: one the file's check refuses is left out, for the shell
// puts what is offered on the command line, where "$(...)" would run.
func routeNames(args []string) []string {
	var keep []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case (a == "--config" || a == "-config") && i+1 < len(args):
			keep = append(keep, a, args[i+1])
			i++
		case strings.HasPrefix(a, "--config=") || strings.HasPrefix(a, "-config="):
			keep = append(keep, a)
		}
	}
	s, _ := config.Load("", keep, nil, config.Needs{})
	if s == nil || s.Config == "" {
		return nil
	}
	var names []string
	for _, r := range s.Routes {
		if config.IsRouteName(r.Name) {
			names = append(names, r.Name)
		}
	}
	return names
}

// spec is what the completion scripts complete: the commands and the
// flags (every setting's, the same for every command, and --json for the
// commands that take it).
type spec struct {
	commands []specCommand
	flags    []specFlag
}

type specCommand struct {
	name, summary string
	json          bool
}

type specFlag struct {
	name, help string
	kind       flagKind
	values     []string // kind valuesFlag
}

type flagKind int

const (
	anyValue   flagKind = iota // a value the script cannot guess
	boolFlag                   // a switch, no value
	fileFlag                   // a file name
	valuesFlag                 // one of values
	routeFlag                  // a route of the configuration file (__complete routes)
)

func completionSpec() spec {
	var sp spec
	for _, c := range commands() {
		sp.commands = append(sp.commands, specCommand{c.name, c.summary, c.json})
	}
	sp.commands = append(sp.commands, specCommand{name: "help", summary: "list the commands"})
	for _, f := range config.Fields() {
		if f.Flag == "" {
			continue // secrets: environment only
		}
		sf := specFlag{name: f.Flag, help: shortHelp(f.Help)}
		switch {
		case f.IsBool():
			sf.kind = boolFlag
		case f.Flag == "route":
			sf.kind = routeFlag
		case config.Values(f.Flag) != nil:
			sf.kind, sf.values = valuesFlag, config.Values(f.Flag)
		case f.Flag == "store" || f.Flag == "config" || strings.HasSuffix(f.Flag, "-file"):
			sf.kind = fileFlag
		}
		sp.flags = append(sp.flags, sf)
	}
	slices.SortFunc(sp.flags, func(a, b specFlag) int { return strings.Compare(a.name, b.name) })
	return sp
}

// shortHelp is a setting's help on the one line a shell shows beside a
// flag: cut after a word when longer than 80 characters.
func shortHelp(h string) string {
	if len(h) <= 80 {
		return h
	}
	if i := strings.LastIndexByte(h[:77], ' '); i > 0 {
		h = h[:i]
	}
	return strings.TrimRight(h, ",;:") + "..."
}

func (sp spec) commandNames() []string {
	var out []string
	for _, c := range sp.commands {
		out = append(out, c.name)
	}
	return out
}

// bashCompletion: complete -F; the flag before the cursor decides the
// values, else the flags (or, first, the commands).
func bashCompletion(sp spec) string {
	var b strings.Builder
	b.WriteString(`# bash completion for coop-proxy (coop-proxy completion bash).
# Load it now:        source <(coop-proxy completion bash)
# Or for every shell: coop-proxy completion bash > ~/.local/share/bash-completion/completions/coop-proxy
_coop_proxy() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	if ((COMP_CWORD == 1)) && [[ $cur != -* ]]; then
		COMPREPLY=($(compgen -W "` + strings.Join(sp.commandNames(), " ") + `" -- "$cur"))
		return
	fi
	local cmd=serve
	[[ ${COMP_WORDS[1]} == -* ]] || cmd=${COMP_WORDS[1]}
	if [[ $cmd == completion ]]; then
		((COMP_CWORD == 2)) && COMPREPLY=($(compgen -W "` + strings.Join(shells, " ") + `" -- "$cur"))
		return
	fi
	case $prev in
`)
	var files, anyv []string
	for _, f := range sp.flags {
		switch f.kind {
		case valuesFlag:
			fmt.Fprintf(&b, "\t--%s) COMPREPLY=($(compgen -W %q -- \"$cur\")); return ;;\n", f.name, strings.Join(f.values, " "))
		case routeFlag:
			// not compgen -W, which expands its words: a route is matched as it is
			fmt.Fprintf(&b, "\t--%s) COMPREPLY=(); local r; while IFS= read -r r; do [[ $r == \"$cur\"* ]] && COMPREPLY+=(\"$r\"); done < <(coop-proxy %s routes \"${COMP_WORDS[@]:1:COMP_CWORD-1}\" 2>/dev/null); return ;;\n", f.name, completeCommand)
		case fileFlag:
			files = append(files, "--"+f.name)
		case anyValue:
			anyv = append(anyv, "--"+f.name)
		}
	}
	fmt.Fprintf(&b, "\t%s) COMPREPLY=($(compgen -f -- \"$cur\")); compopt -o filenames 2>/dev/null; return ;;\n", strings.Join(files, "|"))
	fmt.Fprintf(&b, "\t%s) COMPREPLY=(); return ;;\n", strings.Join(anyv, "|"))
	b.WriteString("\tesac\n\tlocal flags=\"--help")
	for _, f := range sp.flags {
		b.WriteString(" --" + f.name)
	}
	b.WriteString("\"\n\tcase $cmd in\n")
	for _, c := range sp.commands {
		if c.json {
			fmt.Fprintf(&b, "\t%s) flags+=\" --json\" ;;\n", c.name)
		}
	}
	b.WriteString(`	esac
	COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -F _coop_proxy coop-proxy
`)
	return b.String()
}

// zshCompletion: _arguments, with each flag's help and values.
func zshCompletion(sp spec) string {
	q := func(s string) string { // inside '...' and an _arguments spec
		return strings.NewReplacer("'", `'\''`, "[", `\[`, "]", `\]`, ":", `\:`).Replace(s)
	}
	var b strings.Builder
	b.WriteString(`#compdef coop-proxy
# zsh completion for coop-proxy (coop-proxy completion zsh).
# Load it now:        source <(coop-proxy completion zsh)
# Or for every shell: coop-proxy completion zsh > "${fpath[1]}/_coop-proxy"
_coop_proxy_routes() {
	local -a routes
	routes=(${(f)"$(coop-proxy ` + completeCommand + ` routes ${words[2,CURRENT-1]} 2>/dev/null)"})
	compadd -a routes
}
_coop_proxy() {
	local -a commands flags
	commands=(
`)
	for _, c := range sp.commands {
		fmt.Fprintf(&b, "\t\t'%s:%s'\n", c.name, q(c.summary))
	}
	b.WriteString("\t)\n\tif (( CURRENT == 2 )) && [[ $words[2] != -* ]]; then\n\t\t_describe 'command' commands\n\t\treturn\n\tfi\n")
	b.WriteString("\tif [[ $words[2] == completion ]]; then\n\t\t(( CURRENT == 3 )) && compadd " + strings.Join(shells, " ") + "\n\t\treturn\n\tfi\n")
	b.WriteString("\tflags=(\n\t\t'--help[show the settings and their values]'\n")
	for _, f := range sp.flags {
		switch f.kind {
		case boolFlag:
			fmt.Fprintf(&b, "\t\t'--%s[%s]'\n", f.name, q(f.help))
		case valuesFlag:
			fmt.Fprintf(&b, "\t\t'--%s=[%s]:%s:(%s)'\n", f.name, q(f.help), f.name, strings.Join(f.values, " "))
		case fileFlag:
			fmt.Fprintf(&b, "\t\t'--%s=[%s]:file:_files'\n", f.name, q(f.help))
		case routeFlag:
			fmt.Fprintf(&b, "\t\t'--%s=[%s]:route:_coop_proxy_routes'\n", f.name, q(f.help))
		default:
			fmt.Fprintf(&b, "\t\t'--%s=[%s]:%s: '\n", f.name, q(f.help), f.name)
		}
	}
	b.WriteString("\t)\n\tcase $words[2] in\n")
	for _, c := range sp.commands {
		if c.json {
			fmt.Fprintf(&b, "\t%s) flags+=('--json[print JSON for scripts]') ;;\n", c.name)
		}
	}
	b.WriteString(`	esac
	if [[ $words[2] != -* ]]; then
		shift words
		(( CURRENT-- ))
	fi
	_arguments -S $flags
}
compdef _coop_proxy coop-proxy
`)
	return b.String()
}

// fishCompletion: one complete line per command and flag.
func fishCompletion(sp spec) string {
	q := func(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'" }
	var b strings.Builder
	b.WriteString(`# fish completion for coop-proxy (coop-proxy completion fish).
# Load it now:        coop-proxy completion fish | source
# Or for every shell: coop-proxy completion fish > ~/.config/fish/completions/coop-proxy.fish
complete -c coop-proxy -f
`)
	for _, c := range sp.commands {
		fmt.Fprintf(&b, "complete -c coop-proxy -n __fish_use_subcommand -a %s -d %s\n", c.name, q(c.summary))
	}
	fmt.Fprintf(&b, "complete -c coop-proxy -n '__fish_seen_subcommand_from completion' -a %s\n", q(strings.Join(shells, " ")))
	b.WriteString("complete -c coop-proxy -l help -d 'show the settings and their values'\n")
	for _, f := range sp.flags {
		switch f.kind {
		case boolFlag:
			fmt.Fprintf(&b, "complete -c coop-proxy -l %s -d %s\n", f.name, q(f.help))
		case valuesFlag:
			fmt.Fprintf(&b, "complete -c coop-proxy -l %s -x -a %s -d %s\n", f.name, q(strings.Join(f.values, " ")), q(f.help))
		case fileFlag:
			fmt.Fprintf(&b, "complete -c coop-proxy -l %s -r -F -d %s\n", f.name, q(f.help))
		case routeFlag:
			fmt.Fprintf(&b, "complete -c coop-proxy -l %s -x -a '(coop-proxy %s routes (commandline -opc)[2..-1] 2>/dev/null)' -d %s\n", f.name, completeCommand, q(f.help))
		default:
			fmt.Fprintf(&b, "complete -c coop-proxy -l %s -x -d %s\n", f.name, q(f.help))
		}
	}
	for _, c := range sp.commands {
		if c.json {
			fmt.Fprintf(&b, "complete -c coop-proxy -n '__fish_seen_subcommand_from %s' -l json -d 'print JSON for scripts'\n", c.name)
		}
	}
	return b.String()
}

// powershellCompletion: Register-ArgumentCompleter -Native, for
// coop-proxy and coop-proxy.exe.
func powershellCompletion(sp spec) string {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	var b strings.Builder
	b.WriteString(`# PowerShell completion for coop-proxy (coop-proxy completion powershell).
# Load it now:        coop-proxy completion powershell | Out-String | Invoke-Expression
# Or for every shell: add that line to $PROFILE
Register-ArgumentCompleter -Native -CommandName 'coop-proxy', 'coop-proxy.exe' -ScriptBlock {
	param($wordToComplete, $commandAst, $cursorPosition)
	$commands = [ordered]@{
`)
	for _, c := range sp.commands {
		fmt.Fprintf(&b, "\t\t%s = %s\n", q(c.name), q(c.summary))
	}
	b.WriteString("\t}\n\t$flags = [ordered]@{\n\t\t'--help' = 'show the settings and their values'\n")
	for _, f := range sp.flags {
		fmt.Fprintf(&b, "\t\t%s = %s\n", q("--"+f.name), q(f.help))
	}
	b.WriteString("\t}\n\t$values = @{\n")
	for _, f := range sp.flags {
		if f.kind == valuesFlag {
			var vs []string
			for _, v := range f.values {
				vs = append(vs, q(v))
			}
			fmt.Fprintf(&b, "\t\t%s = @(%s)\n", q("--"+f.name), strings.Join(vs, ", "))
		}
	}
	b.WriteString("\t}\n\t$takesValue = @(")
	var tv []string
	for _, f := range sp.flags {
		if f.kind != boolFlag && f.kind != valuesFlag {
			tv = append(tv, q("--"+f.name))
		}
	}
	b.WriteString(strings.Join(tv, ", "))
	b.WriteString(")\n\t$jsonCommands = @(")
	var jc []string
	for _, c := range sp.commands {
		if c.json {
			jc = append(jc, q(c.name))
		}
	}
	b.WriteString(strings.Join(jc, ", "))
	b.WriteString(`)
	$words = @($commandAst.CommandElements | Where-Object { $_.Extent.StartOffset -lt $cursorPosition } | ForEach-Object { $_.ToString() })
	if ($wordToComplete -ne '') { $words = @($words | Select-Object -SkipLast 1) }
	$result = {
		param($candidates, $tips)
		foreach ($c in $candidates) {
			if ($c -like "$wordToComplete*") {
				$tip = if ($tips -and $tips.Contains($c)) { $tips[$c] } else { $c }
				[System.Management.Automation.CompletionResult]::new($c, $c, 'ParameterValue', $tip)
			}
		}
	}
	if ($words.Count -le 1 -and -not $wordToComplete.StartsWith('-')) {
		return & $result $commands.Keys $commands
	}
	$command = if ($words.Count -gt 1 -and -not $words[1].StartsWith('-')) { $words[1] } else { 'serve' }
	if ($command -eq 'completion') {
		return & $result @(` + strings.Join(func() []string {
		var s []string
		for _, sh := range shells {
			s = append(s, q(sh))
		}
		return s
	}(), ", ") + `) $null
	}
	$prev = $words[-1]
	if ($values.Contains($prev)) { return & $result $values[$prev] $null }
	if ($prev -eq '--route') {
		$routes = @(& coop-proxy ` + completeCommand + ` routes @($words | Select-Object -Skip 1) 2>$null)
		return & $result $routes $null
	}
	if ($takesValue -contains $prev) { return }
	$all = @($flags.Keys)
	if ($jsonCommands -contains $command) { $all += '--json' }
	& $result $all $flags
}
`)
	return b.String()
}
