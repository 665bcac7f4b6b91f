// Command summarize prints the markdown tables of a schedrepro run: per mode
// the medians over repetitions, and the medians of the per-repetition ratios
// to epoll-fifo. With -maxother S it leaves out every run in which the two
// CPUs spent more than S seconds on anything but the server and wrk (other
// processes on the shared machine; the kernel's softirq work alone is about
// 0.5 s per 8 s run), and the pairs such a run belongs to.
//
//	go run ./bench/schedrepro/summarize [-maxother 0.4] /tmp/schedrepro-results
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

var modes = []string{"goroutine", "epoll-fifo", "epoll-lifo", "goroutine-dispatch"}

// metric names, in table order; lat are latencies in µs.
var metrics = []string{"req/s", "p50", "p90", "p99", "max", "CPU µs/req"}

type key struct {
	conns string
	mode  string
}

func main() {
	maxOther := flag.Float64("maxother", 0, "leave out runs in which the CPUs gave more than this many seconds to anything but the server and wrk (0: keep all)")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: summarize [-maxother S] DIR (the folder run.sh wrote)")
	}
	f, err := os.Open(filepath.Join(flag.Arg(0), "runs.tsv"))
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	runs := map[key]map[string][]float64{} // metric -> its value in every rep
	reps := map[key]map[int]map[string]float64{}
	var connsSeen []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Split(sc.Text(), "\t")
		if len(fl) < 5 {
			continue
		}
		mode, conns, file := fl[0], fl[1], fl[4]
		rep, _ := strconv.Atoi(fl[2])
		cpu, _ := strconv.ParseFloat(fl[3], 64)
		m, err := parseWrk(file)
		if err != nil {
			log.Printf("%s: %v", file, err)
			continue
		}
		m["CPU µs/req"] = cpu / m["requests"] * 1e6
		if len(fl) > 5 {
			m["cpu0 other"], _ = strconv.ParseFloat(fl[5], 64)
		}
		if *maxOther > 0 && m["cpu0 other"] > *maxOther {
			continue
		}
		k := key{conns, mode}
		if reps[k] == nil {
			reps[k] = map[int]map[string]float64{}
			runs[k] = map[string][]float64{}
		}
		if !slices.Contains(connsSeen, conns) {
			connsSeen = append(connsSeen, conns)
		}
		reps[k][rep] = m
		for _, name := range metrics {
			runs[k][name] = append(runs[k][name], m[name])
		}
	}
	for _, conns := range connsSeen {
		fmt.Printf("### -c%s: medians over repetitions\n\n", conns)
		fmt.Printf("| mode | reps | req/s | p50 ms | p90 ms | p99 ms | max ms | CPU µs/req |\n|---|---|---|---|---|---|---|---|\n")
		for _, mode := range modes {
			r := runs[key{conns, mode}]
			if r == nil {
				continue
			}
			fmt.Printf("| %s | %d | %.0f | %.2f | %.2f | %.2f | %.1f | %.1f |\n", mode, len(r["req/s"]),
				median(r["req/s"]), median(r["p50"])/1e3, median(r["p90"])/1e3, median(r["p99"])/1e3, median(r["max"])/1e3, median(r["CPU µs/req"]))
		}
		fmt.Printf("\n### -c%s: paired ratios to epoll-fifo (median of per-repetition ratios)\n\n", conns)
		fmt.Printf("| mode | pairs | req/s | p50 | p90 | p99 | max | CPU/req |\n|---|---|---|---|---|---|---|---|\n")
		base := reps[key{conns, "epoll-fifo"}]
		for _, mode := range modes {
			if mode == "epoll-fifo" || reps[key{conns, mode}] == nil {
				continue
			}
			ratios := map[string][]float64{}
			for rep, m := range reps[key{conns, mode}] {
				b, ok := base[rep]
				if !ok {
					continue
				}
				for _, name := range metrics {
					ratios[name] = append(ratios[name], m[name]/b[name])
				}
			}
			fmt.Printf("| %s | %d |", mode, len(ratios["req/s"]))
			for _, name := range metrics {
				fmt.Printf(" %.2f |", median(ratios[name]))
			}
			fmt.Println()
		}
		fmt.Printf("\n### -c%s: every run (req/s, p50/p99 ms, other CPU s: busy time of both CPUs used by neither the server nor wrk)\n\n| rep |", conns)
		for _, mode := range modes {
			fmt.Printf(" %s |", mode)
		}
		fmt.Print("\n|---|" + strings.Repeat("---|", len(modes)) + "\n")
		var repNums []int
		for _, mode := range modes {
			for rep := range reps[key{conns, mode}] {
				if !slices.Contains(repNums, rep) {
					repNums = append(repNums, rep)
				}
			}
		}
		sort.Ints(repNums)
		for _, rep := range repNums {
			fmt.Printf("| %d |", rep)
			for _, mode := range modes {
				if m, ok := reps[key{conns, mode}][rep]; ok {
					fmt.Printf(" %.0f, %.2f/%.2f, %.1f |", m["req/s"], m["p50"]/1e3, m["p99"]/1e3, m["cpu0 other"])
				} else {
					fmt.Printf(" |")
				}
			}
			fmt.Println()
		}
		fmt.Println()
	}
}

// parseWrk reads req/s, the request count and the latencies (in µs) of a
// wrk --latency output.
func parseWrk(file string) (map[string]float64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			m["req/s"], _ = strconv.ParseFloat(f[1], 64)
		case len(f) >= 4 && f[0] == "Latency":
			m["max"] = micros(f[3])
		case len(f) == 2 && (f[0] == "50%" || f[0] == "90%" || f[0] == "99%"):
			m["p"+strings.TrimSuffix(f[0], "%")] = micros(f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			m["requests"], _ = strconv.ParseFloat(f[0], 64)
		}
	}
	for _, name := range []string{"req/s", "requests", "p50", "p90", "p99", "max"} {
		if m[name] == 0 {
			return nil, fmt.Errorf("no %s in the wrk output", name)
		}
	}
	return m, nil
}

// micros converts a wrk duration such as 812.00us, 2.31ms or 1.02s to µs.
func micros(s string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1}, {"ms", 1e3}, {"m", 60e6}, {"s", 1e6}} {
		if strings.HasSuffix(s, u.suffix) {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(s, u.suffix), 64)
			return v * u.scale
		}
	}
	return 0
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
