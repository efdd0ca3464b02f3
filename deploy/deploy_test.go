// Package deploy_test checks the deployment files against the program:
// every YAML file parses, every COOP_PROXY_ setting and every --flag they
// give coop-proxy exists, the Kubernetes pod and the systemd units carry
// the required hardening, and the pieces agree with each other (ports,
// paths, timeouts).
package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

const (
	dockerfile = "../Dockerfile"
	buildImage = "../.ci/build-image"
	envPrefix  = "COOP_PROXY_"
)

// commands are coop-proxy's subcommands: a command line is recognised by
// "coop-proxy <command>".
var commands = []string{"serve", "token", "status", "login", "logout", "check-config", "demo", "version", "help"}

// program is what the settings type (internal/config) declares.
type program struct {
	env      map[string]bool   // COOP_PROXY_ names
	flags    map[string]bool   // flag names, without dashes
	defaults map[string]string // COOP_PROXY_ name -> envDefault
}

func readProgram(t *testing.T) program {
	t.Helper()
	p := program{env: map[string]bool{}, flags: map[string]bool{"help": true, "h": true}, defaults: map[string]string{}}
	for _, f := range config.Fields() {
		p.env[f.Env] = true
		if f.Default != "" {
			p.defaults[f.Env] = f.Default
		}
		if f.Flag != "" {
			p.flags[f.Flag] = true
		}
	}
	return p
}

// shutdownTimeout is the program's default COOP_PROXY_SHUTDOWN_TIMEOUT.
func (p program) shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(p.defaults["COOP_PROXY_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("default COOP_PROXY_SHUTDOWN_TIMEOUT: %v", err)
	}
	return d
}

// deployFiles are the files under deploy/ (this test's own source aside).
func deployFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("only %d files under deploy/: %v", len(files), files)
	}
	return files
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineOf is the 1-based line of offset off in s.
func lineOf(s string, off int) int { return strings.Count(s[:off], "\n") + 1 }

func isYAML(path string) bool {
	ext := filepath.Ext(path)
	return ext == ".yaml" || ext == ".yml"
}

// yamlDocs decodes every document of a YAML file into values of T.
func yamlDocs[T any](t *testing.T, path string) []T {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(read(t, path)))
	var docs []T
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		docs = append(docs, v)
	}
}

// (a) Every YAML file parses, every document of it.
func TestYAMLParses(t *testing.T) {
	n := 0
	for _, path := range deployFiles(t) {
		if !isYAML(path) {
			continue
		}
		docs := yamlDocs[yaml.Node](t, path)
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", path)
		}
		for i, d := range docs {
			if len(d.Content) == 0 || d.Content[0].Kind != yaml.MappingNode {
				t.Errorf("%s: document %d is not a mapping", path, i+1)
			}
		}
		if strings.HasPrefix(path, "kubernetes"+string(filepath.Separator)) {
			for i, d := range yamlDocs[map[string]any](t, path) {
				if d["apiVersion"] == nil || d["kind"] == nil || d["metadata"] == nil {
					t.Errorf("%s: document %d lacks apiVersion, kind or metadata", path, i+1)
				}
			}
		}
		n++
	}
	if n < 5 {
		t.Errorf("only %d YAML files found under deploy/", n)
	}
}

var settingRE = regexp.MustCompile(`\b` + envPrefix + `[A-Z0-9_]*[A-Z0-9]`)

// (b) Every COOP_PROXY_ name in deploy/, the Dockerfile and the image build
// script is a setting of the program.
func TestSettingsExist(t *testing.T) {
	p := readProgram(t)
	files := append(deployFiles(t), dockerfile, buildImage)
	seen := 0
	for _, path := range files {
		text := read(t, path)
		for _, loc := range settingRE.FindAllStringIndex(text, -1) {
			seen++
			if name := text[loc[0]:loc[1]]; !p.env[name] {
				t.Errorf("%s:%d: %s is not a setting of coop-proxy (internal/config)", path, lineOf(text, loc[0]), name)
			}
		}
	}
	if seen < 20 {
		t.Errorf("only %d COOP_PROXY_ names found: the scan is broken", seen)
	}
}

// invocationRE finds "coop-proxy <command>" (also /coop-proxy, and
// coop-proxy.exe-free paths such as /usr/local/bin/coop-proxy) and captures
// the rest of the line.
var invocationRE = regexp.MustCompile(`(?:^|[\s/"'\x60(=])coop-proxy[ \t]+(` + strings.Join(commands, "|") + `)\b([^\n]*)`)

