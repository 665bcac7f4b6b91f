package config

import (
	"strings"
	"testing"
)

func TestYAMLAnchorsAndMerge(t *testing.T) {
	c := mustParse(t, `
routes:
  - &a
    name: a
    path_prefix: /a
    backends: &backends [http://127.0.0.1:1, http://127.0.0.1:2]
    retry: {attempts: 5}
  - <<: *a
    name: b
    path_prefix: /b
  - name: c
    path_prefix: /c
    backends: *backends
`)
	b := c.Routes[1]
	if b.Name != "b" || b.PathPrefix != "/b" || b.Retry.Attempts != 5 || len(b.Backends) != 2 {
		t.Errorf("merged route = %+v", b)
	}
	if got := c.Routes[2].Backends; len(got) != 2 || got[1].URL != "http://127.0.0.1:2" {
		t.Errorf("aliased backends = %+v", got)
	}
}

func TestMergeKeyPrecedence(t *testing.T) {
	c := mustParse(t, `
routes:
  - &base
    path_prefix: /a
    strip_prefix: true
    backends: [http://127.0.0.1:1]
  - <<: *base
    strip_prefix: false
    path_prefix: /b
`)
	if r := c.Routes[1]; r.StripPrefix || r.PathPrefix != "/b" {
		t.Errorf("explicit keys must override merged ones: %+v", r)
	}
}

func TestAliasBomb(t *testing.T) {
	got := problems(t, aliasBomb())
	if len(got) != 1 || !strings.HasSuffix(got[0], ": the document is too large or uses too many aliases") {
		t.Errorf("problems = %q, want the aliasing problem alone", got[:min(len(got), 5)])
	}
}
