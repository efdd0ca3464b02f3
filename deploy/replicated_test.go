package deploy_test

import (
	"path/filepath"
	"strings"
	"testing"
)

// The replicated variant: several replicas on one farmer's grant in Redis,
// the Redis password and the sealing key from a Secret as files, and no
// volume holding tokens.
func TestKubernetesReplicated(t *testing.T) {
	objs := yamlDocs[k8sObject](t, filepath.Join("kubernetes", "replicated", "deployment.yaml"))
	var dep *k8sObject
	settings := map[string]string{}
	for i := range objs {
		switch objs[i].Kind {
		case "Deployment":
			dep = &objs[i]
		case "ConfigMap":
			for k, v := range objs[i].Data {
				settings[k] = v
			}
		}
	}
	if dep == nil {
		t.Fatal("no Deployment")
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
		t.Errorf("replicas %v: the variant is for several", dep.Spec.Replicas)
	}
	var sidecar *container
	for i, c := range dep.Spec.Template.Spec.InitContainers {
		if c.Name == "coop-proxy" {
			sidecar = &dep.Spec.Template.Spec.InitContainers[i]
		}
	}
	if sidecar == nil {
		t.Fatal("no coop-proxy sidecar")
	}
	mounts := map[string]string{}
	for _, m := range sidecar.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, e := range sidecar.Env {
		settings[e.Name] = e.Value
	}
	store := settings["COOP_PROXY_STORE"]
	if !strings.HasPrefix(store, "redis://") && !strings.HasPrefix(store, "rediss://") || strings.Contains(store, "@") {
		t.Errorf("COOP_PROXY_STORE %q: want a Redis URL without credentials", store)
	}
	if settings["COOP_PROXY_GRANT"] != "authorization_code" {
		t.Errorf("COOP_PROXY_GRANT %q: the variant serves a farmer's grant", settings["COOP_PROXY_GRANT"])
	}
	secretVolumes := map[string]string{}
	for _, v := range dep.Spec.Template.Spec.Volumes {
		if v.PersistentVolumeClaim != nil || v.EmptyDir != nil {
			t.Errorf("volume %s: no volume holds tokens with a Redis store", v.Name)
		}
		if v.Secret != nil {
			secretVolumes[v.Name] = v.Secret.SecretName
		}
	}
	for _, file := range []string{"COOP_PROXY_STORE_PASSWORD_FILE", "COOP_PROXY_STORE_KEY_FILE", "COOP_PROXY_CLIENT_SECRET_FILE"} {
		path := settings[file]
		found := false
		for name, dir := range mounts {
			if _, ok := secretVolumes[name]; ok && filepath.Dir(path) == dir {
				found = true
			}
		}
		if !found {
			t.Errorf("%s %q is not in a mounted Secret", file, path)
		}
	}
}
