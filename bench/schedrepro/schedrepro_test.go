package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const request = "GET / HTTP/1.1\r\nHost: test\r\nUser-Agent: schedrepro-test\r\n\r\n"

// TestModes checks every mode answers 100 keep-alive requests correctly on
// each of several connections, whole, pipelined and split mid-head, and
// through net/http's client. Correctness only: nothing here is timed.
func TestModes(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			if mode != "goroutine" && runtime.GOOS != "linux" {
				t.Skip("needs Linux (epoll)")
			}
			a, err := start(mode, "127.0.0.1:0", time.Microsecond)
			if err != nil {
				t.Fatal(err)
			}
			addr := a.String()
			var wg sync.WaitGroup
			for i, style := range []string{"whole", "whole", "pipelined", "split", "whole", "pipelined"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := exchange(addr, style, 100); err != nil {
						t.Errorf("connection %d (%s): %v", i, style, err)
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := httpClient(addr, 100); err != nil {
					t.Errorf("net/http client: %v", err)
				}
			}()
			wg.Wait()
		})
	}
}

// exchange sends n requests on one connection and checks the n responses.
// whole: one request per write, then its response; pipelined: writes of 10
// requests, then 10 responses; split: each request head in three writes
// with pauses, so that the server reads partial heads.
func exchange(addr, style string, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	per := 1
	if style == "pipelined" {
		per = 10
	}
	want := bytes.Repeat(response, per)
	got := make([]byte, len(want))
	for done := 0; done < n; done += per {
		switch style {
		case "split":
			for _, part := range []string{request[:5], request[5 : len(request)-3], request[len(request)-3:]} {
				if _, err := io.WriteString(c, part); err != nil {
					return err
				}
				time.Sleep(200 * time.Microsecond)
			}
		default:
			if _, err := io.WriteString(c, strings.Repeat(request, per)); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("after %d responses: %v", done, err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("after %d responses: got %q", done, got)
		}
	}
	return nil
}

// httpClient makes n GETs through one keep-alive connection of net/http.
func httpClient(addr string, n int) error {
	tr := &http.Transport{MaxConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	fresh := 0 // connections dialled: keep-alive must make it 1
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if !i.Reused {
			fresh++
		}
	}}
	for i := 0; i < n; i++ {
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
		if err != nil {
			return err
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || string(body) != "hello, world!\n" || resp.Close {
			return fmt.Errorf("request %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	if fresh != 1 {
		return fmt.Errorf("%d connections for %d requests, want 1", fresh, n)
	}
	return nil
}
