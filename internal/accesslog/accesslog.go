// Package accesslog owns the JSON access log: one line per request, with the
// keys docs/configuration.md (Access log) lists. Lines are formatted on the
// request path into a shared buffer and written by one background
// goroutine, so a slow disk never blocks a request; Close writes what is
// left, so a graceful shutdown loses no line.
package accesslog

import (
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
}

// Log writes entries to an io.Writer from a background goroutine.
type Log struct {
	w      io.Writer
	closer io.Closer

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
// nil *Log do nothing.
func Open(dest string) (*Log, error) {
	switch dest {
	case "off", "":
		return nil, nil
	case "stderr":
		return New(os.Stderr, nil), nil
	case "stdout":
		return New(os.Stdout, nil), nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return New(f, f), nil
}

// New returns a log writing to w, closing closer (if any) on Close.
func New(w io.Writer, closer io.Closer) *Log {
	l := &Log{w: w, closer: closer, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
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
		l.w.Write(buf)
	}
	l.mu.Lock()
	l.spare = buf[:0]
	l.mu.Unlock()
}

// Close writes what is pending and closes the file.
func (l *Log) Close() error {
	if l == nil {
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
