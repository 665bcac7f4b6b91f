package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// Options selects how connection goroutines are recognised: a goroutine
// that blocks on the network with a frame matching Client in its stack
// waits for its client; one matching Upstream (checked first, since the
// upstream wait is called from the client's handler) waits for its
// upstream.
type Options struct {
	Client   *regexp.Regexp
	Upstream *regexp.Regexp
	MaxPos   int // batch positions reported one by one (the rest are grouped)
}

// Defaults are sluice's: the client wait is in internal/h1, the upstream
// wait in internal/upstream.
func Defaults() Options {
	return Options{
		Client:   regexp.MustCompile(`/internal/h1\.`),
		Upstream: regexp.MustCompile(`/internal/upstream\.`),
		MaxPos:   12,
	}
}

// source is what made a goroutine runnable.
type source int

const (
	srcNetpollP   source = iota // unblocked after a network block, no goroutine running, on a thread with a P (findRunnable)
	srcNetpollNoP               // the same on a thread without a P (sysmon, or a poller that found no idle P)
	srcNetpollG                 // the same on a runtime goroutine (the GC worker's pollWork)
	srcRuntime                  // unblocked with no goroutine running after another kind of block (timers, ...)
	srcGoroutine                // unblocked by another goroutine (channel, mutex, ...)
	srcPreempted                // Running -> Runnable (preempted, Gosched)
	srcSyscall                  // Syscall -> Runnable (the P was taken during the syscall)
	srcCreated                  // NotExist -> Runnable
	nSources
)

var sourceNames = [nSources]string{
	"netpoll, thread with P",
	"netpoll, thread without P (sysmon)",
	"netpoll, on a runtime goroutine (GC worker)",
	"runtime, other wait (timer, ...)",
	"another goroutine",
	"preempted / yielded",
	"syscall returned without P",
	"created",
}

// block classes of a goroutine's last block.
const (
	blkNone = iota
	blkClient
	blkUpstream
	blkNetOther
	blkOther
)

// request phases of a connection goroutine.
const (
	phNone          = iota
	phWaitClient    // blocked on the client socket
	phReadyClient   // t0 seen
	phRunClient     // t1 seen
	phWaitUpstream  // t2 seen
	phReadyUpstream // t3 seen
	phRunUpstream   // t4 seen
)

// Request is one request on a connection goroutine, t0..t5 as in the
// package comment.
type Request struct {
	T          [6]trace.Time
	OtherWait  time.Duration // runnable time other than t0→t1 and t3→t4 (after preemption, syscalls, other blocks)
	OtherBlock time.Duration // blocked on anything but the two sockets
	Unseen0    time.Duration // bound on the client readiness unseen before t0: t0 − max(previous poll, block)
	Unseen3    time.Duration // the same for t3
	Pos0, N0   int           // t0's batch position and batch size (0 if not from a netpoll batch)
	Netpoll0   bool          // t0 came from the netpoller
	batch      *Batch
	m0, m3     *member // t0's and t3's places in their batches
}

func (r *Request) d(i, j int) time.Duration { return r.T[j].Sub(r.T[i]) }

// Total is t5 − t0.
func (r *Request) Total() time.Duration { return r.d(0, 5) }

// Waits is (t1 − t0) + (t4 − t3) + OtherWait.
func (r *Request) Waits() time.Duration { return r.d(0, 1) + r.d(3, 4) + r.OtherWait }

type member struct {
	b       *Batch
	g       trace.GoID
	blocked trace.Time // when it began the wait this batch ended (0 if unknown)
	unblock trace.Time
	start   trace.Time
	started bool
	rank    int        // order among the batch's members in which it ran (0 first)
	epoll   int        // readiness index inferred from the unblock order (1 first)
	fifo    trace.Time // its start had the batch run in readiness order (0 if unknown)
}

// Batch is the goroutines one netpoll made runnable: consecutive
// netpoll unblocks on one thread.
type Batch struct {
	Thread   trace.ThreadID
	NoProc   bool
	Start    trace.Time
	PrevPoll trace.Time // start of the batch before it (any thread), 0 if none
	Popped   bool       // the thread ran the last-unblocked member next (findRunnable's list.pop)
	members  []*member
	nstarted int
}

type gstate struct {
	name        string
	state       trace.GoState
	known       bool // state entered at a known time
	since       trace.Time
	src         source
	batch       *Batch  // the netpoll batch of its current Runnable state
	mem         *member // its place in it
	blockReason string
	blockClass  int
	conn        bool
	run         time.Duration // time Running
	sys         time.Duration // time in syscalls
	syscallAt   trace.Time

	ph           int
	req          *Request
	otherBlockAt trace.Time // >0 while blocked on something else inside a request
	otherReadyAt trace.Time // >0 while runnable after something else
}

