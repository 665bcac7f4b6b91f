package main

// Reading a proxy's resource use from /proc: CPU time from /proc/<pid>/stat,
// peak resident memory from /proc/<pid>/status, and the process tree (nginx
// serves from a worker forked by its master).

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports (getconf CLK_TCK); Go
// cannot call sysconf without cgo.
const clockTicks = 100

// statFields returns the fields of /proc/<pid>/stat after the command name,
// so that index 0 is field 3 (state) of proc(5). The name is skipped by its
// last closing parenthesis because it may itself contain spaces or parens.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return nil, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	return strings.Fields(string(b[i+2:])), nil
}

// cpuTicks returns the user plus system CPU time of pid (all its threads) in
// clock ticks: fields 14 (utime) and 15 (stime) of /proc/<pid>/stat.
func cpuTicks(pid int) (int64, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return utime + stime, nil
}

// totalCPUSeconds sums the CPU time of pids, in seconds.
func totalCPUSeconds(pids []int) (float64, error) {
	var ticks int64
	for _, pid := range pids {
		t, err := cpuTicks(pid)
		if err != nil {
			return 0, err
		}
		ticks += t
	}
	return float64(ticks) / clockTicks, nil
}

// peakRSSKiB returns VmHWM, the peak resident set size of pid, in KiB.
func peakRSSKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest) // "1234 kB"
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmHWM", pid)
}

// maxPeakRSSKiB returns the largest VmHWM among pids and the pid that has
// it. For nginx that is the worker: the master's pages are mostly shared
// with it, so a sum would count them twice.
func maxPeakRSSKiB(pids []int) (kib int64, pid int, err error) {
	for _, p := range pids {
		v, err := peakRSSKiB(p)
		if err != nil {
			return 0, 0, err
		}
		if v > kib {
			kib, pid = v, p
		}
	}
	return kib, pid, nil
}

// processTree returns pid followed by all its descendants, found by
// scanning the parent pid (field 4) of every process in /proc.
func processTree(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{pid}
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil || len(f) < 2 {
			continue // the process exited meanwhile
		}
		if pp, err := strconv.Atoi(f[1]); err == nil {
			parent[p] = pp
		}
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		for p, pp := range parent {
			if pp == tree[i] {
				tree = append(tree, p)
			}
		}
	}
	return tree
}

// cpuJiffies is one CPU's line of /proc/stat, in clock ticks: busy is all
// but idle and iowait; tasks is the time spent in processes (user, nice,
// system); steal is time the hypervisor gave to other machines.
type cpuJiffies struct{ busy, tasks, steal, total int64 }

// readCPUJiffies returns the cpuN lines of /proc/stat, keyed by N.
func readCPUJiffies() (map[int]cpuJiffies, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	out := map[int]cpuJiffies{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var v [8]int64 // user nice system idle iowait irq softirq steal
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		j := cpuJiffies{tasks: v[0] + v[1] + v[2], steal: v[7]}
		j.busy = j.tasks + v[5] + v[6] + j.steal
		j.total = j.busy + v[3] + v[4]
		out[n] = j
	}
	return out, nil
}

// cpuUse is how one CPU was used between two readings, as fractions of its
// time: busy is everything but idle; other is what processes other than
// the known ones took, plus hypervisor steal (other work on the machine,
// which disturbs the measurement).
type cpuUse struct{ busy, other float64 }

// cpuUsage returns the use of CPU n between before and after, given the CPU
// seconds that the known processes pinned to it used meanwhile. It returns
// false when n is not known (the CPUs are not pinned).
func cpuUsage(before, after map[int]cpuJiffies, n int, knownSeconds float64) (cpuUse, bool) {
	a, ok1 := before[n]
	b, ok2 := after[n]
	if !ok1 || !ok2 || b.total <= a.total {
		return cpuUse{}, false
	}
	total := float64(b.total - a.total)
	other := float64(b.tasks-a.tasks+b.steal-a.steal) - knownSeconds*clockTicks
	return cpuUse{busy: float64(b.busy-a.busy) / total, other: max(0, other/total)}, true
}
