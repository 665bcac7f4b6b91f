package e2e

import (
	"path/filepath"
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
			p := launch(t, "-check", "-config", file)
			code := p.Wait(10 * time.Second)
			if stdout := p.stdout.String(); code != 0 || stdout != "configuration ok\n" {
				t.Errorf("sluice -check -config %s: exit %d, stdout %q, want exit 0 and %q\nstderr:\n%s",
					file, code, stdout, "configuration ok\n", p.Stderr())
			}
		})
	}
}