// batchGap is the longest pause between two unblocks of one batch: the
// runtime emits them in a loop (injectglist), well under a microsecond
// apart.
const batchGap = 20 * time.Microsecond

// Report is the analysis of one trace.
type Report struct {
	Opts        Options
	Events      int
	First, Last trace.Time

	Waits     [nSources][]time.Duration // Runnable→Running by source
	Batches   []*Batch
	Requests  []*Request
	Partial   int // requests cut by the trace's ends or by other patterns
	NoUp      int // client→client cycles without an upstream wait
	ConnGs    int
	Goroutine map[trace.GoID]*gstate

	BlockReasons map[string]int
	StopReasons  map[string]int
	Ranges       map[string]int
	RangeTime    map[string]time.Duration
	Syscalls     []time.Duration
	SyscallsLost int // syscalls that lost their P (Syscall→Runnable)
	ProcBusy     map[trace.ProcID]time.Duration
	ProcSteals   int
	GCs          int
}

type analyzer struct {
	opts       Options
	rep        *Report
	gs         map[trace.GoID]*gstate
	open       map[trace.ThreadID]*Batch // batch being filled on a thread
	lastPoll   trace.Time
	classes    map[trace.Stack]int
	names      map[trace.Stack]string
	procStart  map[trace.ProcID]trace.Time
	rangeStart map[string]trace.Time
	rangeName  map[string]string
	running    map[trace.GoID]*member // batch members not yet running
}

// Analyze reads a Go 1.22+ execution trace.
func Analyze(r io.Reader, opts Options) (*Report, error) {
	if opts.MaxPos <= 0 {
		opts.MaxPos = 12
	}
	tr, err := trace.NewReader(r)
	if err != nil {
		return nil, err
	}
	a := &analyzer{
		opts: opts,
		rep: &Report{
			Opts:         opts,
			BlockReasons: map[string]int{},
			StopReasons:  map[string]int{},
			Ranges:       map[string]int{},
			RangeTime:    map[string]time.Duration{},
			ProcBusy:     map[trace.ProcID]time.Duration{},
		},
		gs:         map[trace.GoID]*gstate{},
		open:       map[trace.ThreadID]*Batch{},
		classes:    map[trace.Stack]int{},
		names:      map[trace.Stack]string{},
		procStart:  map[trace.ProcID]trace.Time{},
		rangeStart: map[string]trace.Time{},
		rangeName:  map[string]string{},
		running:    map[trace.GoID]*member{},
	}
	for {
		ev, err := tr.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", a.rep.Events, err)
		}
		a.event(&ev)
	}
	a.finish()
	return a.rep, nil
}

func (a *analyzer) g(id trace.GoID) *gstate {
	s := a.gs[id]
	if s == nil {
		s = &gstate{}
		a.gs[id] = s
	}
	return s
}

// pollerContext reports whether an unblock happened where the runtime
// polls the network: with no goroutine running (the scheduler, sysmon),
// or on a runtime goroutine (the GC worker's pollWork).
func (a *analyzer) pollerContext(ev *trace.Event) bool {
	g := ev.Goroutine()
	if g == trace.NoGoroutine {
		return true
	}
	s := a.gs[g]
	return s != nil && strings.HasPrefix(s.name, "runtime.")
}

// classify sorts a network block by its stack.
func (a *analyzer) classify(st trace.Stack) int {
	if c, ok := a.classes[st]; ok {
		return c
	}
	c := blkNetOther
	for f := range st.Frames() {
		if a.opts.Upstream != nil && a.opts.Upstream.MatchString(f.Func) {
			c = blkUpstream
			break
		}
		if a.opts.Client != nil && a.opts.Client.MatchString(f.Func) {
			c = blkClient // an upstream frame further out wins
		}
	}
	a.classes[st] = c
	return c
}

// entry is the outermost frame of a stack: the goroutine's function.
func (a *analyzer) entry(st trace.Stack) string {
	if st == trace.NoStack {
		return ""
	}
	if n, ok := a.names[st]; ok {
		return n
	}
	n := ""
	for f := range st.Frames() {
		n = f.Func
	}
	a.names[st] = n
	return n
}

