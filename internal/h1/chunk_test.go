package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-proxy/sluice/internal/wire"
)

// The grammar of RFC 9112 section 7.1 and RFC 9110 section 5, written as
// regular expressions over bytes (each byte a rune, see latin1): the
// reference that ParseChunkSize and ValidTrailerLine are checked against.
const (
	reToken  = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+"
	reBWS    = "[ \\t]*"
	reQuoted = `"(?:[\t \x21\x23-\x5B\x5D-\x7E\x{80}-\x{FF}]|\\[\t \x21-\x7E\x{80}-\x{FF}])*"`
	reVChar  = `[\x21-\x7E\x{80}-\x{FF}]`
)

var (
	refChunkLine = regexp.MustCompile(`^([0-9A-Fa-f]+)(?:` + reBWS + `;` + reBWS + reToken +
		`(?:` + reBWS + `=` + reBWS + `(?:` + reToken + `|` + reQuoted + `))?)*$`)
	refFieldLine = regexp.MustCompile(`^` + reToken + `:` + reBWS +
		`(?:` + reVChar + `(?:[ \t]|` + reVChar + `)*` + reVChar + `|` + reVChar + `)?` + reBWS + `$`)
)

// latin1 maps each byte of b to the rune of the same value, so that the
// regular expressions above see bytes, not UTF-8.
func latin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// refChunkSize is the reference ParseChunkSize.
func refChunkSize(line []byte) (int64, bool) {
	m := refChunkLine.FindStringSubmatch(latin1(line))
	if m == nil {
		return 0, false
	}
	hex := strings.TrimLeft(m[1], "0")
	if hex == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(hex, 16, 64)
	if err != nil || n > 1<<62 {
		return 0, false
	}
	return int64(n), true
}

// refTrailerLine is the reference ValidTrailerLine.
func refTrailerLine(line []byte) bool { return refFieldLine.MatchString(latin1(line)) }

// Outcomes of reading a chunked body.
type chunkOutcome int

const (
	chunkOK         chunkOutcome = iota // the body ends well
	chunkBad                            // its framing is malformed
	chunkIncomplete                     // the stream ends first
)

// refDecode is the reference chunked-body reader: it decodes in, the
// stream after a head, and says how the body ends.
func refDecode(in []byte) (data []byte, out chunkOutcome) {
	pos := 0
	line := func() ([]byte, chunkOutcome) {
		i := bytes.IndexByte(in[pos:], '\n')
		if i < 0 {
			return nil, chunkIncomplete
		}
		if i == 0 || in[pos+i-1] != '\r' {
			return nil, chunkBad
		}
		l := in[pos : pos+i-1]
		pos += i + 1
		return l, chunkOK
	}
	for {
		l, o := line()
		if o != chunkOK {
			return data, o
		}
		size, ok := refChunkSize(l)
		if !ok {
			return data, chunkBad
		}
		if size == 0 {
			for {
				l, o := line()
				if o != chunkOK {
					return data, o
				}
				if len(l) == 0 {
					return data, chunkOK
				}
				if !refTrailerLine(l) {
					return data, chunkBad
				}
			}
		}
		if int64(len(in)-pos) < size+2 {
			// The engine waits for the CRLF's two bytes before it looks
			// at them.
			return data, chunkIncomplete
		}
		data = append(data, in[pos:pos+int(size)]...)
		pos += int(size)
		if in[pos] != '\r' || in[pos+1] != '\n' {
			return data, chunkBad
		}
		pos += 2
	}
}

