package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExamples checks every configuration in examples/ with
// sluice -check: each must load as it is, so that a user can start from it.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if yml, _ := filepath.Glob(filepath.Join("..", "examples", "*.yml")); len(yml) > 0 {
		t.Errorf("examples must end in .yaml, or this test skips them: %v", yml)
	}
	if len(files) == 0 {
		t.Fatal("no examples/*.yaml found")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			file := withLogDir(t, file)
			p := launch(t, "-check", "-config", file)
			code := p.Wait(10 * time.Second)
			if stdout := p.stdout.String(); code != 0 || stdout != "configuration ok\n" {
				t.Errorf("sluice -check -config %s: exit %d, stdout %q, want exit 0 and %q\nstderr:\n%s",
					file, code, stdout, "configuration ok\n", p.Stderr())
			}
		})
	}
}

// exampleLogDir is where the examples write their access log; -check
// requires the directory, which a deployment makes (docs/deploy.md).
const exampleLogDir = "/var/log/sluice/"

// withLogDir returns file, or, when it names exampleLogDir and this
// machine has none, a copy of it in a temporary directory that writes its
// log there instead.
func withLogDir(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(exampleLogDir); err == nil || !strings.Contains(string(data), exampleLogDir) {
		return file
	}
	dir := t.TempDir()
	out := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(out, []byte(strings.ReplaceAll(string(data), exampleLogDir, dir+"/")), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