func (a *analyzer) event(ev *trace.Event) {
	rep := a.rep
	rep.Events++
	t := ev.Time()
	if rep.First == 0 {
		rep.First = t
	}
	rep.Last = t

	// The thread's batch ends at its first event that is not a netpoll
	// unblock (which tells whether the last member was popped to run at
	// once), or at a pause between unblocks: a thread without a P
	// (sysmon) has no other events between its polls.
	th := ev.Thread()
	isNetUnblock := false
	if ev.Kind() == trace.EventStateTransition {
		st := ev.StateTransition()
		if st.Resource.Kind == trace.ResourceGoroutine {
			from, to := st.Goroutine()
			if from == trace.GoWaiting && to == trace.GoRunnable && a.pollerContext(ev) {
				if s := a.gs[st.Resource.Goroutine()]; s != nil && (s.blockReason == "network" || s.blockClass == blkClient || s.blockClass == blkUpstream) {
					isNetUnblock = true
				}
			}
		}
	}
	if b := a.open[th]; b != nil && (!isNetUnblock || t.Sub(b.members[len(b.members)-1].unblock) > batchGap) {
		delete(a.open, th)
		if ev.Kind() == trace.EventStateTransition {
			st := ev.StateTransition()
			if st.Resource.Kind == trace.ResourceGoroutine {
				if from, to := st.Goroutine(); from == trace.GoRunnable && to == trace.GoRunning &&
					st.Resource.Goroutine() == b.members[len(b.members)-1].g {
					b.Popped = true
				}
			}
		}
	}

	switch ev.Kind() {
	case trace.EventSync:
		clear(a.classes)
		clear(a.names)
	case trace.EventRangeBegin, trace.EventRangeActive:
		n := ev.Range().Name
		if ev.Kind() == trace.EventRangeActive {
			n += " (under way at the trace's start)"
		}
		rep.Ranges[n]++
		k := ev.Range().Name + "/" + ev.Range().Scope.String()
		a.rangeStart[k], a.rangeName[k] = t, n
	case trace.EventRangeEnd:
		k := ev.Range().Name + "/" + ev.Range().Scope.String()
		if t0, ok := a.rangeStart[k]; ok {
			rep.RangeTime[a.rangeName[k]] += t.Sub(t0)
			delete(a.rangeStart, k)
		}
	case trace.EventStateTransition:
		st := ev.StateTransition()
		switch st.Resource.Kind {
		case trace.ResourceProc:
			a.proc(ev, st)
		case trace.ResourceGoroutine:
			a.goroutine(ev, st, isNetUnblock)
		}
	}
}

func (a *analyzer) proc(ev *trace.Event, st trace.StateTransition) {
	id := st.Resource.Proc()
	from, to := st.Proc()
	t := ev.Time()
	if ev.Kind() == trace.EventStateTransition && from == trace.ProcRunning && to == trace.ProcIdle && ev.Proc() != id {
		a.rep.ProcSteals++
	}
	switch {
	case to == trace.ProcRunning && from != trace.ProcRunning:
		a.procStart[id] = t
	case from == trace.ProcRunning && to != trace.ProcRunning:
		if t0, ok := a.procStart[id]; ok {
			a.rep.ProcBusy[id] += t.Sub(t0)
			delete(a.procStart, id)
		}
	}
}