// Chunk-size lines, valid and not, without their CRLF.
var chunkLines = []struct {
	name string
	line string
	n    int64
	ok   bool
}{
	{"zero", "0", 0, true},
	{"one hex digit", "a", 10, true},
	{"uppercase hex", "FF", 255, true},
	{"mixed case hex", "aBc", 0xabc, true},
	{"leading zeros", "0000000000000000000000010", 16, true},
	{"largest size", "4000000000000000", 1 << 62, true},
	{"extension with a token value", "10;x=y", 16, true},
	{"extension without a value", "10;x", 16, true},
	{"whitespace before the semicolon", "10 ;x", 16, true},
	{"whitespace around everything", "10 \t; \tx \t= \ty", 16, true},
	{"several extensions", "5;a;b=c;d=\"e\"", 5, true},
	{"several extensions with whitespace", "5 ;a ;b = c\t;d", 5, true},
	{"empty quoted value", `5;a=""`, 5, true},
	{"quoted value with spaces and tabs", "5;a=\"x y\tz\"", 5, true},
	{"quoted value with quoted-pairs", `5;a="x\"y\\z\ "`, 5, true},
	{"quoted value with separators", `5;a="(),/:;<=>?@[]{}="`, 5, true},
	{"quoted value with obs-text", "5;a=\"\x80\xff\"", 5, true},
	{"quoted-pair of obs-text", "5;a=\"\\\x80\"", 5, true},
	{"quoted-pair of a tab", "5;a=\"\\\t\"", 5, true},
	{"token of every tchar", "5;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz", 5, true},
	{"extension on the last chunk", "0;a=b", 0, true},

	{"empty line", "", 0, false},
	{"no size", ";x", 0, false},
	{"size over 2^62", "4000000000000001", 0, false},
	{"size overflowing 64 bits", "40000000000000000", 0, false},
	{"size of many digits", "fffffffffffffffffff1", 0, false},
	{"negative size", "-1", 0, false},
	{"size with a plus", "+1", 0, false},
	{"size in 0x notation", "0x5", 0, false},
	{"letter after the size", "1x", 0, false},
	{"whitespace before the size", " 5", 0, false},
	{"whitespace after the size", "5 ", 0, false},
	{"tab after the size", "5\t", 0, false},
	{"whitespace inside the size", "5 5", 0, false},
	{"whitespace after a name", "5;a ", 0, false},
	{"whitespace after a value", "5;a=b ", 0, false},
	{"whitespace after a quoted value", `5;a="b" `, 0, false},
	{"bare CR after the size", "5\r", 0, false},
	{"bare CR in an extension", "5;a\rb", 0, false},
	{"bare CR as whitespace", "5\r;a", 0, false},
	{"bare CR in a quoted value", "5;a=\"x\ry\"", 0, false},
	{"LF in an extension", "5;a\nb", 0, false},
	{"LF in a quoted value", "5;a=\"x\ny\"", 0, false},
	{"NUL after the size", "5\x00", 0, false},
	{"NUL in a name", "5;a\x00b", 0, false},
	{"NUL in a quoted value", "5;a=\"x\x00y\"", 0, false},
	{"control character in a name", "5;a\x01", 0, false},
	{"control character in a value", "5;a=b\x1f", 0, false},
	{"DEL in a name", "5;a\x7f", 0, false},
	{"DEL in a quoted value", "5;a=\"\x7f\"", 0, false},
	{"vertical tab as whitespace", "5\v;a", 0, false},
	{"form feed as whitespace", "5;\fa", 0, false},
	{"obs-text in a name", "5;a\x80", 0, false},
	{"obs-text in a token value", "5;a=\x80", 0, false},
	{"unterminated quoted value", `5;a="xy`, 0, false},
	{"quoted value ending in a backslash", `5;a="xy\`, 0, false},
	{"quoted value whose last quote is escaped", `5;a="xy\"`, 0, false},
	{"quoted-pair of a NUL", "5;a=\"\\\x00\"", 0, false},
	{"quoted-pair of a CR", "5;a=\"\\\r\"", 0, false},
	{"quoted-pair of DEL", "5;a=\"\\\x7f\"", 0, false},
	{"text after a quoted value", `5;a="b"c`, 0, false},
	{"quoted name", `5;"a"=b`, 0, false},
	{"empty name", "5;", 0, false},
	{"empty name before a value", "5;=b", 0, false},
	{"empty name between extensions", "5;a;;b", 0, false},
	{"whitespace-only name", "5; ", 0, false},
	{"separator in a name", "5;a@b", 0, false},
	{"slash in a name", "5;a/b", 0, false},
	{"equals with no value", "5;a=", 0, false},
	{"equals with whitespace and no value", "5;a= ", 0, false},
	{"equals before the next extension", "5;a=;b", 0, false},
	{"two equals", "5;a=b=c", 0, false},
	{"separator in a token value", "5;a=b,c", 0, false},
	{"comma between extensions", "5;a,b", 0, false},
	{"extension without a semicolon", "5 a", 0, false},
	{"semicolon alone after whitespace", "5 ;", 0, false},
}

func TestParseChunkSize(t *testing.T) {
	for _, tt := range chunkLines {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := wire.ParseChunkSize([]byte(tt.line))
			if ok != tt.ok || ok && n != tt.n {
				t.Errorf("wire.ParseChunkSize(%q) = %d, %v; want %d, %v", tt.line, n, ok, tt.n, tt.ok)
			}
			// The table and the reference agree, so that the fuzz
			// target's reference is itself checked.
			rn, rok := refChunkSize([]byte(tt.line))
			if rok != tt.ok || rok && rn != tt.n {
				t.Errorf("the reference says %d, %v for %q; the table %d, %v", rn, rok, tt.line, tt.n, tt.ok)
			}
		})
	}
}

