package proxy

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The HTTP/1.1 desync set: smuggling classes (CL.TE, TE.CL, TE.TE
// obfuscations, duplicate and invalid Content-Length, body errors,
// pipelining, request targets) sent on raw sockets to the proxy and, as the
// reference, to HAProxy in front of the same kind of upstream. What each
// did is a table in testdata/desync.md, which the README's hardening
// section shows; a difference from HAProxy carries its reason there.
// (Early upstream responses depend on timing and have their own test.)

var updateDesync = flag.Bool("update-desync", false, "rewrite testdata/desync.md from this run")

type desyncCase struct {
	class, name string
	// payload is sent as is, followed by the sentinel request.
	payload string
	// why explains how and why meshbench's outcome differs from
	// HAProxy's; what each did is in testdata/desync.md.
	why string
	// whyFast, when set, is why on the fasthttp engine (whose table is
	// testdata/desync-fasthttp.md); "" there means no difference.
	whyFast *string
}

// reason is the case's why on the engine the tests run on.
func (c desyncCase) reason() string {
	if defaultFastHTTP && c.whyFast != nil {
		return *c.whyFast
	}
	return c.why
}

// noDifference is whyFast for a case where only net/http differs.
var noDifference = new(string)

func onFastHTTP(why string) *string { return &why }

// desyncOutcome is what the client saw (responses, in order; "/sentinel" last
// means the connection was still in step) and what the upstream handled
// to its end. A request the upstream saw cut short (its body failed at
// the proxy) is left out: whether the head got out before the body failed
// is a matter of timing, for the proxy's transport (smuggling_test.go
// bounds what it sends).
func desyncOutcome(resps []wireResponse, handled []string) string {
	handled = slices.DeleteFunc(slices.Clone(handled), func(h string) bool { return strings.Contains(h, "(body error:") })
	var rs []string
	for _, r := range resps {
		rs = append(rs, r.String())
	}
	client := strings.Join(rs, ", ")
	if client == "" {
		client = "none"
	}
	if len(resps) == 0 || resps[len(resps)-1].path != "/sentinel" {
		client += ", closed"
	}
	up := strings.Join(handled, "; ")
	if up == "" {
		up = "nothing"
	}
	return client + " | " + up
}

func chunk(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }

// Reasons for the differences from HAProxy.
const (
	whyUnknownCoding = "Both refuse and close. Go's net/http answers a transfer coding it does not implement with 501, as RFC 9112 section 6.1 recommends; HAProxy answers 4xx."
)

const (
	h11   = " HTTP/1.1\r\nHost: x\r\n"
	hello = "5\r\nhello\r\n0\r\n\r\n"
)

var desyncCases = []desyncCase{
	{class: "CL.TE", name: "Content-Length then Transfer-Encoding, a byte past the chunked end",
		payload: "POST /a" + h11 + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"},
	{class: "TE.CL", name: "Transfer-Encoding then Content-Length, a request in the chunk",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunk(smuggled) + "0\r\n\r\n"},
	{class: "TE.TE", name: "Transfer-Encoding: xchunked, with Content-Length",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nTransfer-Encoding: xchunked\r\n\r\n" + hello,
		why:     whyUnknownCoding, whyFast: noDifference},
	{class: "TE.TE", name: "Transfer-Encoding: chunked, identity",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nTransfer-Encoding: chunked, identity\r\n\r\n" + hello,
		why:     whyUnknownCoding, whyFast: noDifference},
	{class: "TE.TE", name: "Transfer-Encoding: identity, chunked",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nTransfer-Encoding: identity, chunked\r\n\r\n" + hello,
		why:     whyUnknownCoding, whyFast: onFastHTTP("Both refuse and close: fasthttp answers a transfer coding it does not implement with 400, HAProxy this list with 422.")},
	{class: "TE.TE", name: "space before the colon",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nTransfer-Encoding : chunked\r\n\r\n" + hello},
	{class: "TE.TE", name: "two Transfer-Encoding fields",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n" + hello,
		why:     whyUnknownCoding, whyFast: noDifference},
	{class: "TE.TE", name: "tab before the value",
		payload: "POST /a" + h11 + "Transfer-Encoding:\tchunked\r\n\r\n" + hello},
	{class: "TE.TE", name: "upper-case value",
		payload: "POST /a" + h11 + "Transfer-Encoding: CHUNKED\r\n\r\n" + hello},
	{class: "TE.TE", name: "value folded onto a second line (obs-fold)",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nTransfer-Encoding:\r\n chunked\r\n\r\n" + hello,
		whyFast: onFastHTTP("Both close. meshbench on fasthttp refuses it and forwards nothing: the field's line names no coding (its value is on the continuation line), and RFC 9112 section 5.2 lets a server refuse obs-fold; HAProxy unfolds it.")},
	{class: "TE.TE", name: "field folded into the previous one",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nX-A: b\r\n Transfer-Encoding: chunked\r\n\r\n" + hello},
	{class: "TE.TE", name: "HTTP/1.0 with Transfer-Encoding and keep-alive",
		payload: "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(smuggled) + "0\r\n\r\n",
		why:     "Both close. RFC 9112 section 6.1 calls an HTTP/1.0 message with Transfer-Encoding faulty: meshbench refuses it and forwards nothing; HAProxy forwards it without a body."},
	{class: "CL", name: "two different Content-Length fields",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
	{class: "CL", name: "two equal Content-Length fields",
		payload: "POST /a" + h11 + "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		whyFast: onFastHTTP("meshbench on fasthttp is stricter: fasthttp refuses a repeated Content-Length field; RFC 9110 section 8.6 lets a recipient take identical values as one, as HAProxy (and net/http) do. Neither misframes.")},
	{class: "CL", name: "Content-Length: 5, 5",
		payload: "POST /a" + h11 + "Content-Length: 5, 5\r\n\r\nhello",
		why:     "meshbench is stricter: Go's net/http refuses a Content-Length list; RFC 9110 section 8.6 lets a recipient take identical values as one, as HAProxy does. Neither misframes.",
		whyFast: onFastHTTP("meshbench on fasthttp is stricter: fasthttp refuses a Content-Length list; RFC 9110 section 8.6 lets a recipient take identical values as one, as HAProxy does. Neither misframes.")},
	{class: "CL", name: "Content-Length: +5",
		payload: "POST /a" + h11 + "Content-Length: +5\r\n\r\nhello"},
	{class: "CL", name: "Content-Length: -1",
		payload: "POST /a" + h11 + "Content-Length: -1\r\n\r\nhello"},
	{class: "CL", name: "Content-Length: 0x5",
		payload: "POST /a" + h11 + "Content-Length: 0x5\r\n\r\nhello"},
	{class: "CL", name: "Content-Length with trailing space",
		payload: "POST /a" + h11 + "Content-Length: 5 \r\n\r\nhello"},
	{class: "CL", name: "GET with a Content-Length body",
		payload: "GET /a" + h11 + "Content-Length: 5\r\n\r\nhello"},
	{class: "body", name: "chunk size overflow",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n" + smuggled},
	{class: "body", name: "bare LF after a chunk size",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n5\n" + smuggled},
	{class: "body", name: "0x chunk size",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n0x5\r\n" + smuggled},
	{class: "body", name: "chunk size larger than its data",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXX" + smuggled},
	{class: "body", name: "no CRLF after chunk data",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX" + smuggled},
	{class: "body", name: "chunk extension",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\n\r\n"},
	{class: "body", name: "trailer field after the last chunk",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"},
	{class: "pipelining", name: "two GETs",
		payload: "GET /a" + h11 + "\r\nGET /b" + h11 + "\r\n"},
	{class: "pipelining", name: "a POST with a body, then a GET",
		payload: "POST /a" + h11 + "Content-Length: 5\r\n\r\nhelloGET /b" + h11 + "\r\n"},
	{class: "pipelining", name: "a chunked POST, then a GET",
		payload: "POST /a" + h11 + "Transfer-Encoding: chunked\r\n\r\n" + hello + "GET /b" + h11 + "\r\n"},
	{class: "target", name: "absolute-form with the ftp scheme",
		payload: "GET ftp://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
		why:     "meshbench proxies only http and https targets (RFC 9112 section 3.2.2); HAProxy forwards the path of any scheme."},
	{class: "target", name: "absolute-form with the http scheme",
		payload: "GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n"},
	{class: "head", name: "bare LF line endings",
		payload: "GET /a HTTP/1.1\nHost: x\n\n"},
	{class: "head", name: "no Host",
		payload: "GET /a HTTP/1.1\r\n\r\n"},
	{class: "head", name: "two Host fields",
		payload: "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
	{class: "head", name: "NUL in a field value",
		payload: "GET /a" + h11 + "X-A: a\x00b\r\n\r\n"},
	{class: "head", name: "Expect: 100-continue with the body sent at once",
		payload: "POST /a" + h11 + "Expect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"},
}

// desyncTarget is a front end for one case: start runs it in front of a
// fresh upstream and returns its address and a function that stops it
// (which ends its upstream connections).
type desyncTarget struct {
	name, version string
	start         func(t *testing.T, up *wireUpstream) (addr string, stop func())
}

func TestDesyncSet(t *testing.T) {
	targets := []desyncTarget{{name: "meshbench", start: func(t *testing.T, up *wireUpstream) (string, func()) {
		cfg := oneRoute(up.addr)
		cfg.Listeners[0].Address = "127.0.0.1:0"
		p, err := New(cfg, WithDrainTimeout(2*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		stop := runProxy(t, p)
		return p.Addr("l"), stop
	}}}
	bin, err := exec.LookPath("haproxy")
	switch {
	case err == nil:
		v, err := exec.Command(bin, "-v").Output()
		if err != nil {
			t.Fatalf("haproxy -v: %v", err)
		}
		// The table names the branch (2.6), not the build: Debian's
		// security updates change the build.
		m := regexp.MustCompile(`HAProxy version (\d+\.\d+)`).FindStringSubmatch(string(v))
		if m == nil {
			t.Fatalf("haproxy -v printed no version: %q", v)
		}
		t.Logf("reference: %s", strings.SplitN(string(v), "\n", 2)[0])
		targets = append(targets, desyncTarget{name: "haproxy", version: "HAProxy " + m[1],
			start: func(t *testing.T, up *wireUpstream) (string, func()) { return startHAProxy(t, bin, up.addr) }})
	case os.Geteuid() == 0:
		t.Fatalf("haproxy is missing although scripts/setup.sh installs it as root: %v", err)
	default:
		// The proxy's own checks still run; the comparison cannot.
		t.Log("haproxy is not installed and this is not root (scripts/setup.sh installs it as root): no reference to compare with")
	}
	got := map[string][]string{}
	for _, target := range targets {
		for _, c := range desyncCases {
			up := newWireUpstream(t)
			addr, stop := target.start(t, up)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			resps, _ := exchangeAll(t, conn, c.payload+sentinel, wireDeadline)
			stop()
			up.waitClosed(t)
			handled := up.requests()
			o := desyncOutcome(resps, handled)
			got[target.name] = append(got[target.name], o)
			for _, h := range handled {
				if target.name == "meshbench" && (strings.HasPrefix(h, "GET /smuggled ") || strings.HasPrefix(h, "GGET ")) {
					t.Errorf("%s / %s: a hidden request reached the upstream: %s", c.class, c.name, o)
				}
			}
		}
	}
	if len(targets) < 2 {
		t.Skip("the meshbench side passed; the comparison with HAProxy is skipped: haproxy is not installed (see above)")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "| class | request | meshbench | %s | why they differ |\n| --- | --- | --- | --- | --- |\n", targets[1].version)
	for i, c := range desyncCases {
		m, h := got["meshbench"][i], got["haproxy"][i]
		why := c.reason()
		if m != h && why == "" {
			t.Errorf("%s / %s: meshbench and HAProxy differ and the case says nothing of why:\n meshbench %s\n haproxy   %s", c.class, c.name, m, h)
		}
		if m == h && why != "" {
			t.Errorf("%s / %s: the case explains a difference, but both did %s", c.class, c.name, m)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", c.class, c.name, mdCell(m), mdCell(h), why)
	}
	golden := "desync.md"
	if defaultFastHTTP {
		golden = "desync-fasthttp.md"
	}
	checkGolden(t, filepath.Join("testdata", golden), b.String(), *updateDesync)
	// The README's hardening section shows the same table.
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), b.String()) {
		t.Errorf("README.md does not show testdata/%s as it is now: copy the table into its hardening section", golden)
	}
}

// mdCell makes an outcome fit a Markdown table cell.
func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", "→")
	s = strings.ReplaceAll(s, `\r\n`, "␍␊")
	return "`" + s + "`"
}

// checkGolden compares got with the file at path, or rewrites the file.
func checkGolden(t *testing.T, path, got string, update bool) {
	t.Helper()
	if update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update-desync to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from this run (-update-desync rewrites it; then copy it into the README):\n got:\n%s", path, got)
	}
}

// startHAProxy runs HAProxy in front of upstream, in HTTP mode with
// keep-alive on both sides (as meshes/haproxy renders it), and returns its
// frontend's address and a function that stops it.
func startHAProxy(t *testing.T, bin, upstream string) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
    maxconn 64
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 30s
frontend f
    bind %s
    default_backend b
backend b
    server up %s
`, addr, upstream)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() { cancel(); <-exited }
	t.Cleanup(stop)
	for deadline := time.Now().Add(wireDeadline); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, stop
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy not listening on %s after %s: %s", addr, wireDeadline, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
