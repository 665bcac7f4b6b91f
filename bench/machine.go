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