// Trailer lines, valid and not, without their CRLF.
var trailerLines = []struct {
	name string
	line string
	ok   bool
}{
	{"plain field", "X-T: 1", true},
	{"no whitespace", "X-T:1", true},
	{"empty value", "X-T:", true},
	{"whitespace-only value", "X-T: \t ", true},
	{"whitespace around the value", "X-T:\t a b \t", true},
	{"value with every kind of byte allowed", "X:\t!~\"(),/:;<=>?@[\\]{} \x80\xff", true},
	{"token name of every tchar", "!#$%&'*+-.^_`|~09AZaz: v", true},

	{"empty line", "", false},
	{"no colon", "Xa", false},
	{"empty name", ": a", false},
	{"whitespace before the colon", "X : a", false},
	{"tab before the colon", "X\t: a", false},
	{"obs-fold with a space", " b", false},
	{"obs-fold with a tab", "\tb", false},
	{"separator in the name", "X@Y: a", false},
	{"quoted name", `"X": a`, false},
	{"obs-text in the name", "X\x80: a", false},
	{"bare CR in the value", "X: a\rb", false},
	{"bare CR ending the value", "X: a\r", false},
	{"bare CR line", "\r", false},
	{"bare CR in the name", "X\r: a", false},
	{"LF in the value", "X: a\nb", false},
	{"NUL in the value", "X: a\x00b", false},
	{"control character in the value", "X: a\x01b", false},
	{"escape in the value", "X: \x1b[1m", false},
	{"DEL in the value", "X: a\x7f", false},
	{"vertical tab in the value", "X: a\vb", false},
	{"request line", "GET /x HTTP/1.1", false},
}

func TestValidTrailerLine(t *testing.T) {
	for _, tt := range trailerLines {
		t.Run(tt.name, func(t *testing.T) {
			if got := wire.ValidTrailerLine([]byte(tt.line)); got != tt.ok {
				t.Errorf("wire.ValidTrailerLine(%q) = %v, want %v", tt.line, got, tt.ok)
			}
			if got := refTrailerLine([]byte(tt.line)); got != tt.ok {
				t.Errorf("the reference says %v for %q; the table %v", got, tt.line, tt.ok)
			}
		})
	}
}

// framingEcho answers each request with its chunked body ("ok <body>") or
// the error reading it ("err <error>"), and leaves the connection to the
// engine: it says Connection: close only when the engine will close.
type framingEcho struct {
	timeout time.Duration // of the body's reads; 2s when 0
}