// flagRE finds --name and --name=value.
var flagRE = regexp.MustCompile(`(?:^|\s)--([a-z][a-z0-9-]*)`)

// commandTail cuts the rest of a command line where the shell or Markdown
// ends the command.
func commandTail(s string) string {
	for _, sep := range []string{"&&", "||", "|", ";", "`", ")", "#", "<", ">"} {
		if i := strings.Index(s, sep); i >= 0 {
			s = s[:i]
		}
	}
	return s
}

// (c) Every --flag given to coop-proxy in deploy/ is a flag of the program.
func TestFlagsExist(t *testing.T) {
	p := readProgram(t)
	invocations, flags := 0, 0
	for _, path := range deployFiles(t) {
		// Join continued shell lines so that their flags count.
		text := strings.ReplaceAll(read(t, path), "\\\n", " ")
		for _, m := range invocationRE.FindAllStringSubmatchIndex(text, -1) {
			invocations++
			tail := commandTail(text[m[4]:m[5]])
			for _, f := range flagRE.FindAllStringSubmatch(tail, -1) {
				flags++
				if !p.flags[f[1]] {
					t.Errorf("%s:%d: coop-proxy %s --%s: no such flag (internal/config)", path, lineOf(text, m[0]), text[m[2]:m[3]], f[1])
				}
			}
		}
	}
	if invocations < 10 || flags < 5 {
		t.Errorf("only %d coop-proxy command lines and %d flags found: the scan is broken", invocations, flags)
	}
}

