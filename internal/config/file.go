package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/caarlos0/env/v11"
	"go.yaml.in/yaml/v3"
)

// A configuration file (CONFIG) lists routes: several upstream APIs in one
// process. Its keys are the settings' environment names in lower case
// without the prefix (upstream, client_secret_file, ...): process settings
// at the top, and each route's under routes:
//
//	log_level: info
//	routes:
//	  - name: coop
//	    upstream: http://coop.apps.knpuniversity.com
//	    client_id: Brent's Lazy CRON Job
//	    client_secret_file: /run/secrets/coop
//
// The rules, each chosen so that a file means one thing:
//   - Route settings come from the file alone: one set in the environment
//     or a flag as well is a problem (which would win, per route?).
//   - Process settings in the environment or a flag win over the file's,
//     as flags win over the environment.
//   - A secret is never a value in the file (files get committed): only
//     client_secret_file and inbound_secret_file.
//   - Each route is read and checked as the environment's route is, with
//     problems named "route NAME: key".

// routeName is what a route's name may be: it shows in metrics labels,
// logs and --route.
var routeName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// IsRouteName reports whether name is one a route may have (the file's
// check refuses the others).
func IsRouteName(name string) bool { return routeName.MatchString(name) }

// maxConfigFile bounds what is read of a configuration file.
const maxConfigFile = 1 << 20

// secretKeys are the route settings that hold a secret value.
var secretKeys = []string{"ClientSecret", "InboundSecret"}

// fileKey is a field's key in the configuration file.
func fileKey(field string) string {
	f, _ := fieldByName(field)
	return FileKey(f)
}

// isRouteField reports whether the field is a route setting.
func isRouteField(f Field) bool { return len(f.index) == 2 && f.index[0] == 0 }

// loadFile reads the configuration file; merged holds the environment
// with the flags over it.
func loadFile(file string, merged map[string]string, need Needs) (*Settings, error) {
	s := &Settings{Config: file}
	var p Problems
	top, routes, err := readFile(file)
	if err != nil {
		return s, Problems{problem("Config", "%v", err)}
	}
	var inEnv []string
	for _, f := range Fields() {
		if _, set := merged[f.Env]; set && isRouteField(f) {
			inEnv = append(inEnv, f.Env)
		}
	}
	if len(inEnv) > 0 {
		p.Add(problem("Config", "route settings come from %s alone, yet %s set in the environment or a flag: remove them, or move them into the file's routes",
			file, strings.Join(inEnv, ", ")))
	}

	// Process settings: the file's, under the environment and the flags.
	procEnv := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(top)) {
		n := top[key]
		f, ok := fieldByKey(key)
		if !ok || isRouteField(f) || f.Name == "Config" || f.Name == "RouteName" {
			p.Add(&Problem{Setting: key, Msg: "not a process setting (route settings go under routes:)"})
			continue
		}
		v, err := scalar(&n)
		if err != nil {
			p.Add(problem(f.Name, "%v", err))
			continue
		}
		procEnv[f.Env] = v
	}
	maps.Copy(procEnv, merged)
	if err := env.ParseWithOptions(s, env.Options{Prefix: EnvPrefix, Environment: procEnv}); err != nil {
		p.addParseErrors(err, procEnv)
	}
	s.resolveProcess(need, &p)
	s.checkProcess(need, &p)

	if len(routes) == 0 {
		p.Add(problem("Config", "%s lists no routes", file))
	}
	names := map[string]bool{}
	for i, rn := range routes {
		r, rp := readRoute(i, rn, need)
		s.Routes = append(s.Routes, r)
		if r.Name != "" && names[r.Name] {
			rp = append(rp, &Problem{Setting: "route " + r.Name + ": name", Msg: "another route has this name"})
		}
		names[r.Name] = true
		p = append(p, rp...)
	}
	p = append(p, checkShared(s.Routes)...)
	s.selectRoute(need, &p)
	if p = p.firstPerSetting(); len(p) > 0 {
		return s, p
	}
	return s, nil
}