func (e framingEcho) Serve(c *Conn) {
	chunked := bytes.Contains(c.Header, []byte("Transfer-Encoding: chunked\r\n"))
	c.SetBody(0, chunked, false)
	c.Body().SetTimeout(2 * time.Second)
	if e.timeout > 0 {
		c.Body().SetTimeout(e.timeout)
	}
	msg := string(c.Target) + " ok "
	body, err := io.ReadAll(c.Body())
	if err != nil {
		msg = string(c.Target) + " err " + err.Error()
	} else {
		msg += string(body)
	}
	c.Out = fmt.Appendf(c.Begin(), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n", len(msg))
	if c.Closing() {
		c.Out = append(c.Out, "Connection: close\r\n"...)
	}
	c.Out = append(c.Out, "\r\n"...)
	c.Out = append(c.Out, msg...)
}

func (framingEcho) Refuse(c *Conn, status int, reason string) {
	c.Out = fmt.Appendf(c.Begin(), "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", status, http.StatusText(status), len(reason), reason)
}

const chunkedHead = "POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"

// pipelined follows each row's body: a request the engine must serve after
// a well-framed body, and never after a malformed one.
const pipelined = "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

// Chunked bodies (after chunkedHead), well-framed (body is what they carry)
// or not.
var chunkedBodies = []struct {
	name string
	send string
	bad  bool
	body string
}{
	{name: "no extensions", send: "5\r\nhello\r\n0\r\n\r\n", body: "hello"},
	{name: "extensions of every form", send: "5;a;b=c ; d = \"e \\\" f\"\r\nhello\r\n6\t;x=\"\x80\"\r\n world\r\n0;last=1\r\n\r\n", body: "hello world"},
	{name: "trailer fields", send: "5\r\nhello\r\n0\r\nX-T: 1\r\nX-Empty:\r\nX-U:\t\x80 v \t\r\n\r\n", body: "hello"},

	{name: "bare CR in an extension", send: "5;a\rb\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "bare CR after the size", send: "5\r\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "bare CR in the last-chunk line", send: "0\r\r\n\r\n", bad: true},
	{name: "LF inside a quoted extension value", send: "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "NUL in an extension", send: "5;a\x00\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "control character in an extension", send: "5;a=b\x01\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "DEL in a quoted extension value", send: "5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "unterminated quoted extension value", send: "5;a=\"hello\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "non-token extension name", send: "5;a@b\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "empty extension name", send: "5;=b\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "equals with no value", send: "5;a=\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "whitespace after the size", send: "5 \r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "whitespace after an extension", send: "5;a=b\t\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "whitespace inside the size", send: "5 5\r\nhello\r\n0\r\n\r\n", bad: true},
	{name: "bad extension on the last chunk", send: "5\r\nhello\r\n0;\x00\r\n\r\n", bad: true},
	{name: "bad extension after a good chunk", send: "5\r\nhello\r\n5;\"\r\nworld\r\n0\r\n\r\n", bad: true},
	{name: "bare CR in a trailer field", send: "0\r\nX: a\rb\r\n\r\n", bad: true},
	{name: "bare CR line after the last chunk", send: "0\r\n\r\r\n", bad: true},
	{name: "obs-fold in trailers", send: "0\r\nX: a\r\n b\r\n\r\n", bad: true},
	{name: "obs-fold with a tab in trailers", send: "0\r\nX: a\r\n\tb\r\n\r\n", bad: true},
	{name: "trailer without a colon", send: "0\r\nX-T 1\r\n\r\n", bad: true},
	{name: "trailer with whitespace before the colon", send: "0\r\nX-T : 1\r\n\r\n", bad: true},
	{name: "trailer with an empty name", send: "0\r\n: 1\r\n\r\n", bad: true},
	{name: "NUL in a trailer value", send: "0\r\nX: a\x00\r\n\r\n", bad: true},
	{name: "request line as a trailer", send: "0\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n", bad: true},
	{name: "bare LF ending a trailer field", send: "0\r\nX: a\n\r\n", bad: true},
	{name: "bare LF ending the trailer section", send: "0\r\nX: a\r\n\n", bad: true},
	{name: "bare LF ending the last-chunk line", send: "0\n\r\n", bad: true},
	{name: "bare LF ending a chunk-size line", send: "5\nhello\r\n0\r\n\r\n", bad: true},
}

// TestChunkedFraming reads each body over a real socket, with a request
// pipelined behind it: a well-framed body is read whole and the next
// request served; a malformed one makes Read fail with ErrBadChunk and the
// engine close the connection without serving what follows.
func TestChunkedFraming(t *testing.T) {
	_, addr := start(t, framingEcho{}, nil)
	for _, tt := range chunkedBodies {
		t.Run(tt.name, func(t *testing.T) {
			c, br := dial(t, addr)
			if _, err := io.WriteString(c, chunkedHead+tt.send+pipelined); err != nil {
				t.Fatal(err)
			}
			checkFraming(t, br, tt.bad, tt.body)
		})
	}
}

// TestChunkedFramingBytewise is TestChunkedFraming over a pipe, one byte
// per write, so that the engine reads every line in pieces.
func TestChunkedFramingBytewise(t *testing.T) {
	for _, tt := range chunkedBodies {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Handler: framingEcho{}, MaxHeaderBytes: 8 << 10, HeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second}
			client, done := servePipe(s)
			client.SetDeadline(time.Now().Add(10 * time.Second))
			in := []byte(chunkedHead + tt.send + pipelined)
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				for i := range in {
					if _, err := client.Write(in[i : i+1]); err != nil {
						return
					}
				}
			}()
			defer func() {
				client.Close()
				<-wrote
				<-done
			}()
			checkFraming(t, bufio.NewReader(client), tt.bad, tt.body)
		})
	}
}

