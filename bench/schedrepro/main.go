// Command schedrepro is a minimal reproduction, outside sluice, of a
// hypothesis about tail latency in Go servers run with GOMAXPROCS=1.
//
// The hypothesis: Go's netpoller readies goroutines in the reverse of the
// order epoll reported them. In runtime/netpoll_epoll.go, netpoll walks the
// epoll_wait events in order and calls netpollready for each, which pushes
// the parked goroutine onto the head of a gList (runtime/netpoll.go), so the
// list comes out last-in first-out. findRunnable (runtime/proc.go) pops the
// head of that list to run at once and hands the rest to injectglist, which
// queues them in list order. Within a batch, the connection that became
// readable last runs first and the one that became readable first runs last.
// An event loop such as nginx's handles a batch in epoll (readiness) order.
// Under saturation, with every connection waiting one whole batch, the
// reversal should spread the latencies (some requests wait about zero
// batches, others about two) and so raise p99 at an unchanged p50.
//
// The program is a tiny HTTP/1.1 server that answers every request head with
// the same ~100-byte 200 response after spinning -work of CPU. Modes:
//
//	goroutine           net.Listen, a goroutine per connection, conn.Read and
//	                    conn.Write: Go's netpoller, LIFO within a batch.
//	epoll-fifo          one goroutine locked to its thread, raw non-blocking
//	                    sockets and its own edge-triggered epoll, handling each
//	                    batch of events in the order epoll_wait returned them
//	                    (as nginx does).
//	epoll-lifo          the same loop handling each batch in reverse order: the
//	                    only difference from epoll-fifo is the order.
//	goroutine-dispatch  a goroutine per connection as in goroutine, but a
//	                    connection with nothing left to read waits for a token
//	                    on its own channel instead of in the netpoller; one
//	                    dispatcher goroutine owns a second epoll instance, waits
//	                    for it through the netpoller and hands out tokens in
//	                    epoll order.
//
// Usage:
//
//	GOMAXPROCS=1 taskset -c 0 schedrepro -mode epoll-fifo -addr 127.0.0.1:19100 -work 15us
//
// bench/schedrepro/run.sh drives the comparison with wrk, and
// docs/bench/tail-repro.md has the results.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"runtime"
	"time"
)

var modes = []string{"goroutine", "epoll-fifo", "epoll-lifo", "goroutine-dispatch"}

func main() {
	mode := flag.String("mode", "goroutine", "goroutine, epoll-fifo, epoll-lifo or goroutine-dispatch")
	addr := flag.String("addr", "127.0.0.1:19100", "listen address (the epoll modes take IPv4 only)")
	work := flag.Duration("work", 15*time.Microsecond, "CPU to spin per request")
	flag.Parse()
	a, err := start(*mode, *addr, *work)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "schedrepro: %s on %s, work %v, GOMAXPROCS %d\n", *mode, a, *work, runtime.GOMAXPROCS(0))
	select {}
}

// start listens on addr and serves mode in the background until the process
// exits; it returns the address it listens on.
func start(mode, addr string, work time.Duration) (net.Addr, error) {
	switch mode {
	case "goroutine":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, err
		}
		go serveGoroutine(ln, work)
		return ln.Addr(), nil
	case "goroutine-dispatch":
		return startDispatch(addr, work)
	case "epoll-fifo", "epoll-lifo":
		return startEpoll(addr, work, mode == "epoll-lifo")
	}
	return nil, fmt.Errorf("unknown mode %q (want one of %v)", mode, modes)
}
