package main

import (
	"errors"
	"log"
	"net"
	"time"
)

// serveGoroutine is mode goroutine: one goroutine per connection blocking in
// conn.Read, that is, parked in Go's netpoller whenever it has nothing to read.
func serveGoroutine(ln net.Listener, work time.Duration) {
	acceptLoop(ln, func(c net.Conn) { go handleGoroutine(c, work) })
}

// acceptLoop hands each connection ln accepts to handle until ln closes;
// other accept errors are logged and retried after a pause.
func acceptLoop(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Print(err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		handle(c)
	}
}

func handleGoroutine(c net.Conn, work time.Duration) {
	defer c.Close()
	s := session{work: work}
	buf := make([]byte, 4096)
	var out []byte
	for {
		n, err := c.Read(buf)
		if n > 0 {
			var ok bool
			if out, ok = s.feed(buf[:n], out[:0]); !ok {
				return
			}
			if len(out) > 0 {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}
