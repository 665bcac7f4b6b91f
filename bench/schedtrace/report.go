package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// us formats a duration in microseconds.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/1e3)
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
}

func header(w io.Writer, cells ...string) {
	row(w, cells...)
	sep := make([]string, len(cells))
	for i := range sep {
		sep[i] = "---"
		if i > 0 {
			sep[i] = "---:"
		}
	}
	row(w, sep...)
}

func distRow(w io.Writer, name string, d []time.Duration) {
	s := sorted(d)
	row(w, name, fmt.Sprint(len(s)), us(mean(s)), us(pct(s, 50)), us(pct(s, 90)), us(pct(s, 99)), us(pct(s, 99.9)), us(pct(s, 100)))
}

func distHeader(w io.Writer, first string) {
	header(w, first, "n", "mean µs", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs")
}

// Write prints the report as markdown.
func (r *Report) Write(w io.Writer) {
	span := r.Last.Sub(r.First)
	fmt.Fprintf(w, "trace: %d events over %v, %d goroutines seen\n\n", r.Events, span.Round(time.Millisecond), len(r.Goroutine))
	ps := make([]trace.ProcID, 0, len(r.ProcBusy))
	for p := range r.ProcBusy {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	for _, p := range ps {
		b := r.ProcBusy[p]
		fmt.Fprintf(w, "- P%d running for %.1f%% of the trace\n", p, 100*float64(b)/float64(max(span, 1)))
	}
	fmt.Fprintln(w)

	r.writeSched(w)
	r.writeBatches(w)
	r.writeRequests(w)
	r.writeOther(w, span)
}

func (r *Report) writeSched(w io.Writer) {
	fmt.Fprintf(w, "## 1. Scheduling latency (Runnable → Running), by what made the goroutine runnable\n\n")
	distHeader(w, "made runnable by")
	var unblocked, all []time.Duration
	for s := range nSources {
		if len(r.Waits[s]) == 0 {
			continue
		}
		distRow(w, sourceNames[s], r.Waits[s])
		all = append(all, r.Waits[s]...)
		if s <= srcGoroutine {
			unblocked = append(unblocked, r.Waits[s]...)
		}
	}
	distRow(w, "all unblocked (Waiting → Runnable)", unblocked)
	distRow(w, "all", all)
	fmt.Fprintln(w)
}

func (r *Report) writeBatches(w io.Writer) {
	fmt.Fprintf(w, "## 2. Netpoll batches\n\n")
	if len(r.Batches) == 0 {
		fmt.Fprintf(w, "no netpoll batches\n\n")
		return
	}
	var sizes []int
	noP, popped, multi := 0, 0, 0
	var gaps []time.Duration
	for _, b := range r.Batches {
		sizes = append(sizes, len(b.members))
		if b.NoProc {
			noP++
		}
		if b.Popped {
			popped++
		}
		if len(b.members) > 1 {
			multi++
		}
		if b.PrevPoll > 0 {
			gaps = append(gaps, b.Start.Sub(b.PrevPoll))
		}
	}
	slices.Sort(sizes)
	isz := func(p float64) int {
		i := int(float64(len(sizes))*p/100+0.999999) - 1
		return sizes[max(0, min(i, len(sizes)-1))]
	}
	sum := 0
	for _, s := range sizes {
		sum += s
	}
	fmt.Fprintf(w, "%d batches (%d on a thread without a P); %d of more than one goroutine; %d whose thread ran the last-unblocked goroutine next (findRunnable's list.pop).\n\n",
		len(r.Batches), noP, multi, popped)
	header(w, "batch size", "mean", "p50", "p90", "p99", "max")
	row(w, "goroutines", fmt.Sprintf("%.1f", float64(sum)/float64(len(sizes))), fmt.Sprint(isz(50)), fmt.Sprint(isz(90)), fmt.Sprint(isz(99)), fmt.Sprint(isz(100)))
	fmt.Fprintln(w)
	buckets := []int{1, 2, 4, 8, 16, 32, 64, 128}
	header(w, "size", "batches", "goroutines")
	for i, lo := range buckets {
		hi := 1 << 30
		if i+1 < len(buckets) {
			hi = buckets[i+1]
		}
		nb, ng := 0, 0
		for _, s := range sizes {
			if s >= lo && s < hi {
				nb++
				ng += s
			}
		}
		if nb == 0 {
			continue
		}
		name := fmt.Sprintf("%d–%d", lo, hi-1)
		if hi-1 == lo {
			name = fmt.Sprint(lo)
		} else if hi == 1<<30 {
			name = fmt.Sprintf("%d+", lo)
		}
		row(w, name, fmt.Sprint(nb), fmt.Sprint(ng))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Time from the previous batch to this one (how long readiness could go unnoticed):\n\n")
	distHeader(w, "")
	distRow(w, "poll gap", gaps)
	fmt.Fprintln(w)

	// Run order within batches of two or more whose members all ran.
	lifo, fifo, other := 0, 0, 0
	for _, b := range r.Batches {
		n := len(b.members)
		if n < 2 || b.nstarted < n {
			continue
		}
		isFIFO, isLIFO := true, b.members[n-1].rank == 0
		for k, m := range b.members {
			if m.rank != k {
				isFIFO = false
			}
			if k < n-1 && m.rank != k+1 {
				isLIFO = false
			}
		}
		switch {
		case isLIFO:
			lifo++
		case isFIFO:
			fifo++
		default:
			other++
		}
	}
	fmt.Fprintf(w, "Run order in batches of 2+ whose goroutines all ran (%d): last-unblocked first, then the others in unblock order: %d; all in unblock order: %d; other: %d.\n\n",
		lifo+fifo+other, lifo, fifo, other)

	// Does the inferred readiness order follow the order in which the
	// goroutines began to wait (a proxy for readiness: the peer answers
	// in the order it was asked)?
	var ua, up, ea, ep int
	pos := map[*member]int{}
	for _, b := range r.Batches {
		for k, m := range b.members {
			pos[m] = k
		}
		a, p := b.concordance(func(m *member) int { return pos[m] })
		ua, up = ua+a, up+p
		a, p = b.concordance(func(m *member) int { return m.epoll })
		ea, ep = ea+a, ep+p
	}
	fmt.Fprintf(w, "Pairs of goroutines in one batch ordered as they began to wait (for the upstream: when the request was written; for the client: when the response was written): unblock order %.1f%%, inferred readiness order %.1f%% (%d pairs).\n\n",
		100*float64(ua)/float64(max(up, 1)), 100*float64(ea)/float64(max(ep, 1)), up)

	maxPos := r.Opts.MaxPos
	type acc struct {
		wait  []time.Duration
		ranks int
	}
	byPos := make([]acc, maxPos+2) // 0..maxPos-1 single, maxPos grouped, maxPos+1 last
	epoll := make([]acc, maxPos+2)
	for _, b := range r.Batches {
		n := len(b.members)
		if n < 2 {
			continue
		}
		for k, m := range b.members {
			if !m.started {
				continue
			}
			i := min(k, maxPos)
			if k == n-1 {
				i = maxPos + 1
			}
			byPos[i].wait = append(byPos[i].wait, m.start.Sub(m.unblock))
			byPos[i].ranks += m.rank + 1
			if b.Popped {
				e := m.epoll
				j := min(e-1, maxPos)
				if e == n {
					j = maxPos + 1
				}
				epoll[j].wait = append(epoll[j].wait, m.start.Sub(b.Start))
				epoll[j].ranks += m.rank + 1
			}
		}
	}
	posName := func(i int, what string) string {
		switch {
		case i == maxPos+1:
			return "last " + what
		case i == maxPos:
			return fmt.Sprintf("%d+ (not last)", maxPos+1)
		}
		return fmt.Sprintf("%d", i+1)
	}
	fmt.Fprintf(w, "Wait from a goroutine's unblock to its start, by its position in the batch's unblock order (batches of 2+):\n\n")
	header(w, "unblock position", "n", "mean µs", "p99 µs", "mean run rank")
	for i, a := range byPos {
		if len(a.wait) == 0 {
			continue
		}
		s := sorted(a.wait)
		row(w, posName(i, "unblocked"), fmt.Sprint(len(s)), us(mean(s)), us(pct(s, 99)), fmt.Sprintf("%.1f", float64(a.ranks)/float64(len(s))))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "The same, by readiness order inferred from runtime/proc.go (popped batches only; epoll_wait's order, wait from the batch's first unblock):\n\n")
	header(w, "epoll position", "n", "mean µs", "p99 µs", "mean run rank")
	for i, a := range epoll {
		if len(a.wait) == 0 {
			continue
		}
		s := sorted(a.wait)
		row(w, posName(i, "readied"), fmt.Sprint(len(s)), us(mean(s)), us(pct(s, 99)), fmt.Sprintf("%.1f", float64(a.ranks)/float64(len(s))))
	}
	fmt.Fprintln(w)
}

func (r *Report) writeRequests(w io.Writer) {
	fmt.Fprintf(w, "## 3. Requests on connection goroutines\n\n")
	fmt.Fprintf(w, "%d connection goroutines, %d complete requests (%d cut by the trace's ends or an unexpected pattern, %d without an upstream wait).\n\n",
		r.ConnGs, len(r.Requests), r.Partial, r.NoUp)
	if len(r.Requests) == 0 {
		return
	}
	phases := []struct {
		name string
		f    func(*Request) time.Duration
	}{
		{"t5−t0", (*Request).Total},
		{"t1−t0 wait (client)", func(q *Request) time.Duration { return q.d(0, 1) }},
		{"t2−t1 run", func(q *Request) time.Duration { return q.d(1, 2) }},
		{"t3−t2 upstream", func(q *Request) time.Duration { return q.d(2, 3) }},
		{"t4−t3 wait (upstream)", func(q *Request) time.Duration { return q.d(3, 4) }},
		{"t5−t4 run", func(q *Request) time.Duration { return q.d(4, 5) }},
		{"other waits", func(q *Request) time.Duration { return q.OtherWait }},
		{"other blocks", func(q *Request) time.Duration { return q.OtherBlock }},
		{"unseen≤ before t0", func(q *Request) time.Duration { return q.Unseen0 }},
		{"unseen≤ before t3", func(q *Request) time.Duration { return q.Unseen3 }},
	}
	fmt.Fprintf(w, "Each phase's own distribution:\n\n")
	distHeader(w, "phase")
	for _, p := range phases {
		d := make([]time.Duration, len(r.Requests))
		for i, q := range r.Requests {
			d[i] = p.f(q)
		}
		distRow(w, p.name, d)
	}
	fmt.Fprintln(w)

	names := []string{"group", "n"}
	for _, p := range phases {
		names = append(names, p.name+" µs")
	}
	names = append(names, "t0 batch size", "t0 position")
	fmt.Fprintf(w, "Mean phases of request groups (µs; \"unseen≤\" bounds the time the socket may have been readable before the runtime noticed it: since the later of the block and the previous netpoll batch):\n\n")
	header(w, names...)
	group := func(name string, rs []*Request) {
		if len(rs) == 0 {
			return
		}
		cells := []string{name, fmt.Sprint(len(rs))}
		for _, p := range phases {
			var s time.Duration
			for _, q := range rs {
				s += p.f(q)
			}
			cells = append(cells, us(s/time.Duration(len(rs))))
		}
		var n, pos float64
		for _, q := range rs {
			n += float64(q.N0)
			pos += float64(q.Pos0)
		}
		cells = append(cells, fmt.Sprintf("%.1f", n/float64(len(rs))), fmt.Sprintf("%.1f", pos/float64(len(rs))))
		row(w, cells...)
	}
	band := func(rs []*Request, lo, hi float64) []*Request {
		n := len(rs)
		i, j := int(float64(n)*lo/100), int(float64(n)*hi/100+0.999999)
		i, j = min(i, n-1), max(min(j, n), i+1)
		return rs[i:j]
	}
	byTotal := sortRequests(r.Requests, (*Request).Total)
	byWaits := sortRequests(r.Requests, (*Request).Waits)
	group("all", r.Requests)
	group("median by t5−t0 (p49.5–p50.5)", band(byTotal, 49.5, 50.5))
	group("slowest 1% by t5−t0", band(byTotal, 99, 100))
	group("slowest 0.1% by t5−t0", band(byTotal, 99.9, 100))
	group("median by waits (p49.5–p50.5)", band(byWaits, 49.5, 50.5))
	group("slowest 1% by waits", band(byWaits, 99, 100))
	fmt.Fprintln(w)

	// The same run slots in readiness order.
	var cw, cwF, uw, uwF, l, lF []time.Duration
	for _, q := range r.Requests {
		m0, m3 := q.m0, q.m3
		if m0 == nil || m3 == nil || m0.fifo == 0 || m3.fifo == 0 || m0.blocked == 0 {
			continue
		}
		cw, cwF = append(cw, m0.start.Sub(m0.blocked)), append(cwF, m0.fifo.Sub(m0.blocked))
		uw, uwF = append(uw, m3.start.Sub(m3.blocked)), append(uwF, m3.fifo.Sub(m3.blocked))
		d := q.T[5].Sub(m0.blocked)
		l = append(l, d)
		lF = append(lF, d+m0.fifo.Sub(m0.start)+m3.fifo.Sub(m3.start))
	}
	fmt.Fprintf(w, "Counterfactual: each batch's run slots (its goroutines' actual starts) handed out in the inferred readiness order instead, first readied first (first-order estimate: the runs that follow are not moved). Times from the start of the wait (the block), so they include the peer's time:\n\n")
	distHeader(w, "from the block to the start")
	distRow(w, "client wait → t1, as run", cw)
	distRow(w, "client wait → t1, readiness order", cwF)
	distRow(w, "upstream wait (t2) → t4, as run", uw)
	distRow(w, "upstream wait (t2) → t4, readiness order", uwF)
	distRow(w, "previous response written → t5, as run", l)
	distRow(w, "previous response written → t5, readiness order", lF)
	fmt.Fprintln(w)

	// Where does t1−t0 come from: the request's position in its batch.
	fmt.Fprintf(w, "t1−t0 by the size of the batch that readied the client socket:\n\n")
	distHeader(w, "t0 batch size")
	buckets := []int{1, 2, 4, 8, 16, 32, 64}
	for i, lo := range buckets {
		hi := 1 << 30
		if i+1 < len(buckets) {
			hi = buckets[i+1]
		}
		var d []time.Duration
		for _, q := range r.Requests {
			if q.N0 >= lo && q.N0 < hi {
				d = append(d, q.d(0, 1))
			}
		}
		if len(d) > 0 {
			name := fmt.Sprintf("%d–%d", lo, hi-1)
			if hi == 1<<30 {
				name = fmt.Sprintf("%d+", lo)
			} else if hi-1 == lo {
				name = fmt.Sprint(lo)
			}
			distRow(w, name, d)
		}
	}
	var d []time.Duration
	for _, q := range r.Requests {
		if q.N0 == 0 {
			d = append(d, q.d(0, 1))
		}
	}
	if len(d) > 0 {
		distRow(w, "not from a netpoll batch", d)
	}
	fmt.Fprintln(w)
}

func (r *Report) writeOther(w io.Writer, span time.Duration) {
	fmt.Fprintf(w, "## 4. Other activity\n\n")
	fmt.Fprintf(w, "- GC cycles: %d\n", r.GCs)
	names := make([]string, 0, len(r.Ranges))
	for n := range r.Ranges {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "- range %q: %d, %v in all\n", n, r.Ranges[n], r.RangeTime[n])
	}
	fmt.Fprintf(w, "- stops (Running → Runnable): %s\n", counts(r.StopReasons))
	fmt.Fprintf(w, "- blocks (Running → Waiting): %s\n", counts(r.BlockReasons))
	s := sorted(r.Syscalls)
	fmt.Fprintf(w, "- syscalls seen by the trace: %d (p50 %sµs, p99 %sµs, max %sµs); %d lost their P (returned Runnable); P steals: %d\n",
		len(s), us(pct(s, 50)), us(pct(s, 99)), us(pct(s, 100)), r.SyscallsLost, r.ProcSteals)
	fmt.Fprintln(w)

	type gsum struct {
		name string
		n    int
		run  time.Duration
		sys  time.Duration
	}
	by := map[string]*gsum{}
	var connRun, total time.Duration
	for _, g := range r.Goroutine {
		if g.run == 0 && g.sys == 0 {
			continue
		}
		name := g.name
		if name == "" {
			name = "(unknown)"
		}
		if g.conn {
			name = "connection goroutines (" + name + ")"
			connRun += g.run
		}
		total += g.run
		e := by[name]
		if e == nil {
			e = &gsum{name: name}
			by[name] = e
		}
		e.n++
		e.run += g.run
		e.sys += g.sys
	}
	list := make([]*gsum, 0, len(by))
	for _, e := range by {
		list = append(list, e)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].run > list[j].run })
	fmt.Fprintf(w, "Goroutine run time (Running) and syscall time by goroutine function (its outermost frame); %.1f%% of the run time is connection goroutines':\n\n",
		100*float64(connRun)/float64(max(total, 1)))
	header(w, "goroutine function", "goroutines", "run ms", "run % of trace", "syscall ms")
	for i, e := range list {
		if i == 12 {
			break
		}
		row(w, e.name, fmt.Sprint(e.n), fmt.Sprintf("%.2f", float64(e.run)/1e6), fmt.Sprintf("%.2f", 100*float64(e.run)/float64(max(span, 1))), fmt.Sprintf("%.2f", float64(e.sys)/1e6))
	}
	fmt.Fprintln(w)
}

func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	parts := make([]string, len(keys))
	for i, k := range keys {
		name := k
		if name == "" {
			name = "(no reason)"
		}
		parts[i] = fmt.Sprintf("%s %d", name, m[k])
	}
	return strings.Join(parts, ", ")
}
