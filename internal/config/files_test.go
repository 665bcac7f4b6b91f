package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccessLogPath: an access_log file must be one sluice can write, or
// be made in a directory that exists; -check and a reload say so, naming
// the field.
func TestAccessLogPath(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.log")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, dest, problem string
	}{
		{"off", "off", ""},
		{"stdout", "stdout", ""},
		{"a new file in a directory that exists", filepath.Join(dir, "new.log"), ""},
		{"a file that exists", existing, ""},
		{"a directory that does not exist", filepath.Join(dir, "missing", "x.log"), "does not exist"},
		{"a directory", dir, "is a directory"},
		{"under a file", filepath.Join(existing, "x.log"), "is not a directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("access_log: " + quote(tt.dest) + "\nroutes:\n  - path_prefix: /\n    backends: [http://127.0.0.1:1]\n"))
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("access_log %q: %v", tt.dest, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "access_log: "+quote(tt.dest)+": ") || !strings.Contains(err.Error(), tt.problem) {
				t.Errorf("access_log %q: %v, want an error naming access_log and saying %q", tt.dest, err, tt.problem)
			}
			if _, statErr := os.Stat(tt.dest); tt.dest != dir && statErr == nil {
				t.Errorf("checking made %s", tt.dest)
			}
		})
	}
}
