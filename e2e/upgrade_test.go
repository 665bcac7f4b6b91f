package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUpgradeTunnel: a protocol upgrade the client asks for (docs/configuration.md: Upgrade
// is removed "except on a protocol upgrade that the proxy carries through")
// is carried: the backend sees Upgrade and Connection: Upgrade, its 101
// reaches the client with an X-Request-Id, and bytes then flow both ways.
// An h2c upgrade is never carried.
func TestUpgradeTunnel(t *testing.T) {
	t.Parallel()
	gotUpgrade := make(chan string, 4)
	b := newStreamBackend(t, "ws", func(w http.ResponseWriter, r *http.Request) {
		gotUpgrade <- r.Header.Get("Upgrade") + "|" + r.Header.Get("Connection")
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "plain")
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello\n")
		brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo " + line)
			brw.Flush()
		}
	})
	p := start(t, fmt.Sprintf(`
routes:
  - path_prefix: /
    backends: [%s]
`, b.URL))

	c, br := dialProxy(t, p)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: test.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the 101: %v", err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("got %d Upgrade=%q X-Request-Id=%q, want 101 with Upgrade echo and a request ID",
			resp.StatusCode, resp.Header.Get("Upgrade"), resp.Header.Get("X-Request-Id"))
	}
	if got := <-gotUpgrade; got != "echo|Upgrade" {
		t.Errorf("backend saw Upgrade|Connection = %q, want echo|Upgrade", got)
	}
	for _, want := range []string{"hello\n"} {
		if line, err := br.ReadString('\n'); err != nil || line != want {
			t.Fatalf("first tunnel bytes %q %v, want %q", line, err, want)
		}
	}
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("ping %d\n", i)
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); err != nil || line != "echo "+msg {
			t.Fatalf("through the tunnel: %q %v, want %q", line, err, "echo "+msg)
		}
	}

	// h2c is not carried: the backend sees no Upgrade and answers plainly.
	c2, br2 := dialProxy(t, p)
	io.WriteString(c2, "GET /h2c HTTP/1.1\r\nHost: test.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n")
	resp2, err := http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp2.Body)
	if resp2.StatusCode != 200 || string(body) != "plain" {
		t.Fatalf("h2c request: %d %q, want 200 plain", resp2.StatusCode, body)
	}
	if got := <-gotUpgrade; strings.Contains(got, "h2c") {
		t.Errorf("backend saw the h2c upgrade: %q", got)
	}
}