// servePipe serves one connection of s over a pipe and returns the
// client's end, and a channel closed when the engine is done with it.
func servePipe(s *Server) (net.Conn, chan struct{}) {
	s.conns = map[*Conn]struct{}{}
	client, server := net.Pipe()
	c := newConn(s, server)
	s.conns[c] = struct{}{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.serve()
	}()
	return client, done
}

// checkFraming reads framingEcho's answer to chunkedHead, a body and
// pipelined.
func checkFraming(t *testing.T, br *bufio.Reader, bad bool, body string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response's body: %v", err)
	}
	if !bad {
		if want := "/u ok " + body; string(got) != want || resp.Close {
			t.Fatalf("got %q (close %v), want %q and a connection kept", got, resp.Close, want)
		}
		if status, next := read(t, br); status != 200 || next != "/next ok " {
			t.Fatalf("the pipelined request got %d %q, want 200 %q", status, next, "/next ok ")
		}
		return
	}
	if want := "/u err " + ErrBadChunk.Error(); string(got) != want || !resp.Close {
		t.Fatalf("got %q (close %v), want %q and Connection: close", got, resp.Close, want)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
		t.Fatalf("after the response: %q, %v; want the connection closed, with the pipelined request not served", rest, err)
	}
}

// TestChunkSyntaxAllocs: the checks allocate nothing.
func TestChunkSyntaxAllocs(t *testing.T) {
	line := []byte(`1a2b;name=value ; q="a \"quoted\" value";flag`)
	trailer := []byte("X-Checksum: \tabc def\x80 ")
	if n := testing.AllocsPerRun(100, func() {
		wire.ParseChunkSize(line)
		wire.ValidTrailerLine(trailer)
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

func BenchmarkParseChunkSize(b *testing.B) {
	for _, bb := range []struct{ name, line string }{
		{"size", "1000"},
		{"token extension", "1000;name=value"},
		{"quoted extension", `1000;name="a quoted \"value\"";flag`},
	} {
		b.Run(bb.name, func(b *testing.B) {
			line := []byte(bb.line)
			b.ReportAllocs()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, ok := wire.ParseChunkSize(line); !ok {
					b.Fatal("not valid")
				}
			}
		})
	}
}

func BenchmarkValidTrailerLine(b *testing.B) {
	line := []byte("Grpc-Message: the operation was cancelled by the client")
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	for b.Loop() {
		if !wire.ValidTrailerLine(line) {
			b.Fatal("not valid")
		}
	}
}
