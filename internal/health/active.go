package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-proxy/sluice/internal/backend"
	"github.com/sluice-proxy/sluice/internal/config"
)

// UserAgent names sluice's probes in backends' logs.
var UserAgent = "sluice-health-check/1"

// Target is one backend of one route to probe.
type Target struct {
	Route   string
	Backend *backend.Backend
	Config  config.ActiveHealth
}

// Active runs one prober goroutine per target. Each probes its backend at
// the configured interval with ±10% jitter, independent of the others, so
// one hanging backend delays nobody else.
type Active struct {
	events Events
	client *http.Client

	mu      sync.Mutex
	probers map[proberKey]*prober
	// named are the clients of discovered https backends, by TLS server
	// name: their URLs hold an address, and the name is the configured one.
	named map[string]*http.Client
	wg    sync.WaitGroup
}

type proberKey struct {
	route string
	b     *backend.Backend
	cfg   string
}

type prober struct {
	Target
	cancel context.CancelFunc
}

// NewActive returns an Active with no targets.
func NewActive(events Events) *Active {
	return &Active{events: events, client: newClient(""), probers: map[proberKey]*prober{}, named: map[string]*http.Client{}}
}

// newClient returns a probe client; an https probe checks the certificate
// for serverName and sends it as SNI ("" for the URL's host).
func newClient(serverName string) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	if serverName != "" {
		tr.TLSClientConfig = &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// clientFor returns the client that probes b: the shared one, or for a
// discovered https backend the one of its server name.
func (a *Active) clientFor(b *backend.Backend) *http.Client {
	if b.ServerName == "" || !strings.HasPrefix(b.Origin, "https://") {
		return a.client
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.named[b.ServerName]
	if c == nil {
		c = newClient(b.ServerName)
		a.named[b.ServerName] = c
	}
	return c
}

// Sync makes the running probers those of targets: probers of targets that
// remain keep running (and their counts), new ones start, and those of
// removed targets stop. Targets with an empty path are not probed; one
// whose checks this turns off, and which they had marked unhealthy, is
// healthy again, since no check will ever pass to bring it back.
func (a *Active) Sync(targets []Target) {
	want := map[proberKey]Target{}
	var off []Target
	for _, t := range targets {
		if t.Config.Path == "" {
			off = append(off, t)
			continue
		}
		want[proberKey{t.Route, t.Backend, fmt.Sprintf("%+v", t.Config)}] = t
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(off) > 0 {
		probed := map[routeBackend]bool{}
		for k := range a.probers {
			probed[routeBackend{k.route, k.b}] = true
		}
		for _, t := range off {
			const reason = "active checks turned off"
			if probed[routeBackend{t.Route, t.Backend}] && t.Backend.State() == backend.Unhealthy &&
				t.Backend.SetState(backend.Healthy, time.Now(), reason) {
				a.events.Transition(t.Route, t.Backend, backend.Unhealthy, backend.Healthy, reason)
			}
		}
	}
	for k, p := range a.probers {
		if _, ok := want[k]; !ok {
			p.cancel()
			delete(a.probers, k)
		}
	}
	for name, c := range a.named {
		used := false
		for k := range want {
			used = used || k.b.ServerName == name
		}
		if !used {
			c.CloseIdleConnections()
			delete(a.named, name)
		}
	}
	for k, t := range want {
		if _, ok := a.probers[k]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		p := &prober{Target: t, cancel: cancel}
		a.probers[k] = p
		a.wg.Add(1)
		go a.run(ctx, p)
	}
}

// routeBackend is a backend in one route, whatever its checks' settings.
type routeBackend struct {
	route string
	b     *backend.Backend
}

// Stop stops every prober and waits for them to return.
func (a *Active) Stop() {
	a.Sync(nil)
	a.wg.Wait()
	a.client.CloseIdleConnections()
}

// run is one prober's loop.
func (a *Active) run(ctx context.Context, p *prober) {
	defer a.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			// A probe must never take the process down.
			a.events.Transition(p.Route, p.Backend, p.Backend.State(), p.Backend.State(), fmt.Sprintf("health prober stopped after a panic: %v", r))
		}
	}()
	cfg := p.Config
	passes, fails := 0, 0
	timer := time.NewTimer(jitter(cfg.Interval.D()) / 2)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := a.probe(ctx, p)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			passes, fails = passes+1, 0
			if passes >= cfg.HealthyThreshold && p.Backend.State() == backend.Unhealthy {
				reason := fmt.Sprintf("active check passed %d times", passes)
				if p.Backend.SetState(backend.Healthy, time.Now(), reason) {
					a.events.Transition(p.Route, p.Backend, backend.Unhealthy, backend.Healthy, reason)
				}
			}
		} else {
			passes, fails = 0, fails+1
			if fails >= cfg.UnhealthyThreshold {
				from := p.Backend.State()
				reason := fmt.Sprintf("active check failed %d times: %s", fails, describe(err))
				if from != backend.Unhealthy && p.Backend.SetState(backend.Unhealthy, time.Now(), reason) {
					a.events.Transition(p.Route, p.Backend, from, backend.Unhealthy, reason)
				}
			}
		}
		timer.Reset(jitter(cfg.Interval.D()))
	}
}

// jitter returns d ±10%.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// errStatus is a probe answered with an unexpected status.
type errStatus int

func (e errStatus) Error() string { return fmt.Sprintf("status %d", int(e)) }

// probe sends one check and returns nil when it passed.
func (a *Active) probe(ctx context.Context, p *prober) error {
	ctx, cancel := context.WithTimeout(ctx, p.Config.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Backend.Origin+p.Config.Path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", UserAgent)
	if p.Backend.ServerName != "" {
		req.Host = p.Backend.ServerName // the name the backend was found under
	}
	resp, err := a.clientFor(p.Backend).Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !p.Config.ExpectStatus.Contains(resp.StatusCode) {
		return errStatus(resp.StatusCode)
	}
	return nil
}

// describe gives a probe failure in a few words.
func describe(err error) string {
	var st errStatus
	switch {
	case errors.As(err, &st):
		return st.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}
