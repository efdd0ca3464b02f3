package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	mtime = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	files = []File{{Name: "coop-proxy", Mode: 0o755, Data: []byte("binary")}, {Name: "README.md", Mode: 0o644, Data: []byte("# coop-proxy\n")}}
)

// The same files give the same bytes, whatever order they come in.
func TestArchivesAreReproducible(t *testing.T) {
	for _, name := range []string{"x.tar.gz", "x.zip"} {
		a, err := Archive(name, "d", files, mtime)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Archive(name, "d", []File{files[1], files[0]}, mtime)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two archives of the same files differ", name)
		}
		c, _ := Archive(name, "d", files, mtime.Add(time.Second))
		if bytes.Equal(a, c) {
			t.Errorf("%s: the time given is not in the archive", name)
		}
	}
}

func TestTarGzEntries(t *testing.T) {
	data, err := Archive("coop-proxy_v1_linux_amd64.tar.gz", "coop-proxy_v1_linux_amd64", files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if gz.Name != "" || !gz.ModTime.IsZero() {
		t.Errorf("gzip header has name %q, time %v", gz.Name, gz.ModTime)
	}
	tr := tar.NewReader(gz)
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		body     string
	}
	var got []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(mtime) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: time %v, owner %q/%q", h.Name, h.ModTime, h.Uname, h.Gname)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, entry{h.Name, h.Mode, h.Uid, h.Gid, string(b)})
	}
	want := []entry{
		{"coop-proxy_v1_linux_amd64/", 0o755, 0, 0, ""},
		{"coop-proxy_v1_linux_amd64/README.md", 0o644, 0, 0, "# coop-proxy\n"},
		{"coop-proxy_v1_linux_amd64/coop-proxy", 0o755, 0, 0, "binary"},
	}
	if len(got) != len(want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestZipEntries(t *testing.T) {
	files := []File{{Name: "coop-proxy.exe", Mode: 0o755, Data: []byte("MZ")}, files[1]}
	data, err := Archive("a.zip", "coop-proxy_v1_windows_arm64", files, mtime)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		if !f.Modified.Equal(mtime) {
			t.Errorf("%s: time %v", f.Name, f.Modified)
		}
		if f.Name == "coop-proxy_v1_windows_arm64/coop-proxy.exe" && f.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v", f.Name, f.Mode())
		}
	}
	if want := "[coop-proxy_v1_windows_arm64/README.md coop-proxy_v1_windows_arm64/coop-proxy.exe]"; fmt.Sprint(names) != want {
		t.Errorf("entries %v, want %s", names, want)
	}
}

func TestArchiveNames(t *testing.T) {
	if got := ArchiveName("v1.2.0", "windows", "amd64"); got != "coop-proxy_v1.2.0_windows_amd64.zip" {
		t.Error(got)
	}
	if got := ArchiveName("v1.2.0", "darwin", "arm64"); got != "coop-proxy_v1.2.0_darwin_arm64.tar.gz" {
		t.Error(got)
	}
}

func TestSumsAreSha256sumsFormatSorted(t *testing.T) {
	dir := t.TempDir()
	for n, c := range map[string]string{"b.zip": "bee", "a.tar.gz": "ay"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Sums(dir, []string{"b.zip", "a.tar.gz"})
	if err != nil {
		t.Fatal(err)
	}
	// sha256sum's own output for these contents.
	want := "69d61997a241e97931db9dd1cfcef218041a752485f5f7956b09766287682da3  a.tar.gz\n" +
		"62cb81b5904a262ffaeed02abef36bfc540b09f964b8b0b636662f77ffce6714  b.zip\n"
	if string(got) != want {
		t.Errorf("SHA256SUMS:\n%s\nwant\n%s", got, want)
	}
}

// cyclonedx-gomod names the main module without a version in a git
// worktree and with a pseudo-version in a clone: the SBOM of one release
// is the same from either, naming the release's version throughout.
func TestPinVersionGivesOneSBOMFromAnyCheckout(t *testing.T) {
	bom := func(ref string) []byte {
		return []byte(`{"bomFormat": "CycloneDX", "metadata": {"component": {"bom-ref": "` + ref + `", "name": "github.com/coop-proxy/coop-proxy",
			"purl": "` + ref + `", "type": "application", "version": "` + strings.TrimPrefix(strings.Split(ref, "?")[0], "pkg:golang/github.com/coop-proxy/coop-proxy@") + `"}},
			"components": [{"bom-ref": "pkg:golang/go.uber.org/zap@v1.28.0?type=module"}],
			"dependencies": [{"ref": "` + ref + `", "dependsOn": ["pkg:golang/go.uber.org/zap@v1.28.0?type=module"]},
				{"ref": "pkg:golang/go.uber.org/zap@v1.28.0?type=module", "dependsOn": ["` + ref + `"]}]}`)
	}
	worktree, err := PinVersion(bom("pkg:golang/github.com/coop-proxy/coop-proxy?type=module"), "v1.2.0")
	if err != nil {
		t.Fatal(err)
	}
	clone, err := PinVersion(bom("pkg:golang/github.com/coop-proxy/coop-proxy@v0.0.0-20261129145229-1b26a6202adf?type=module"), "v1.2.0")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(worktree, clone) {
		t.Errorf("the SBOMs differ:\n%s\n%s", worktree, clone)
	}
	ref := "pkg:golang/github.com/coop-proxy/coop-proxy@v1.2.0?type=module"
	if n := strings.Count(string(clone), `"`+ref+`"`); n != 4 || strings.Contains(string(clone), "v0.0.0-") {
		t.Errorf("%s named %d times, want 4 (bom-ref, purl, two dependencies):\n%s", ref, n, clone)
	}
	if _, err := PinVersion([]byte(`{"metadata": {}}`), "v1"); err == nil {
		t.Error("an SBOM without a main component was accepted")
	}
}

// The build's environment wins over this machine's settings that change
// the binary (exec uses the last value of a variable).
func TestBuildEnvPinsWhatChangesTheBinary(t *testing.T) {
	mine := []string{"GOAMD64=v3", "GOARM64=v9.0", "GOEXPERIMENT=jsonv2", "GOFIPS140=latest", "CGO_ENABLED=1", "HOME=/home/brent"}
	want := map[string]string{"GOAMD64": "v1", "GOARM64": "v8.0", "GOEXPERIMENT": "", "GOFIPS140": "off", "CGO_ENABLED": "0",
		"GOOS": "darwin", "GOARCH": "arm64", "HOME": "/home/brent"}
	got := map[string]string{}
	for _, kv := range BuildEnv(mine, "darwin", "arm64") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}
