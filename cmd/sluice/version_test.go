package main

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolveVersion(t *testing.T) {
	const module = "github.com/sluice-proxy/sluice"
	installed := &debug.BuildInfo{Main: debug.Module{Path: module, Version: "v1.2.3"}}
	local := &debug.BuildInfo{Main: debug.Module{Path: module, Version: "(devel)"}}
	stamped := &debug.BuildInfo{
		Main: debug.Module{Path: module, Version: "v0.0.0-20261129024000-6f640d2a1b2c+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "6f640d2a1b2c"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	tests := []struct {
		name string
		set  string
		info *debug.BuildInfo
		want string
	}{
		{name: "go install of a release", set: "dev", info: installed, want: "v1.2.3"},
		{name: "local build", set: "dev", info: local, want: "dev"},
		{name: "local build stamped from git", set: "dev", info: stamped, want: "dev"},
		{name: "no build information", set: "dev", info: nil, want: "dev"},
		{name: "empty module version", set: "dev", info: &debug.BuildInfo{}, want: "dev"},
		{name: "ldflags beat go install", set: "v9.9.9", info: installed, want: "v9.9.9"},
		{name: "ldflags on a local build", set: "v9.9.9-rc1", info: local, want: "v9.9.9-rc1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveVersion(tt.set, tt.info); got != tt.want {
				t.Errorf("resolveVersion(%q, ...) = %q, want %q", tt.set, got, tt.want)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-version"}, &stdout, &stderr); code != 0 {
		t.Fatalf("-version exited %d; stderr: %s", code, stderr.String())
	}
	if got := stdout.String(); got != "sluice dev\n" {
		t.Errorf("-version printed %q, want %q (a test binary is a local build)", got, "sluice dev\n")
	}
}

// TestVersionOfBuilds builds the command the three ways a user gets it and
// runs its -version: a local build, a local build with -ldflags -X, and go
// install of a tagged module version, served from a module proxy made in a
// temporary directory out of this checkout's files (so it needs no network:
// the dependencies come from the local module cache).
func TestVersionOfBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds sluice three times")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	root := moduleRoot(t)
	modcache := strings.TrimSpace(goEnv(t, goBin, "GOMODCACHE"))
	tmp := t.TempDir()

	runVersion := func(t *testing.T, bin string) string {
		t.Helper()
		out, err := exec.Command(bin, "-version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s -version: %v\n%s", bin, err, out)
		}
		return string(out)
	}
	goCmd := func(t *testing.T, dir string, env []string, args ...string) {
		t.Helper()
		cmd := exec.Command(goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	t.Run("local build", func(t *testing.T) {
		bin := filepath.Join(tmp, "local", "sluice")
		goCmd(t, root, []string{"GOFLAGS=-buildvcs=auto"}, "build", "-o", bin, "./cmd/sluice")
		if got := runVersion(t, bin); got != "sluice dev\n" {
			t.Errorf("got %q, want %q", got, "sluice dev\n")
		}
	})
	t.Run("ldflags", func(t *testing.T) {
		bin := filepath.Join(tmp, "ldflags", "sluice")
		goCmd(t, root, nil, "build", "-ldflags", "-X main.version=v7.8.9", "-o", bin, "./cmd/sluice")
		if got := runVersion(t, bin); got != "sluice v7.8.9\n" {
			t.Errorf("got %q, want %q", got, "sluice v7.8.9\n")
		}
	})
	t.Run("go install of a version", func(t *testing.T) {
		const v = "v1.2.3"
		proxy := filepath.Join(tmp, "proxy")
		writeModuleProxy(t, root, proxy, v)
		gobin := filepath.Join(tmp, "gobin")
		env := []string{
			"GOBIN=" + gobin,
			// A module cache of its own, so that the made-up version never
			// lands in the user's; its dependencies come from the user's
			// cache, which is laid out as a module proxy.
			"GOMODCACHE=" + filepath.Join(tmp, "modcache"),
			"GOPROXY=" + fileURL(proxy) + "," + fileURL(filepath.Join(modcache, "cache", "download")),
			"GOSUMDB=off",
			"GOFLAGS=-modcacherw",
			"GOWORK=off",
		}
		goCmd(t, tmp, env, "install", "github.com/sluice-proxy/sluice/cmd/sluice@"+v)
		if got := runVersion(t, filepath.Join(gobin, "sluice")); got != "sluice "+v+"\n" {
			t.Errorf("got %q, want %q", got, "sluice "+v+"\n")
		}
	})
}

// writeModuleProxy writes a file-based module proxy at dir serving the
// module at root as version v: its list, .info, .mod and .zip files.
func writeModuleProxy(t *testing.T, root, dir, v string) {
	t.Helper()
	const module = "github.com/sluice-proxy/sluice"
	at := filepath.Join(dir, filepath.FromSlash(module), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "e2e") {
				return filepath.SkipDir
			}
			return nil
		}
		// The sources, the files they embed (the dashboard's page) and the
		// module files are all a build needs.
		embedded := strings.HasPrefix(filepath.ToSlash(rel), "internal/admin/dashboard/")
		if !strings.HasSuffix(rel, ".go") && rel != "go.mod" && rel != "go.sum" && !embedded {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		w, err := zw.Create(module + "@" + v + "/" + filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"list":      []byte(v + "\n"),
		v + ".info": []byte(`{"Version":"` + v + `","Time":"2026-12-01T00:00:00Z"}` + "\n"),
		v + ".mod":  gomod,
		v + ".zip":  zb.Bytes(),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(at, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// moduleRoot returns the directory holding the repository's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod two levels up from cmd/sluice: %v", err)
	}
	return root
}

func goEnv(t *testing.T, goBin, key string) string {
	t.Helper()
	out, err := exec.Command(goBin, "env", key).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return string(out)
}

// fileURL returns a file:// URL for an absolute path.
func fileURL(path string) string { return "file://" + filepath.ToSlash(path) }