func (a *analyzer) goroutine(ev *trace.Event, st trace.StateTransition, netUnblock bool) {
	id := st.Resource.Goroutine()
	from, to := st.Goroutine()
	t := ev.Time()
	s := a.g(id)
	if n := a.entry(st.Stack); n != "" {
		s.name = n
	}
	if from == to {
		return // a status report of a known state
	}
	if from == trace.GoUndetermined {
		// First sight (trace start or a new generation): no times yet.
		s.state, s.since = to, t
		s.known = to.Executing() // its run time counts from here
		if to == trace.GoWaiting && a.netStack(st.Stack) {
			s.blockReason = "network"
			s.blockClass = a.classify(st.Stack)
		}
		s.ph, s.req = phNone, nil
		return
	}
	prevSince, prevKnown := s.since, s.known
	// Leaving an executing state: its time counts as run time.
	if from == trace.GoRunning && prevKnown {
		s.run += t.Sub(prevSince)
	}
	if from == trace.GoSyscall && prevKnown {
		s.sys += t.Sub(prevSince)
	}
	if from == trace.GoSyscall {
		if prevKnown {
			a.rep.Syscalls = append(a.rep.Syscalls, t.Sub(s.syscallAt))
		}
		if to == trace.GoRunnable {
			a.rep.SyscallsLost++
		}
	}
	s.state, s.since, s.known = to, t, true
	s.batch, s.mem = nil, nil

	switch to {
	case trace.GoRunnable:
		src := srcCreated
		switch from {
		case trace.GoWaiting:
			switch {
			case netUnblock && ev.Proc() == trace.NoProc:
				src = srcNetpollNoP
			case netUnblock && ev.Goroutine() != trace.NoGoroutine:
				src = srcNetpollG
			case netUnblock:
				src = srcNetpollP
			case ev.Goroutine() == trace.NoGoroutine:
				src = srcRuntime
			default:
				src = srcGoroutine
			}
		case trace.GoRunning:
			src = srcPreempted
			a.rep.StopReasons[st.Reason]++
		case trace.GoSyscall:
			src = srcSyscall
		}
		s.src = src
		if netUnblock {
			blocked := trace.Time(0)
			if prevKnown {
				blocked = prevSince
			}
			a.addToBatch(ev, id, s, blocked)
		}
		a.reqRunnable(s, from, t, prevSince, prevKnown)
	case trace.GoRunning:
		if from == trace.GoRunnable && prevKnown {
			a.rep.Waits[s.src] = append(a.rep.Waits[s.src], t.Sub(prevSince))
			if m := a.running[id]; m != nil {
				m.start, m.started = t, true
				m.rank = m.b.nstarted
				m.b.nstarted++
				delete(a.running, id)
			}
		}
		a.reqRunning(s, t)
	case trace.GoWaiting:
		a.rep.BlockReasons[st.Reason]++
		s.blockReason = st.Reason
		s.blockClass = blkOther
		if st.Reason == "network" {
			s.blockClass = a.classify(st.Stack)
		}
		a.reqBlock(s, t)
	case trace.GoSyscall:
		s.syscallAt = t
	case trace.GoNotExist:
		if s.req != nil && s.ph != phWaitClient {
			a.rep.Partial++
		}
		s.req, s.ph = nil, phNone
	}
}

// netStack reports whether a waiting goroutine's stack is a wait on the
// network poller.
func (a *analyzer) netStack(st trace.Stack) bool {
	for f := range st.Frames() {
		if f.Func == "runtime.netpollblock" || strings.HasPrefix(f.Func, "internal/poll.(*pollDesc).wait") {
			return true
		}
	}
	return false
}

func (a *analyzer) addToBatch(ev *trace.Event, id trace.GoID, s *gstate, blocked trace.Time) {
	th := ev.Thread()
	b := a.open[th]
	if b == nil {
		b = &Batch{Thread: th, NoProc: ev.Proc() == trace.NoProc, Start: ev.Time(), PrevPoll: a.lastPoll}
		a.open[th] = b
		a.lastPoll = ev.Time()
		a.rep.Batches = append(a.rep.Batches, b)
	}
	m := &member{b: b, g: id, blocked: blocked, unblock: ev.Time()}
	b.members = append(b.members, m)
	s.batch, s.mem = b, m
	a.running[id] = m
}

// reqBlock follows a connection goroutine's request at a block.
func (a *analyzer) reqBlock(s *gstate, t trace.Time) {
	switch s.blockClass {
	case blkClient:
		if !s.conn {
			s.conn = true
			a.rep.ConnGs++
		}
		switch s.ph {
		case phRunUpstream:
			s.req.T[5] = t
			a.rep.Requests = append(a.rep.Requests, s.req)
		case phRunClient:
			a.rep.NoUp++
		case phNone:
		default:
			a.rep.Partial++
		}
		s.req, s.ph = &Request{}, phWaitClient
		s.otherBlockAt, s.otherReadyAt = 0, 0
	case blkUpstream:
		if s.ph == phRunClient {
			s.req.T[2] = t
			s.ph = phWaitUpstream
		} else if s.ph != phNone {
			a.rep.Partial++
			s.req, s.ph = nil, phNone
		}
	default:
		if s.ph == phRunClient || s.ph == phRunUpstream {
			s.otherBlockAt = t
		}
	}
}

