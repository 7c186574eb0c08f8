package proxy

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// clientFrom is an HTTP client whose connections come from the local
// address ip (any of 127.0.0.0/8 is loopback's on Linux), one connection
// per request.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// A listener with source ranges serves the connections from them and
// closes any other before reading a byte, on HTTP and TCP listeners
// alike; an update that drops the ranges serves everyone.
func TestSourceRanges(t *testing.T) {
	up := upstream(t, 200, 0)
	cfg := clusterOf(func(c *Config) {
		c.Listeners[0].SourceRanges = []string{"127.0.0.2", "127.0.1.0/24"}
		c.Listeners = append(c.Listeners, Listener{Name: "raw", Address: "127.0.0.1:0", Direction: Inbound,
			TCPCluster: "c", SourceRanges: []string{"127.0.0.2/32"}})
	}, up)
	p, _ := startProxy(t, cfg)
	for _, ln := range []string{"l", "raw"} {
		for _, c := range []struct {
			from string
			ok   bool
		}{{"127.0.0.2", true}, {"127.0.1.9", ln == "l"}, {"127.0.0.1", false}, {"127.0.0.3", false}} {
			resp, err := clientFrom(c.from).Get("http://" + p.Addr(ln) + "/")
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			switch {
			case c.ok && (err != nil || resp.StatusCode != 200):
				t.Errorf("%s from %s: %v, want 200", ln, c.from, err)
			case !c.ok && err == nil:
				t.Errorf("%s from %s: %d, want the connection closed", ln, c.from, resp.StatusCode)
			}
		}
	}
	st := p.Stats().Listeners
	if st["l"].Refused != 2 || st["raw"].Refused != 3 || up.n.Load() != 3 {
		t.Errorf("refused l %d (want 2), raw %d (want 3); upstream saw %d (want 3)", st["l"].Refused, st["raw"].Refused, up.n.Load())
	}

	// Without ranges, from anywhere.
	cfg.Listeners[0].SourceRanges = nil
	cfg.Listeners[0].Address = "127.0.0.1:0" // as bound: the same socket
	if err := p.Update(cfg, "2", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := clientFrom("127.0.0.3").Get("http://" + p.Addr("l") + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("l from 127.0.0.3 after the update: %v", err)
	}
	resp.Body.Close()
}

// Source ranges are checked when the configuration is: a bad one, or one
// on an internal listener (whose connections have no address), is refused.
func TestSourceRangesValidate(t *testing.T) {
	for _, c := range []struct {
		ranges   []string
		internal bool
		want     string
	}{
		{[]string{"10.0.0.0/33"}, false, `listeners[0] "l": sourceRanges: netip.ParsePrefix("10.0.0.0/33")`},
		{[]string{"pod-a"}, false, `sourceRanges: netip.ParsePrefix("pod-a")`},
		{[]string{"10.0.0.1"}, true, "an internal listener's connections have no source address"},
		{[]string{"fe80::1%eth0"}, false, `"fe80::1%eth0": a range has no zone`},
		{[]string{"::ffff:10.0.0.0/64"}, false, "an IPv4-mapped range needs at least 96 bits"},
	} {
		cfg := clusterOf(nil)
		cfg.Listeners[0].SourceRanges = c.ranges
		if c.internal {
			cfg.Listeners[0].Internal = true
		} else {
			cfg.Listeners[0].Address = "127.0.0.1:0"
		}
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ranges %q: %v, want %q", c.ranges, err, c.want)
		}
	}
}

// An IPv4-mapped range is the IPv4 one: the peers' addresses it is
// compared with are unmapped.
func TestParseRange(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.7": "10.0.0.7/32", "::ffff:10.0.0.7": "10.0.0.7/32",
		"::ffff:10.0.0.0/120": "10.0.0.0/24", "10.0.0.9/24": "10.0.0.0/24", "fd00::7": "fd00::7/128"} {
		if got, err := parseRange(in); err != nil || got.String() != want {
			t.Errorf("parseRange(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
}