// readFile decodes the file: the top-level keys other than routes, and
// each route's mapping. Duplicate keys are an error (yaml.v3's own check).
func readFile(file string) (map[string]yaml.Node, []map[string]yaml.Node, error) {
	// Without blocking (nothing changes for a regular file): a FIFO at the
	// path would hold up the load, a reload, and the shutdown waiting for it.
	f, err := os.OpenFile(file, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the configuration file: %w", err)
	}
	defer f.Close()
	if err := checkTrusted(file, f); err != nil {
		return nil, nil, err
	}
	// Bounded: a setting naming /dev/zero by mistake must not eat the memory.
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("cannot read the configuration file: %w", err)
	case len(b) > maxConfigFile:
		return nil, nil, fmt.Errorf("%s: larger than %d MiB, not a configuration file", file, maxConfigFile>>20)
	}
	var doc struct {
		Routes []map[string]yaml.Node `yaml:"routes"`
		Rest   map[string]yaml.Node   `yaml:",inline"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil && err != io.EOF {
		// yaml.v3 lists its errors a line each: one problem is one line
		return nil, nil, fmt.Errorf("%s: %s", file, strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", ";")), " "))
	}
	// Unmarshal would read the first document alone, and routes listed
	// after a "---" (files concatenated) would silently not be served. An
	// empty document (a trailing "---") is nothing.
	for {
		var more any
		switch err := dec.Decode(&more); {
		case err == io.EOF:
			return doc.Rest, doc.Routes, nil
		case err != nil || more != nil:
			return nil, nil, fmt.Errorf("%s: more than one YAML document (a line \"---\"): list every route in one", file)
		}
	}
}

// checkTrusted refuses a configuration file that is not a regular file, or
// that another user could have written (checkWriters): its routes say where
// the tokens and the client's credentials go, so that user could add a
// route to a server of theirs. A link is followed: Kubernetes mounts a
// ConfigMap's files as links.
func checkTrusted(file string, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("cannot read the configuration file: %w", err)
	}
	if mode := fi.Mode(); !mode.IsRegular() {
		return fmt.Errorf("%s is not a regular file (%s)", file, mode.Type())
	}
	return checkWriters(file, fi)
}

// readRoute reads and checks the i-th route as the environment's route is
// read and checked, and names its problems "route NAME: key".
func readRoute(i int, m map[string]yaml.Node, need Needs) (Route, Problems) {
	var r Route
	var p Problems
	label := fmt.Sprintf("route %d", i+1)
	if n, ok := m["name"]; ok {
		r.Name, _ = scalar(&n)
		if routeName.MatchString(r.Name) {
			label = "route " + r.Name
		} else {
			p.Add(&Problem{Setting: label + ": name", Msg: fmt.Sprintf("%q is not a name of lower-case letters, digits and dashes", r.Name)})
		}
	} else {
		p.Add(&Problem{Setting: label + ": name", Msg: "every route needs a name (lower-case letters, digits and dashes)"})
	}
	routeEnv := map[string]string{}
	for _, key := range slices.Sorted(maps.Keys(m)) {
		if key == "name" {
			continue
		}
		n := m[key]
		f, ok := fieldByKey(key)
		switch {
		case !ok || !isRouteField(f):
			p.Add(&Problem{Setting: label + ": " + key, Msg: "not a route setting"})
			continue
		case slices.Contains(secretKeys, f.Name):
			p.Add(&Problem{Setting: label + ": " + key, Msg: fmt.Sprintf("a secret is never written in the configuration file (files get committed): put it in a file and name it with %s_file", key)})
			continue
		}
		v, err := scalar(&n)
		if err != nil {
			p.Add(&Problem{Setting: label + ": " + key, Msg: err.Error()})
			continue
		}
		routeEnv[f.Env] = v
	}
	name := r.Name
	if err := env.ParseWithOptions(&r, env.Options{Prefix: EnvPrefix, Environment: routeEnv}); err != nil {
		p.addParseErrors(err, routeEnv)
	}
	r.Name = name
	r.presetAuthStyle(routeEnv)
	r.resolve(need, &p)
	r.check(need, &p)
	for _, err := range p {
		var pr *Problem
		if errors.As(err, &pr) && pr.field != "" {
			pr.Setting = label + ": " + fileKey(pr.field)
			pr.Msg = inFileTerms(pr.Msg)
		}
	}
	return r, p
}

// envName is a setting as the environment's problems name it: with or
// without the prefix, with or without its flag.
// It is compiled on first use: serve has no use for it, and what a
// package's initialization leaves on the heap, every collection scans.
var envName = sync.OnceValue(func() *regexp.Regexp {
	var names []string
	for _, f := range Fields() {
		names = append(names, strings.TrimPrefix(f.Env, EnvPrefix))
	}
	// The longest first: CLIENT_SECRET_FILE, not CLIENT_SECRET and "_FILE".
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	return regexp.MustCompile(`\b(?:` + EnvPrefix + `)?(` + strings.Join(names, "|") + `)\b( \(--[a-z0-9-]+\))?`)
})

// inFileTerms names the settings a problem's message mentions as the
// configuration file does ("set client_key_file", not "set
// COOP_PROXY_CLIENT_KEY_FILE (--client-key-file)").
func inFileTerms(msg string) string {
	re := envName()
	return re.ReplaceAllStringFunc(msg, func(m string) string {
		return strings.ToLower(re.FindStringSubmatch(m)[1])
	})
}

// checkShared checks the routes that share a listen address: each has a
// path prefix of its own, as requests are told apart by it alone.
func checkShared(routes []Route) Problems {
	var p Problems
	byListen := map[string][]Route{}
	for _, r := range routes {
		byListen[r.ListenKey()] = append(byListen[r.ListenKey()], r)
	}
	for _, rs := range byListen {
		if len(rs) < 2 {
			continue
		}
		prefixes := map[string]string{}
		for _, r := range rs {
			switch other, taken := prefixes[r.PathPrefix]; {
			case r.PathPrefix == "":
				p.Add(&Problem{Setting: "route " + r.Name + ": path_prefix", Msg: fmt.Sprintf("needed: the listen address %s is shared with other routes", r.Listen)})
			case taken:
				p.Add(&Problem{Setting: "route " + r.Name + ": path_prefix", Msg: fmt.Sprintf("%s is the prefix of the route %s on the same listen address", r.PathPrefix, other)})
			}
			prefixes[r.PathPrefix] = r.Name
		}
	}
	return p
}

// selectRoute sets Route to the one ROUTE names, else the first; a
// command acting on one route needs ROUTE when the file has several.
func (s *Settings) selectRoute(need Needs, p *Problems) {
	var names []string
	for _, r := range s.Routes {
		names = append(names, r.Name)
	}
	switch i := slices.Index(names, s.RouteName); {
	case s.RouteName != "" && i < 0:
		p.Add(problem("RouteName", "%q is not a route of %s: %s", s.RouteName, s.Config, strings.Join(names, ", ")))
	case i >= 0:
		s.Route = s.Routes[i]
	case need.OneRoute && len(s.Routes) > 1:
		p.Add(problem("RouteName", "%s has several routes: name one with --route (%s)", s.Config, strings.Join(names, ", ")))
	case len(s.Routes) > 0:
		s.Route = s.Routes[0]
	}
}

// fieldByKey finds the setting of a configuration file key.
func fieldByKey(key string) (Field, bool) {
	for _, f := range Fields() {
		if FileKey(f) == key {
			return f, true
		}
	}
	return Field{}, false
}

// scalar is a value as the environment would hold it: a scalar's text, or
// a list of scalars joined by spaces (scopes, resource).
func scalar(n *yaml.Node) (string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		return n.Value, nil
	case yaml.SequenceNode:
		var vs []string
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return "", fmt.Errorf("line %d: a list of plain values is expected", c.Line)
			}
			vs = append(vs, c.Value)
		}
		return strings.Join(vs, " "), nil
	}
	return "", fmt.Errorf("line %d: a value or a list of values is expected", n.Line)
}

// InRoute names a problem found later (reading an issuer's metadata) as
// the load names the route's own: "route NAME: key" with a configuration
// file, the setting's environment name without.
func (s *Settings) InRoute(route string, err error) error {
	var pr *Problem
	switch {
	case s.Config == "" || err == nil:
		return err
	case errors.As(err, &pr) && pr.field != "":
		return &Problem{Setting: "route " + route + ": " + fileKey(pr.field), Msg: pr.Msg, field: pr.field}
	}
	return fmt.Errorf("route %s: %w", route, err)
}
