// Package accesslog owns the JSON access log: one line per request, with the
// keys docs/configuration.md (Access log) lists. Lines are formatted on the
// request path into a shared buffer and written by one background
// goroutine, so a slow disk never blocks a request; Close writes what is
// left, so a graceful shutdown loses no line.
package accesslog

import (
	"bytes"
	"io"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// maxPending bounds the bytes waiting to be written. Past it, lines are
// dropped (and counted) rather than letting a stuck disk grow memory without
// bound or block requests.
const maxPending = 8 << 20

// flushEvery is how often pending lines are written.
const flushEvery = 100 * time.Millisecond

// Entry is one request's line.
type Entry struct {
	Time      time.Time
	RequestID []byte
	Client    netip.Addr
	Method    []byte
	Path      []byte
	Route     string
	Backend   string
	Status    int
	BytesIn   int64
	BytesOut  int64
	Duration  time.Duration
	Attempts  int
	Error     string
	// Proto is the request's protocol: "HTTP/1.0", "HTTP/1.1" or
	// "HTTP/2.0".
	Proto string
}

// Lost is told of lines that did not reach the log whole: cause is
// "write_error" (the writer failed) or "dropped" (it could not keep up).
type Lost func(cause string, lines int)

// Log writes entries to an io.Writer from a background goroutine.
type Log struct {
	w      io.Writer
	closer io.Closer
	lost   Lost

	refs     atomic.Int64 // requests holding the log (see Holder)
	retiring atomic.Bool  // swapped out: close when the last holder is done
	closing  atomic.Bool  // Close has begun

	mu      sync.Mutex
	pending []byte
	spare   []byte
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	dropped atomic.Int64
}

// Open returns a log writing to dest: "stderr", "stdout" or a file path
// (appended to, created with mode 0644). "off" returns nil: Log methods on a
// nil *Log do nothing. lost, when not nil, is told of lines lost.
func Open(dest string, lost Lost) (*Log, error) {
	switch dest {
	case "off", "":
		return nil, nil
	case "stderr":
		return New(os.Stderr, nil, lost), nil
	case "stdout":
		return New(os.Stdout, nil, lost), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return New(f, f, lost), nil
}

// New returns a log writing to w, closing closer (if any) on Close; lost,
// when not nil, is told of lines lost.
func New(w io.Writer, closer io.Closer, lost Lost) *Log {
	l := &Log{w: w, closer: closer, lost: lost, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

// Holder holds the log in use, swapped by a reload. A request takes the
// log with Acquire when it starts and gives it back with Release once its
// line is written; a log swapped out is closed only after the last request
// that holds it has given it back, so no line is written to a closed log.
type Holder struct {
	p atomic.Pointer[Log]
}

// Store puts l in place, for a holder that had none.
func (h *Holder) Store(l *Log) { h.p.Store(l) }

// Load returns the log in place, without holding it.
func (h *Holder) Load() *Log { return h.p.Load() }

// Acquire returns the log in place, held until Release (nil for none).
func (h *Holder) Acquire() *Log {
	for {
		l := h.p.Load()
		if l == nil {
			return nil
		}
		l.refs.Add(1)
		if h.p.Load() == l {
			return l
		}
		l.Release() // swapped meanwhile: take the new one
	}
}

// Swap puts l in place and retires the log it replaces: that one closes,
// on a goroutine of its own, when no request holds it any more.
func (h *Holder) Swap(l *Log) {
	old := h.p.Swap(l)
	if old == nil {
		return
	}
	old.retiring.Store(true)
	if old.refs.Load() == 0 {
		go old.Close()
	}
}

// Release gives back a log taken with Holder.Acquire.
func (l *Log) Release() {
	if l == nil {
		return
	}
	if l.refs.Add(-1) == 0 && l.retiring.Load() {
		go l.Close()
	}
}

// Dropped returns how many lines were dropped because the writer could not
// keep up.
func (l *Log) Dropped() int64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Write appends e's line for the background writer.
func (l *Log) Write(e *Entry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if len(l.pending) > maxPending {
		l.mu.Unlock()
		l.dropped.Add(1)
		if l.lost != nil {
			l.lost("dropped", 1)
		}
		return
	}
	l.pending = appendEntry(l.pending, e)
	big := len(l.pending) > 64<<10
	l.mu.Unlock()
	if big {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			l.flush()
			return
		case <-tick.C:
		case <-l.wake:
		}
		l.flush()
	}
}

// flush writes the pending lines, outside the lock.
func (l *Log) flush() {
	l.mu.Lock()
	buf := l.pending
	l.pending = l.spare[:0]
	l.mu.Unlock()
	if len(buf) > 0 {
		if n, err := l.w.Write(buf); err != nil && l.lost != nil {
			l.lost("write_error", bytes.Count(buf[n:], []byte{'\n'}))
		}
	}
	l.mu.Lock()
	l.spare = buf[:0]
	l.mu.Unlock()
}

// Close writes what is pending and closes the file, once.
func (l *Log) Close() error {
	if l == nil || !l.closing.CompareAndSwap(false, true) {
		return nil
	}
	close(l.stop)
	<-l.done
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}

// appendEntry appends e as one JSON line.
func appendEntry(b []byte, e *Entry) []byte {
	b = append(b, `{"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","request_id":`...)
	b = AppendString(b, e.RequestID)
	b = append(b, `,"client":"`...)
	if e.Client.IsValid() {
		b = e.Client.AppendTo(b)
	}
	b = append(b, `","method":`...)
	b = AppendString(b, e.Method)
	b = append(b, `,"path":`...)
	b = AppendString(b, e.Path)
	b = append(b, `,"route":`...)
	b = AppendString(b, e.Route)
	b = append(b, `,"backend":`...)
	b = AppendString(b, e.Backend)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.Status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, e.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, e.BytesOut, 10)
	b = append(b, `,"duration_ms":`...)
	b = strconv.AppendFloat(b, float64(e.Duration.Microseconds())/1000, 'f', 3, 64)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(e.Attempts), 10)
	b = append(b, `,"error":`...)
	b = AppendString(b, e.Error)
	b = append(b, `,"proto":`...)
	b = AppendString(b, e.Proto)
	return append(b, "}\n"...)
}

// AppendString appends s as a JSON string; control characters are escaped
// and invalid UTF-8 becomes U+FFFD.
func AppendString[S ~string | ~[]byte](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune([]byte(string(s[i:min(i+4, len(s))])))
		if r == utf8.RuneError && size <= 1 {
			b = append(b, `\ufffd`...)
			i++
			continue
		}
		b = append(b, s[i:i+size]...)
		i += size
	}
	return append(b, '"')
}