// The Kubernetes objects, as far as these tests look into them.
type (
	k8sObject struct {
		Kind     string                `yaml:"kind"`
		Metadata struct{ Name string } `yaml:"metadata"`
		Data     map[string]string     `yaml:"data"`
		Spec     struct {
			Replicas *int `yaml:"replicas"`
			Template struct {
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	podSpec struct {
		AutomountServiceAccountToken  *bool       `yaml:"automountServiceAccountToken"`
		TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
		SecurityContext               podSecurity `yaml:"securityContext"`
		InitContainers                []container `yaml:"initContainers"`
		Containers                    []container `yaml:"containers"`
		Volumes                       []volume    `yaml:"volumes"`
	}
	podSecurity struct {
		RunAsNonRoot   *bool    `yaml:"runAsNonRoot"`
		RunAsUser      *int64   `yaml:"runAsUser"`
		FSGroup        *int64   `yaml:"fsGroup"`
		SeccompProfile *seccomp `yaml:"seccompProfile"`
	}
	seccomp   struct{ Type string }
	container struct {
		Name          string   `yaml:"name"`
		Image         string   `yaml:"image"`
		RestartPolicy string   `yaml:"restartPolicy"`
		Command       []string `yaml:"command"`
		Args          []string `yaml:"args"`
		Env           []struct {
			Name      string         `yaml:"name"`
			Value     string         `yaml:"value"`
			ValueFrom map[string]any `yaml:"valueFrom"`
		} `yaml:"env"`
		EnvFrom []struct {
			ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
			SecretRef    *struct{ Name string } `yaml:"secretRef"`
		} `yaml:"envFrom"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		StartupProbe   *probe `yaml:"startupProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext *struct {
			RunAsNonRoot             *bool                         `yaml:"runAsNonRoot"`
			RunAsUser                *int64                        `yaml:"runAsUser"`
			ReadOnlyRootFilesystem   *bool                         `yaml:"readOnlyRootFilesystem"`
			AllowPrivilegeEscalation *bool                         `yaml:"allowPrivilegeEscalation"`
			Privileged               *bool                         `yaml:"privileged"`
			Capabilities             *struct{ Add, Drop []string } `yaml:"capabilities"`
			SeccompProfile           *seccomp                      `yaml:"seccompProfile"`
		} `yaml:"securityContext"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
			ReadOnly  bool   `yaml:"readOnly"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	volume struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName  string `yaml:"secretName"`
			DefaultMode *int   `yaml:"defaultMode"`
		} `yaml:"secret"`
		ConfigMap             map[string]any `yaml:"configMap"`
		EmptyDir              map[string]any `yaml:"emptyDir"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	}
)

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

// (d) The Deployment runs coop-proxy as a hardened sidecar whose probes,
// volumes and settings fit together.
func TestKubernetesDeployment(t *testing.T) {
	p := readProgram(t)
	path := filepath.Join("kubernetes", "deployment.yaml")
	objs := yamlDocs[k8sObject](t, path)
	var dep *k8sObject
	configMaps := map[string]map[string]string{}
	for i := range objs {
		switch objs[i].Kind {
		case "Deployment":
			dep = &objs[i]
		case "ConfigMap":
			configMaps[objs[i].Metadata.Name] = objs[i].Data
		}
	}
	if dep == nil {
		t.Fatalf("%s: no Deployment", path)
	}
	pod := dep.Spec.Template.Spec

	// Pod security.
	ps := pod.SecurityContext
	if !isTrue(ps.RunAsNonRoot) {
		t.Error("pod securityContext: runAsNonRoot is not true")
	}
	if ps.FSGroup == nil || *ps.FSGroup != 65532 {
		t.Error("pod securityContext: fsGroup is not 65532")
	}
	if isTrue(pod.AutomountServiceAccountToken) {
		t.Error("pod: the service account token is mounted")
	}

	all := append(slices.Clone(pod.InitContainers), pod.Containers...)
	var cp *container
	for i := range all {
		c := &all[i]
		if c.Name == "coop-proxy" {
			cp = c
		}
		// Every container of the pod is hardened, not only the proxy.
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		}
		if !isTrue(sc.RunAsNonRoot) && !isTrue(ps.RunAsNonRoot) {
			t.Errorf("container %s: runAsNonRoot is not true", c.Name)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			t.Errorf("container %s: readOnlyRootFilesystem is not true", c.Name)
		}
		if !isFalse(sc.AllowPrivilegeEscalation) {
			t.Errorf("container %s: allowPrivilegeEscalation is not false", c.Name)
		}
		if isTrue(sc.Privileged) {
			t.Errorf("container %s: privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s: capabilities do not drop ALL (and add none)", c.Name)
		}
		seccompType := ""
		if ps.SeccompProfile != nil {
			seccompType = ps.SeccompProfile.Type
		}
		if sc.SeccompProfile != nil {
			seccompType = sc.SeccompProfile.Type
		}
		if seccompType != "RuntimeDefault" {
			t.Errorf("container %s: seccompProfile is %q, not RuntimeDefault", c.Name, seccompType)
		}
		for _, kind := range []string{"cpu", "memory"} {
			if c.Resources.Requests[kind] == "" || c.Resources.Limits[kind] == "" {
				t.Errorf("container %s: no %s request and limit", c.Name, kind)
			}
		}
	}
	if cp == nil {
		t.Fatalf("%s: no container named coop-proxy", path)
	}
	if len(pod.Containers) == 0 || (len(pod.Containers) == 1 && pod.Containers[0].Name == "coop-proxy") {
		t.Error("no application container beside coop-proxy")
	}
	if slices.ContainsFunc(pod.InitContainers, func(c container) bool { return c.Name == "coop-proxy" }) && cp.RestartPolicy != "Always" {
		t.Error("coop-proxy is an init container without restartPolicy: Always (it would block the pod, not run beside the application)")
	}
	if sc := cp.SecurityContext; sc != nil {
		if sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Error("coop-proxy: securityContext runAsUser is not 65532")
		}
		if !isTrue(sc.RunAsNonRoot) {
			t.Error("coop-proxy: securityContext runAsNonRoot is not true")
		}
	}
	for _, a := range cp.Args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !p.flags[name] {
				t.Errorf("coop-proxy args: --%s is not a flag", name)
			}
		}
	}

	// Settings: the container's env over its envFrom ConfigMaps.
	env := map[string]string{}
	for _, ef := range cp.EnvFrom {
		if ef.ConfigMapRef != nil {
			data, ok := configMaps[ef.ConfigMapRef.Name]
			if !ok {
				t.Errorf("coop-proxy: envFrom ConfigMap %q is not in %s", ef.ConfigMapRef.Name, path)
			}
			for k, v := range data {
				env[k] = v
			}
		}
	}
	for _, e := range cp.Env {
		if e.ValueFrom != nil {
			env[e.Name] = "(from " + fmt.Sprint(e.ValueFrom) + ")"
			continue
		}
		env[e.Name] = e.Value
	}
	for k := range env {
		if strings.HasPrefix(k, envPrefix) && !p.env[k] {
			t.Errorf("coop-proxy env: %s is not a setting", k)
		}
	}
	for _, secret := range []string{"COOP_PROXY_CLIENT_SECRET", "COOP_PROXY_INBOUND_SECRET"} {
		if _, ok := env[secret]; ok {
			t.Errorf("coop-proxy env: %s is set; secrets go in files", secret)
		}
	}
	checkListen(t, "kubernetes coop-proxy", env)

	// Probes on the admin port: liveness /healthz, readiness /readyz.
	adminHost, adminPort, err := net.SplitHostPort(env["COOP_PROXY_ADMIN_LISTEN"])
	if err != nil || adminPort != "9090" {
		t.Fatalf("COOP_PROXY_ADMIN_LISTEN is %q, want port 9090", env["COOP_PROXY_ADMIN_LISTEN"])
	}
	if ip := net.ParseIP(adminHost); adminHost == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("COOP_PROXY_ADMIN_LISTEN %q is loopback: the kubelet's probes cannot reach it", env["COOP_PROXY_ADMIN_LISTEN"])
	}
	portOf := func(pr *probe) int {
		switch v := pr.HTTPGet.Port.(type) {
		case int:
			return v
		case string:
			for _, cport := range cp.Ports {
				if cport.Name == v {
					return cport.ContainerPort
				}
			}
		}
		return 0
	}
	for _, pr := range []struct {
		name string
		p    *probe
		path string
	}{{"livenessProbe", cp.LivenessProbe, "/healthz"}, {"readinessProbe", cp.ReadinessProbe, "/readyz"}} {
		switch {
		case pr.p == nil || pr.p.HTTPGet == nil:
			t.Errorf("coop-proxy: no %s with httpGet", pr.name)
		case pr.p.HTTPGet.Path != pr.path:
			t.Errorf("coop-proxy %s: path %q, want %s", pr.name, pr.p.HTTPGet.Path, pr.path)
		case portOf(pr.p) != 9090:
			t.Errorf("coop-proxy %s: port %v is not the admin port 9090", pr.name, pr.p.HTTPGet.Port)
		}
	}

	// The client secret is a file on a Secret volume; the store is on a
	// writable volume that is not a Secret.
	volumes := map[string]volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(file string) (volume, bool, bool) {
		dir := filepath.Dir(file)
		for _, m := range cp.VolumeMounts {
			if m.MountPath == dir && m.SubPath == "" {
				return volumes[m.Name], m.ReadOnly, true
			}
		}
		return volume{}, false, false
	}
	secretFile := env["COOP_PROXY_CLIENT_SECRET_FILE"]
	if v, _, ok := mountOf(secretFile); !ok || v.Secret == nil {
		t.Errorf("COOP_PROXY_CLIENT_SECRET_FILE %q is not on a mounted Secret volume", secretFile)
	} else {
		if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o004 != 0 || *v.Secret.DefaultMode&0o040 == 0 {
			t.Errorf("the Secret volume's defaultMode should be group-readable (fsGroup) and not world-readable, e.g. 288 (0440)")
		}
		var secretNames []string
		for _, o := range yamlDocs[k8sObject](t, filepath.Join("kubernetes", "secret.example.yaml")) {
			secretNames = append(secretNames, o.Metadata.Name)
		}
		if !slices.Contains(secretNames, v.Secret.SecretName) {
			t.Errorf("the Secret volume names %q; secret.example.yaml defines %v", v.Secret.SecretName, secretNames)
		}
	}
	// The store sits in a directory of its own under the volume's root
	// (coop-proxy creates it 0700): an emptyDir's root is writable by every
	// user, and coop-proxy refuses such a store directory.
	store := env["COOP_PROXY_STORE"]
	if v, ro, ok := mountOf(filepath.Dir(store)); !ok || ro || v.Secret != nil || v.ConfigMap != nil || (v.EmptyDir == nil && v.PersistentVolumeClaim == nil) {
		t.Errorf("COOP_PROXY_STORE %q is not in a directory of its own on a writable emptyDir or PersistentVolumeClaim volume", store)
	}

	// Time to drain before the kubelet kills it.
	timeout := p.shutdownTimeout(t)
	if s, ok := env["COOP_PROXY_SHUTDOWN_TIMEOUT"]; ok {
		if timeout, err = time.ParseDuration(s); err != nil {
			t.Errorf("COOP_PROXY_SHUTDOWN_TIMEOUT %q: %v", s, err)
		}
	}
	if g := pod.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= timeout {
		t.Errorf("terminationGracePeriodSeconds must exceed the shutdown timeout %s", timeout)
	}

	// The claim the README and comments name exists.
	for _, o := range yamlDocs[k8sObject](t, filepath.Join("kubernetes", "pvc.yaml")) {
		if o.Kind != "PersistentVolumeClaim" || o.Metadata.Name != "coop-proxy-tokens" {
			t.Errorf("pvc.yaml: %s %s, want PersistentVolumeClaim coop-proxy-tokens", o.Kind, o.Metadata.Name)
		}
		if !strings.Contains(read(t, path), "claimName: coop-proxy-tokens") {
			t.Errorf("%s does not show how to use the claim coop-proxy-tokens", path)
		}
	}
}

// checkListen: a non-loopback listener needs an inbound secret (or the
// explicit opt-out), as coop-proxy itself requires.
func checkListen(t *testing.T, where string, env map[string]string) {
	t.Helper()
	listen, ok := env["COOP_PROXY_LISTEN"]
	if !ok || strings.HasPrefix(listen, "unix:") {
		return
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		t.Errorf("%s: COOP_PROXY_LISTEN %q is not host:port", where, listen)
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return
	}
	if env["COOP_PROXY_INBOUND_SECRET_FILE"] == "" && env["COOP_PROXY_ALLOW_UNAUTHENTICATED_CALLERS"] != "true" {
		t.Errorf("%s: COOP_PROXY_LISTEN %q is not loopback, and no COOP_PROXY_INBOUND_SECRET_FILE is set", where, listen)
	}
}

// unit is a systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	u := unit{}
	section := ""
	for i, line := range strings.Split(read(t, path), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value in a section: %q", path, i+1, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// has reports whether key has the value v (among its values).
func (u unit) has(section, key, v string) bool { return slices.Contains(u[section][key], v) }

func (u unit) env() map[string]string {
	env := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		k, v, _ := strings.Cut(strings.Trim(e, `"`), "=")
		env[k] = v
	}
	return env
}

func (u unit) checkStop(t *testing.T, path string, shutdown time.Duration) {
	t.Helper()
	if !u.has("Service", "KillSignal", "SIGTERM") {
		t.Errorf("%s: KillSignal=SIGTERM missing", path)
	}
	stop := u["Service"]["TimeoutStopSec"]
	d, err := time.ParseDuration(strings.Join(stop, ""))
	if len(stop) != 1 || err != nil || d <= shutdown {
		t.Errorf("%s: TimeoutStopSec=%v must be a duration above the shutdown timeout %s", path, stop, shutdown)
	}
}

// (e) The system unit has the hardening directives; the user unit what a
// user manager can enforce. Both agree with the program.
func TestSystemdUnits(t *testing.T) {
	p := readProgram(t)
	sysPath := filepath.Join("systemd", "coop-proxy.service")
	u := readUnit(t, sysPath)
	required := []struct{ key, value string }{
		{"ExecStart", "/usr/local/bin/coop-proxy serve"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"StateDirectory", "coop-proxy"},
		{"EnvironmentFile", "-/etc/coop-proxy/env"},
		{"LoadCredential", "client-secret:/etc/coop-proxy/client-secret"},
		{"NoNewPrivileges", "yes"},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectControlGroups", "yes"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallFilter", "@system-service"},
		{"CapabilityBoundingSet", ""},
	}
	for _, r := range required {
		if !u.has("Service", r.key, r.value) {
			t.Errorf("%s: [Service] %s=%s missing (has %q)", sysPath, r.key, r.value, u["Service"][r.key])
		}
	}
	if !u.has("Service", "DynamicUser", "yes") && len(u["Service"]["User"]) == 0 {
		t.Errorf("%s: neither DynamicUser=yes nor a dedicated User=", sysPath)
	}
	if u.has("Service", "User", "root") {
		t.Errorf("%s: runs as root", sysPath)
	}
	env := u.env()
	for k, want := range map[string]string{
		"COOP_PROXY_STORE":              "%S/coop-proxy/tokens.json",
		"COOP_PROXY_CLIENT_SECRET_FILE": "%d/client-secret",
	} {
		if env[k] != want {
			t.Errorf("%s: Environment=%s=%s missing (has %q)", sysPath, k, want, env[k])
		}
	}
	if _, ok := env["COOP_PROXY_CLIENT_SECRET"]; ok {
		t.Errorf("%s: the client secret is in the environment", sysPath)
	}
	checkListen(t, sysPath, env)
	u.checkStop(t, sysPath, p.shutdownTimeout(t))
	if !u.has("Install", "WantedBy", "multi-user.target") {
		t.Errorf("%s: [Install] WantedBy=multi-user.target missing", sysPath)
	}

	userPath := filepath.Join("systemd", "coop-proxy-user.service")
	uu := readUnit(t, userPath)
	if ex := strings.Join(uu["Service"]["ExecStart"], ""); !strings.HasSuffix(ex, "/coop-proxy serve") {
		t.Errorf("%s: ExecStart=%q does not run coop-proxy serve", userPath, ex)
	}
	for _, r := range []struct{ key, value string }{
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"StateDirectory", "coop-proxy"},
		{"NoNewPrivileges", "yes"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"SystemCallFilter", "@system-service"},
	} {
		if !uu.has("Service", r.key, r.value) {
			t.Errorf("%s: [Service] %s=%s missing", userPath, r.key, r.value)
		}
	}
	if uenv := uu.env(); uenv["COOP_PROXY_STORE"] != "%S/coop-proxy/tokens.json" {
		t.Errorf("%s: COOP_PROXY_STORE is %q, want %%S/coop-proxy/tokens.json (the program's default location)", userPath, uenv["COOP_PROXY_STORE"])
	}
	uu.checkStop(t, userPath, p.shutdownTimeout(t))
	if !uu.has("Install", "WantedBy", "default.target") {
		t.Errorf("%s: [Install] WantedBy=default.target missing", userPath)
	}

	// env.example sets only settings, and never the secret itself.
	envPath := filepath.Join("systemd", "env.example")
	for i, line := range strings.Split(read(t, envPath), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok || !p.env[k] {
			t.Errorf("%s:%d: %q is not SETTING=value", envPath, i+1, line)
		}
		if k == "COOP_PROXY_CLIENT_SECRET" || k == "COOP_PROXY_INBOUND_SECRET" {
			t.Errorf("%s:%d: sets a secret", envPath, i+1)
		}
	}
}