func (a *analyzer) reqRunnable(s *gstate, from trace.GoState, t, blocked trace.Time, blockKnown bool) {
	if s.req == nil {
		return
	}
	r := s.req
	if from != trace.GoWaiting {
		s.otherReadyAt = t // preempted or back from a syscall
		return
	}
	unseen := func(lo trace.Time) time.Duration {
		if s.batch != nil && s.batch.PrevPoll > lo {
			lo = s.batch.PrevPoll
		}
		return t.Sub(lo)
	}
	switch s.ph {
	case phWaitClient:
		r.T[0] = t
		if blockKnown {
			r.Unseen0 = unseen(blocked)
		}
		r.Netpoll0 = s.mem != nil
		if s.batch != nil {
			r.Pos0, r.batch, r.m0 = len(s.batch.members), s.batch, s.mem
		}
		s.ph = phReadyClient
	case phWaitUpstream:
		r.T[3] = t
		r.Unseen3 = unseen(r.T[2])
		r.m3 = s.mem
		s.ph = phReadyUpstream
	default:
		if s.otherBlockAt > 0 {
			r.OtherBlock += t.Sub(s.otherBlockAt)
			s.otherBlockAt = 0
			s.otherReadyAt = t
		}
	}
}

func (a *analyzer) reqRunning(s *gstate, t trace.Time) {
	if s.req == nil {
		return
	}
	switch s.ph {
	case phReadyClient:
		s.req.T[1] = t
		s.ph = phRunClient
	case phReadyUpstream:
		s.req.T[4] = t
		s.ph = phRunUpstream
	default:
		if s.otherReadyAt > 0 {
			s.req.OtherWait += t.Sub(s.otherReadyAt)
			s.otherReadyAt = 0
		}
	}
}

func (a *analyzer) finish() {
	for _, s := range a.gs {
		if s.state == trace.GoRunning && s.known {
			s.run += a.rep.Last.Sub(s.since)
		}
		if s.state == trace.GoSyscall && s.known {
			s.sys += a.rep.Last.Sub(s.since)
		}
		if s.req != nil && s.ph != phWaitClient {
			a.rep.Partial++
		}
	}
	for id, t0 := range a.procStart {
		a.rep.ProcBusy[id] += a.rep.Last.Sub(t0)
	}
	for _, b := range a.rep.Batches {
		b.infer()
	}
	for _, r := range a.rep.Requests {
		if r.batch != nil {
			r.N0 = len(r.batch.members)
		}
	}
	a.rep.Goroutine = a.gs
	a.rep.GCs = a.rep.Ranges["GC concurrent mark phase"] + a.rep.Ranges["GC concurrent mark phase (under way at the trace's start)"]
}

// infer numbers the members in readiness order (epoll_wait's order),
// from the unblock order and runtime/proc.go: netpoll pushes each ready
// goroutine on the head of a list, so the list is in reverse readiness
// order; findRunnable pops its head (readied last) to run at once and
// injectglist unblocks the rest in list order, then the popped one is
// unblocked; elsewhere (sysmon, pollWork) injectglist takes the whole
// list. Then, when all members ran, it gives each member the start it
// would have had if the same run slots had gone in readiness order.
func (b *Batch) infer() {
	n := len(b.members)
	for k, m := range b.members {
		switch {
		case !b.Popped:
			m.epoll = n - k
		case k == n-1:
			m.epoll = n
		default:
			m.epoll = n - 1 - k
		}
	}
	if b.nstarted < n {
		return
	}
	starts := make([]trace.Time, n)
	for i, m := range b.members {
		starts[i] = m.start
	}
	slices.Sort(starts)
	for _, m := range b.members {
		m.fifo = starts[m.epoll-1]
	}
}

// concordance counts the pairs of members of one batch whose order by
// key agrees with their order by the time they blocked, among the pairs
// whose block times are known and differ.
func (b *Batch) concordance(key func(*member) int) (agree, pairs int) {
	for i, x := range b.members {
		for _, y := range b.members[i+1:] {
			if x.blocked == 0 || y.blocked == 0 || x.blocked == y.blocked {
				continue
			}
			pairs++
			if (key(x) < key(y)) == (x.blocked < y.blocked) {
				agree++
			}
		}
	}
	return agree, pairs
}

// --- statistics helpers ---

// pct is the nearest-rank percentile p (0..100) of sorted d.
func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := int(float64(len(d))*p/100+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var s time.Duration
	for _, x := range d {
		s += x
	}
	return s / time.Duration(len(d))
}

func sorted(d []time.Duration) []time.Duration {
	c := slices.Clone(d)
	slices.Sort(c)
	return c
}

// byTotal returns the requests sorted by key, ascending.
func sortRequests(rs []*Request, key func(*Request) time.Duration) []*Request {
	c := slices.Clone(rs)
	sort.SliceStable(c, func(i, j int) bool { return key(c[i]) < key(c[j]) })
	return c
}
