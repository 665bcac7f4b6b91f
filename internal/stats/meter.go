package stats

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Window is the number of one-second steps the figures cover: the last
// minute.
const Window = 60

// The counters of a meter, by position. Every meter has the first group;
// a route's meter also has the status classes and the error words.
const (
	fRequests     = iota // backend: tries sent to it (a route's requests are the sum of its fCodes)
	fErrors              // backend: tries that failed (a route's errors are its 5xx class)
	fRetries             // route: retries; backend: retries of tries that failed on it
	fEjections           // passive ejections (route: of any of its backends)
	fLatency             // first of Buckets latency buckets
	backendFields = fLatency + Buckets

	fCodes      = backendFields // six status classes: index 1-5 for 1xx-5xx, 0 for any other
	fWords      = fCodes + 6    // MaxWords error words, by number
	routeFields = fWords + MaxWords
)

// MaxWords bounds the error words a route counts: a word's number (the
// metrics.ErrorWord value) must be below it; higher ones are not counted.
const MaxWords = 32

// meter is one route's or one backend's counters and their recent
// history. The counters only grow and are written with atomic adds; the
// history is a ring of per-second differences, written once a second by
// sample and read by figures, both under mu, which the request path never
// takes.
type meter struct {
	vals []atomic.Uint64

	mu    sync.Mutex
	prev  []uint64 // vals at the last sample
	ring  []uint32 // Window slots of len(vals) differences each
	start [Window]int64
	end   [Window]int64 // unix ns: the time a slot covers is (start, end]
	next  int           // the slot the next sample writes
	n     int           // slots written, up to Window
	last  int64         // unix ns of the last sample, or of the meter's birth
}

func newMeter(fields int, now time.Time) *meter {
	return &meter{
		vals: make([]atomic.Uint64, fields),
		prev: make([]uint64, fields),
		ring: make([]uint32, Window*fields),
		last: now.UnixNano(),
	}
}

func (m *meter) add(field int) { m.vals[field].Add(1) }

// sample closes the current second: the counters' growth since the last
// sample goes into the next slot of the ring.
func (m *meter) sample(now time.Time) {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if t <= m.last {
		return
	}
	f := len(m.vals)
	slot := m.ring[m.next*f : (m.next+1)*f]
	for i := range m.vals {
		v := m.vals[i].Load()
		slot[i] = uint32(v - m.prev[i])
		m.prev[i] = v
	}
	derive(slot)
	m.start[m.next], m.end[m.next] = m.last, t
	m.last = t
	m.next = (m.next + 1) % Window
	m.n = min(m.n+1, Window)
}

// Figures are one meter's numbers at a moment: totals since it was made,
// the sums over the last minute, and a per-second series.
type Figures struct {
	// Total is the requests counter since the meter was made (for a
	// backend, the tries sent to it); EjectionsTotal likewise.
	Total, EjectionsTotal uint64
	// Seconds is the length of the window the sums cover: the last minute,
	// or less when the meter is younger, but at least one second.
	Seconds float64
	// Requests, Errors, Retries and Ejections are counts over the window.
	Requests, Errors, Retries, Ejections uint64
	// RPS is Requests over Seconds.
	RPS float64
	// ErrorRate is Errors over Requests, NaN when there were none.
	ErrorRate float64
	// P50 and P99 are latency percentiles over the window in milliseconds,
	// NaN when no request was timed.
	P50, P99 float64
	// SeriesRPS and SeriesP99 hold one value for each of the last Window
	// whole seconds, oldest first: requests per second, and the p99
	// latency in milliseconds (NaN for a second without requests, and both
	// NaN for seconds before the meter was made).
	SeriesRPS, SeriesP99 [Window]float64
	// Codes counts a route's requests by status class over the window:
	// index 1 to 5 for 1xx to 5xx, 0 for any other status; Words counts
	// its requests by error word number. Both are zero for a backend.
	Codes [6]uint64
	Words [MaxWords]uint64
}

// figures computes m's figures at now: the window is the last Window-1
// whole seconds plus the part of the current one.
func (m *meter) figures(now time.Time) Figures {
	t := now.UnixNano()
	f := len(m.vals)
	sum := make([]uint64, f)
	var fig Figures
	m.mu.Lock()
	for i := range m.vals {
		v := m.vals[i].Load()
		sum[i] = v - m.prev[i]
		switch {
		case i == fRequests && f == backendFields, i >= fCodes && i < fWords:
			fig.Total += v
		case i == fEjections:
			fig.EjectionsTotal = v
		}
	}
	derive(sum)
	from := m.last
	lat := make([]uint64, Buckets)
	for k := 0; k < Window; k++ {
		s := (m.next - Window + k + Window) % Window // oldest first
		if k < Window-m.n {
			fig.SeriesRPS[k], fig.SeriesP99[k] = math.NaN(), math.NaN()
			continue
		}
		slot := m.ring[s*f : (s+1)*f]
		if k > 0 { // the oldest slot is a minute old: out of the window
			for i, d := range slot {
				sum[i] += uint64(d)
			}
			from = min(from, m.start[s])
		}
		secs := float64(m.end[s]-m.start[s]) / 1e9
		fig.SeriesRPS[k] = float64(slot[fRequests]) / secs
		for i := range lat {
			lat[i] = uint64(slot[fLatency+i])
		}
		fig.SeriesP99[k] = ms(percentile(lat, 0.99))
	}
	m.mu.Unlock()

	fig.Seconds = max(float64(t-from)/1e9, 1)
	fig.Requests, fig.Errors = sum[fRequests], sum[fErrors]
	fig.Retries, fig.Ejections = sum[fRetries], sum[fEjections]
	fig.RPS = float64(fig.Requests) / fig.Seconds
	fig.ErrorRate = math.NaN()
	if fig.Requests > 0 {
		fig.ErrorRate = float64(fig.Errors) / float64(fig.Requests)
	}
	hist := sum[fLatency:backendFields]
	fig.P50 = ms(percentile(hist, 0.50))
	fig.P99 = ms(percentile(hist, 0.99))
	if f == routeFields {
		copy(fig.Codes[:], sum[fCodes:fWords])
		copy(fig.Words[:], sum[fWords:routeFields])
	}
	return fig
}

// ms turns a percentile in microseconds into milliseconds, NaN when there
// is none.
func ms(us float64, ok bool) float64 {
	if !ok {
		return math.NaN()
	}
	return us / 1000
}

// derive fills a route's requests and errors from its status classes
// (see Route.Request); a backend's have been counted.
func derive[T uint32 | uint64](v []T) {
	if len(v) != routeFields {
		return
	}
	var n T
	for _, c := range v[fCodes:fWords] {
		n += c
	}
	v[fRequests], v[fErrors] = n, v[fCodes+5]
}