// systemd-analyze verify, where it is installed, with a stand-in for the
// binary (verify wants ExecStart to be executable).
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "coop-proxy")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runtimeDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, bin string }{
		{"coop-proxy.service", "/usr/local/bin/coop-proxy"},
		{"coop-proxy-user.service", "%h/.local/bin/coop-proxy"},
	} {
		text := read(t, filepath.Join("systemd", tc.file))
		if !strings.Contains(text, "ExecStart="+tc.bin+" ") {
			t.Fatalf("%s: ExecStart does not run %s", tc.file, tc.bin)
		}
		unitPath := filepath.Join(dir, tc.file)
		if err := os.WriteFile(unitPath, []byte(strings.ReplaceAll(text, "ExecStart="+tc.bin, "ExecStart="+stub)), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"verify", unitPath}
		if strings.Contains(tc.file, "user") {
			args = []string{"--user", "verify", unitPath}
		}
		cmd := exec.Command(sa, args...)
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+runtimeDir, "SYSTEMD_LOG_COLOR=0")
		out, err := cmd.CombinedOutput()
		if bytes.Contains(out, []byte("Failed to initialize manager")) {
			t.Logf("systemd-analyze %v cannot run here: %s", args, out)
			continue
		}
		// verify exits 0 on unknown keys and bad values: its warnings name the file.
		if err != nil || bytes.Contains(out, []byte(tc.file)) {
			t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The Compose files: coop-proxy runs the demo from the image, its settings
// exist, and a non-loopback listener comes with an inbound secret.
func TestCompose(t *testing.T) {
	p := readProgram(t)
	type service struct {
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Secrets     []string          `yaml:"secrets"`
		NetworkMode string            `yaml:"network_mode"`
		ReadOnly    bool              `yaml:"read_only"`
		CapDrop     []string          `yaml:"cap_drop"`
	}
	type composeFile struct {
		Services map[string]service `yaml:"services"`
		Secrets  map[string]any     `yaml:"secrets"`
	}
	base := yamlDocs[composeFile](t, filepath.Join("compose", "compose.yaml"))
	host := yamlDocs[composeFile](t, filepath.Join("compose", "compose.host.yaml"))
	if len(base) != 1 || len(host) != 1 {
		t.Fatal("compose files must hold one document each")
	}
	cp, ok := base[0].Services["coop-proxy"]
	if !ok {
		t.Fatal("compose.yaml: no coop-proxy service")
	}
	if !slices.Equal(cp.Command, []string{"demo"}) {
		t.Errorf("compose.yaml: coop-proxy command %v, want [demo]", cp.Command)
	}
	if !cp.ReadOnly || !slices.Contains(cp.CapDrop, "ALL") {
		t.Error("compose.yaml: coop-proxy is not read_only with cap_drop ALL")
	}
	for name, s := range base[0].Services {
		if s.NetworkMode != "" && s.NetworkMode != "service:coop-proxy" {
			t.Errorf("compose.yaml: %s network_mode %q", name, s.NetworkMode)
		}
	}
	checkListen(t, "compose.yaml", cp.Environment)
	// compose.host.yaml is applied over compose.yaml.
	merged := map[string]string{}
	for k, v := range cp.Environment {
		merged[k] = v
	}
	hcp := host[0].Services["coop-proxy"]
	for k, v := range hcp.Environment {
		merged[k] = v
	}
	checkListen(t, "compose.yaml + compose.host.yaml", merged)
	for _, s := range hcp.Secrets {
		if _, ok := host[0].Secrets[s]; !ok {
			t.Errorf("compose.host.yaml: secret %q is not declared", s)
		}
	}
	if f := merged["COOP_PROXY_INBOUND_SECRET_FILE"]; f != "" && !slices.Contains(hcp.Secrets, filepath.Base(f)) {
		t.Errorf("compose.host.yaml: COOP_PROXY_INBOUND_SECRET_FILE %q is not one of the service's secrets %v", f, hcp.Secrets)
	}
	for _, f := range [][]composeFile{base, host} {
		for name, s := range f[0].Services {
			for k := range s.Environment {
				if strings.HasPrefix(k, envPrefix) && !p.env[k] {
					t.Errorf("compose service %s: %s is not a setting", name, k)
				}
			}
		}
	}
}

// The Dockerfile builds what the deployments assume, for every platform
// from the build machine's one.
func TestDockerfile(t *testing.T) {
	text := read(t, dockerfile)
	for _, want := range []string{
		// The build stage runs on the building machine and cross-compiles.
		"FROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build",
		"ARG TARGETOS TARGETARCH",
		"GOOS=$TARGETOS GOARCH=$TARGETARCH go build",
		"docker buildx build --platform linux/amd64,linux/arm64",
		"CGO_ENABLED=0",
		"-trimpath",
		"-X main.buildVersion=${VERSION} -X main.buildCommit=${COMMIT}",
		"FROM scratch",
		"/etc/ssl/certs/ca-certificates.crt",
		"USER 65532:65532",
		`VOLUME ["/var/lib/coop-proxy"]`,
		"COOP_PROXY_STORE=/var/lib/coop-proxy/tokens.json",
		"COOP_PROXY_LISTEN=127.0.0.1:8080",
		"COOP_PROXY_ADMIN_LISTEN=0.0.0.0:9090",
		"EXPOSE 9090",
		`ENTRYPOINT ["/coop-proxy"]`,
		`CMD ["serve"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile: %q missing", want)
		}
	}
	if !regexp.MustCompile(`(?m)^ARG GO_IMAGE=golang:1\.26-bookworm$`).MatchString(text) {
		t.Error("Dockerfile: ARG GO_IMAGE=golang:1.26-bookworm missing (.ci/build-image makes that tag locally)")
	}
	// The build stage cannot run what it built for another platform: the
	// binary is only written (go build -o) and copied out (COPY --from).
	for _, loc := range regexp.MustCompile(`/out/coop-proxy\b`).FindAllStringIndex(text, -1) {
		before := text[:loc[0]]
		if !strings.HasSuffix(before, "-o ") && !strings.HasSuffix(before, "COPY --from=build ") {
			t.Errorf("Dockerfile:%d: /out/coop-proxy used other than by go build -o or COPY --from=build: the build stage must not run the target's binary", lineOf(text, loc[0]))
		}
	}
}
