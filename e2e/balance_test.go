package e2e

import (
	"fmt"
	"io"
	"testing"
)

// share sends n sequential GETs over one keep-alive client and counts which
// backend answered each (by its body).
func share(t *testing.T, p *proc, n int) map[string]int {
	t.Helper()
	c, _ := newClient(t)
	got := map[string]int{}
	for i := 0; i < n; i++ {
		resp, err := c.Get(p.URL(fmt.Sprintf("/api/%d", i)))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d body %q err %v", i, resp.StatusCode, body, err)
		}
		got[string(body)]++
	}
	return got
}

func within(got, want, slack int) bool { return got >= want-slack && got <= want+slack }

func TestRoundRobinEven(t *testing.T) {
	t.Parallel()
	a, b, c := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    backends: [%s, %s, %s]
`, a.URL, b.URL, c.URL))

	got := share(t, p, 300)
	for _, name := range []string{"a", "b", "c"} {
		if !within(got[name], 100, 1) {
			t.Errorf("backend %s answered %d of 300, want 100 (±1); all: %v", name, got[name], got)
		}
	}
	if a.Count()+b.Count()+c.Count() != 300 {
		t.Errorf("backends received %d requests in total, want 300", a.Count()+b.Count()+c.Count())
	}
}

func TestRoundRobinWeighted(t *testing.T) {
	t.Parallel()
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    backends:
      - url: %s
        weight: 2
      - %s
`, a.URL, b.URL))

	got := share(t, p, 300)
	if !within(got["a"], 200, 1) || !within(got["b"], 100, 1) {
		t.Errorf("shares = %v, want a:200 b:100 (±1) for weights 2:1", got)
	}
}

// TestRoundRobinWeightedSmooth checks the documented "smooth weighted round robin":
// with weights 2:1 no backend of weight 1 is picked twice in a row, and the
// heavy one is never picked three times in a row.
func TestRoundRobinWeightedSmooth(t *testing.T) {
	t.Parallel()
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /api
    backends:
      - url: %s
        weight: 2
      - url: %s
        weight: 1
`, a.URL, b.URL))

	c, _ := newClient(t)
	var seq []string
	for i := 0; i < 30; i++ {
		resp, err := c.Get(p.URL("/api/x"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		seq = append(seq, string(body))
	}
	runA, prev := 0, ""
	for i, s := range seq {
		if s == "b" && prev == "b" {
			t.Fatalf("b picked twice in a row at %d: %v", i, seq)
		}
		if s == "a" {
			runA++
		} else {
			runA = 0
		}
		if runA > 2 {
			t.Fatalf("a picked three times in a row at %d: %v", i, seq)
		}
		prev = s
	}
}
