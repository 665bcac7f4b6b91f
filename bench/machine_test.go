package main

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// niceness returns the niceness field of a /proc/<pid>/stat line.
func niceness(t *testing.T, stat string) int {
	t.Helper()
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, nice field 19.
	_, rest, ok := strings.Cut(stat, ") ")
	if !ok {
		t.Fatalf("no command name in %q", stat)
	}
	f := strings.Fields(rest)
	if len(f) < 17 {
		t.Fatalf("short stat line %q", stat)
	}
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatalf("nice field %q: %v", f[16], err)
	}
	return n
}

// TestClientPinLowersPriority: the load generator's prefix really starts a
// program at the asked niceness (relative to the harness's own), after the
// pinning prefix, so that it yields the load CPU to the backends.
func TestClientPinLowersPriority(t *testing.T) {
	if _, err := exec.LookPath("nice"); err != nil {
		t.Skip("nice is not installed")
	}
	own, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	base := niceness(t, string(own))

	pin := []string{"env"} // stands for taskset: runs the rest as a command
	prefix, n, note := clientPin(pin, 5)
	if note != "" || n != 5 {
		t.Fatalf("clientPin(5) = niceness %d, note %q; want 5 and no note", n, note)
	}
	if prefix[0] != "env" {
		t.Errorf("prefix %q does not start with the pinning prefix", prefix)
	}
	if len(pin) != 1 {
		t.Errorf("clientPin changed the pinning prefix to %q", pin)
	}
	argv := append(slices.Clone(prefix), "cat", "/proc/self/stat")
	out, err := exec.CommandContext(context.Background(), argv[0], argv[1:]...).Output()
	if err != nil {
		t.Fatalf("%q: %v", argv, err)
	}
	if got, want := niceness(t, string(out)), min(base+5, 19); got != want {
		t.Errorf("the program ran at niceness %d, want %d", got, want)
	}

	if prefix, n, note := clientPin(pin, 0); n != 0 || note != "" || !slices.Equal(prefix, pin) {
		t.Errorf("clientPin(0) = %q, %d, %q; want the pinning prefix alone", prefix, n, note)
	}
}

// TestClientNiceChecked: a niceness the kernel does not have is refused
// before anything runs.
func TestClientNiceChecked(t *testing.T) {
	for _, n := range []int{-1, 20} {
		o := defaultOptions()
		o.scenarios, o.clientNice = "healthy_get", n
		if _, err := run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "-client-nice") {
			t.Errorf("-client-nice %d: err = %v, want one naming -client-nice", n, err)
		}
	}
}
