package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coop-proxy/coop-proxy/internal/config"
)

// (d2) The routes example: the configuration file in its ConfigMap is one
// coop-proxy reads without a problem, mounted where COOP_PROXY_CONFIG
// names it, with every secret file it names on a mounted Secret, and the
// sidecar as hardened as deployment.yaml's.
func TestKubernetesRoutesFile(t *testing.T) {
	path := filepath.Join("kubernetes", "routes.yaml")
	var file string
	var pod *podSpec
	for _, o := range yamlDocs[k8sObject](t, path) {
		switch o.Kind {
		case "ConfigMap":
			file = o.Data["coop-proxy.yaml"]
		case "Deployment":
			pod = &o.Spec.Template.Spec
		}
	}
	if file == "" || pod == nil {
		t.Fatalf("%s: no ConfigMap with coop-proxy.yaml, or no Deployment", path)
	}
	dir := t.TempDir()
	tmp := filepath.Join(dir, "coop-proxy.yaml")
	if err := os.WriteFile(tmp, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := config.Load("test", nil, map[string]string{config.EnvPrefix + "CONFIG": tmp, config.EnvPrefix + "STORE": filepath.Join(dir, "tokens.json")},
		config.Needs{Listen: true})
	if err != nil {
		t.Fatalf("the ConfigMap's coop-proxy.yaml: %v", err)
	}
	if len(s.Routes) < 2 {
		t.Fatalf("the example has %d routes", len(s.Routes))
	}

	i := slices.IndexFunc(pod.InitContainers, func(c container) bool { return c.Name == "coop-proxy" })
	if i < 0 {
		t.Fatal("no coop-proxy sidecar")
	}
	cp := pod.InitContainers[i]
	env := map[string]string{}
	for _, e := range cp.Env {
		env[e.Name] = e.Value
	}
	// mountOf is the volume mounted at the directory holding file.
	mountOf := func(file string) *volume {
		for _, m := range cp.VolumeMounts {
			if strings.HasPrefix(file, m.MountPath+"/") {
				for j := range pod.Volumes {
					if pod.Volumes[j].Name == m.Name {
						return &pod.Volumes[j]
					}
				}
			}
		}
		return nil
	}
	if v := mountOf(env["COOP_PROXY_CONFIG"]); v == nil || v.ConfigMap["name"] != "coop-proxy-routes" || filepath.Base(env["COOP_PROXY_CONFIG"]) != "coop-proxy.yaml" {
		t.Errorf("COOP_PROXY_CONFIG=%s is not the ConfigMap's file", env["COOP_PROXY_CONFIG"])
	}
	for _, r := range s.Routes {
		if v := mountOf(r.ClientSecretFile); v == nil || v.Secret == nil {
			t.Errorf("route %s: client_secret_file %s is not on a mounted Secret", r.Name, r.ClientSecretFile)
		}
	}
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || !isTrue(sc.ReadOnlyRootFilesystem) || !isFalse(sc.AllowPrivilegeEscalation) || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("container %s is not hardened as deployment.yaml's", c.Name)
		}
	}
}
