// Command release builds coop-proxy's release: for each target system, a
// binary built with -trimpath, CGO_ENABLED=0 and the version and commit
// stamped in, packed in an archive (.tar.gz for Linux and macOS, .zip for
// Windows) with the README; an SBOM of the Go modules (CycloneDX JSON, by
// cyclonedx-gomod); and SHA256SUMS over them all. `make release` runs it.
//
// The same commit gives the same bytes: Go's builds are reproducible with
// -trimpath and no VCS stamping (-buildvcs=false; the commit is stamped
// with -X instead), and the archives are written here with every entry's
// time set to the commit's, owner root, fixed modes, and in sorted order
// (tar and zip tools would take them from the checkout). .ci/cross builds
// twice and compares the sums.
//
// Usage: go run ./scripts/release [-out dist] [-version V] [-commit C] [-targets linux/amd64,...] [-sbom=false]
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Targets are the systems a release is built for.
var Targets = []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64", "windows/arm64"}

// cyclonedxGomod is the SBOM tool, run as a Go module at a fixed version.
const cyclonedxGomod = "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0"

func main() {
	out := flag.String("out", "dist", "directory the release is written to (emptied first)")
	version := flag.String("version", "", "version stamped in (default: git describe --tags --always --dirty)")
	commit := flag.String("commit", "", "commit stamped in (default: git rev-parse HEAD)")
	targets := flag.String("targets", strings.Join(Targets, ","), "GOOS/GOARCH pairs, comma-separated")
	sbom := flag.Bool("sbom", true, "write the SBOM (runs "+cyclonedxGomod+")")
	flag.Parse()
	if err := run(*out, *version, *commit, strings.Split(*targets, ","), *sbom); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(out, version, commit string, targets []string, sbom bool) error {
	var err error
	if version == "" {
		if version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return err
		}
	}
	if commit == "" {
		if commit, err = git("rev-parse", "HEAD"); err != nil {
			return err
		}
	}
	// The archives' time: the commit's, so that it says something true and
	// does not change between two builds of it.
	epoch, err := git("log", "-1", "--format=%ct", commit)
	if err != nil {
		return err
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("commit time %q: %w", epoch, err)
	}
	mtime := time.Unix(secs, 0).UTC()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		return err
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	var written []string
	for _, t := range targets {
		goos, goarch, ok := strings.Cut(t, "/")
		if !ok || !slices.Contains(Targets, t) {
			return fmt.Errorf("target %q is not one of %s", t, strings.Join(Targets, ", "))
		}
		bin, err := build(goos, goarch, version, commit)
		if err != nil {
			return err
		}
		name := ArchiveName(version, goos, goarch)
		exe := "coop-proxy"
		if goos == "windows" {
			exe += ".exe"
		}
		files := []File{{Name: exe, Mode: 0o755, Data: bin}, {Name: "README.md", Mode: 0o644, Data: readme}}
		dir := strings.TrimSuffix(strings.TrimSuffix(name, ".tar.gz"), ".zip")
		data, err := Archive(name, dir, files, mtime)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, name), data, 0o644); err != nil {
			return err
		}
		fmt.Printf("%s  %d bytes (binary %d bytes)\n", name, len(data), len(bin))
		written = append(written, name)
	}
	if sbom {
		name := "coop-proxy_" + version + ".cdx.json"
		if err := writeSBOM(filepath.Join(out, name), version); err != nil {
			return err
		}
		written = append(written, name)
	}
	sums, err := Sums(out, written)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "SHA256SUMS"), sums, 0o644); err != nil {
		return err
	}
	fmt.Print(string(sums))
	return nil
}

// ArchiveName is the archive of one target: .zip for Windows, where it is
// what Explorer opens, .tar.gz elsewhere.
func ArchiveName(version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("coop-proxy_%s_%s_%s%s", version, goos, goarch, ext)
}

// build builds the binary for one target and returns it.
func build(goos, goarch, version, commit string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "coop-proxy-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "coop-proxy")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags", "-s -w -X main.buildVersion="+version+" -X main.buildCommit="+commit,
		"-o", bin, "./cmd/coop-proxy")
	cmd.Env = BuildEnv(os.Environ(), goos, goarch)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building for %s/%s: %w", goos, goarch, err)
	}
	return os.ReadFile(bin)
}

// BuildEnv is environ with every variable that changes the binary set
// for the target: the CPU levels (GOAMD64, GOARM64) to Go's defaults, no
// experiments and no FIPS 140 module, whatever this machine's environment
// or `go env -w` says, so that another machine builds the same bytes.
// Only the Go toolchain's version must match.
func BuildEnv(environ []string, goos, goarch string) []string {
	return append(environ, "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch, "GOFLAGS=-mod=mod",
		"GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=", "GOFIPS140=off")
}

// writeSBOM writes the CycloneDX SBOM of the modules the program is built
// from (not the tests'), without serial number nor timestamp, which would
// differ at each run, and with the package URLs short (-short-purls):
// without the goos and goarch qualifiers of the machine that runs it, which
// the module list does not depend on (one SBOM is for all the targets).
func writeSBOM(path, version string) error {
	cmd := exec.Command("go", "run", cyclonedxGomod, "mod", "-json", "-licenses", "-noserial", "-notimestamp", "-short-purls",
		"-output", path, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cyclonedx-gomod: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if b, err = PinVersion(b, version); err != nil {
		return fmt.Errorf("cyclonedx-gomod wrote %s: %w", path, err)
	}
	return os.WriteFile(path, b, 0o644)
}

// PinVersion names the main module in the SBOM bom with the release's
// version: its version, and its reference (bom-ref, purl, and where the
// dependencies name it). cyclonedx-gomod takes the version from the
// checkout's git tags, which it cannot read in a git worktree, and gives a
// pseudo-version in a clone: the same commit would give two SBOMs.
func PinVersion(bom []byte, version string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(bom, &doc); err != nil {
		return nil, err
	}
	md, _ := doc["metadata"].(map[string]any)
	main, _ := md["component"].(map[string]any)
	name, _ := main["name"].(string)
	old, _ := main["bom-ref"].(string)
	if name == "" || old == "" {
		return nil, errors.New("no metadata.component with a name and a bom-ref")
	}
	ref := "pkg:golang/" + name + "@" + version + "?type=module"
	main["version"], main["bom-ref"], main["purl"] = version, ref, ref
	deps, _ := doc["dependencies"].([]any)
	for _, d := range deps {
		d, _ := d.(map[string]any)
		if d["ref"] == old {
			d["ref"] = ref
		}
		on, _ := d["dependsOn"].([]any)
		for i := range on {
			if on[i] == old {
				on[i] = ref
			}
		}
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n'), err
}

// Sums is SHA256SUMS for the files names in dir, in sha256sum's format,
// sorted by name.
func Sums(dir string, names []string) ([]byte, error) {
	names = slices.Sorted(slices.Values(names))
	var b bytes.Buffer
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	return b.Bytes(), nil
}

// git runs git in the current directory and returns its output, trimmed.
func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
