package main

// The machine: CPUs to pin to, the open-file limit, free ports, and where
// the module is.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// freePort returns a loopback TCP port that was free a moment ago: it
// listens on port 0, notes the port the kernel chose and closes it.
func freePort() (int, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// pinning returns the taskset prefixes that pin the proxy to the first CPU
// this process may use and wrk and the backends to the second, and those
// CPUs' numbers. With fewer than two CPUs or no taskset it returns nil
// prefixes, CPUs -1 and a note saying why.
func pinning() (proxyPin, loadPin []string, proxyCPU, loadCPU int, note string) {
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, nil, -1, -1, "cannot read the allowed CPUs (" + err.Error() + "): not pinning"
	}
	if len(cpus) < 2 {
		return nil, nil, -1, -1, "fewer than two CPUs: not pinning"
	}
	ts, err := exec.LookPath("taskset")
	if err != nil {
		return nil, nil, -1, -1, "taskset is not installed: not pinning"
	}
	return []string{ts, "-c", strconv.Itoa(cpus[0])}, []string{ts, "-c", strconv.Itoa(cpus[1])}, cpus[0], cpus[1], ""
}

// clientPin returns the prefix that starts wrk and h2load: pin (the load
// CPU's taskset prefix, or nil) and nice at niceness, and the niceness it
// gives them. They share the load CPU with the backends, and at equal
// niceness the scheduler lets the load generator run while requests wait
// at a backend it has preempted, a millisecond or more: latency that is
// the harness's own, which the backends of a real deployment, on machines
// of their own, do not have. It hides what sets the proxies apart (how
// ewma sees a slow backend among fast ones) and costs every proxy
// throughput. A lower priority lets the backends answer as soon as a
// request reaches them; lowering a priority needs no privilege. Without
// nice it returns pin, 0 and a note saying so.
func clientPin(pin []string, niceness int) ([]string, int, string) {
	if niceness == 0 {
		return pin, 0, ""
	}
	bin, err := exec.LookPath("nice")
	if err != nil {
		return pin, 0, "nice is not installed: wrk and h2load run at the backends' priority"
	}
	return append(slices.Clip(pin), bin, "-n", strconv.Itoa(niceness)), niceness, ""
}

// allowedCPUs returns the CPUs this process may run on, from the
// Cpus_allowed_list line of /proc/self/status ("0-3,8,10-11").
func allowedCPUs() ([]int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		list, ok := strings.CutPrefix(line, "Cpus_allowed_list:")
		if !ok {
			continue
		}
		var cpus []int
		for _, r := range splitList(list) {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("bad Cpus_allowed_list %q", list)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("bad Cpus_allowed_list %q", list)
				}
			}
			for c := a; c <= b; c++ {
				cpus = append(cpus, c)
			}
		}
		return cpus, nil
	}
	return nil, errors.New("no Cpus_allowed_list in /proc/self/status")
}

// raiseFileLimit raises the soft limit on open files to the hard limit, for
// 1,000 client connections plus the proxies' upstream ones. Child processes
// inherit it: an explicit Setrlimit stops Go from restoring the original
// limit in children.
func raiseFileLimit() {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	rl.Cur = rl.Max
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

// moduleRoot returns the directory of the go.mod of the current module.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the sluice module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}
