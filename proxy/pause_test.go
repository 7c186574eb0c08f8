package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestEarlyAnswerToAPausedUpload: the upstream answers after the first
// bytes of an upload whose client then pauses (a streaming upload, a gRPC
// stream whose server ends first). The client gets the answer while it
// still holds the body open, over HTTP/1.1 and HTTP/2; the proxy never
// waits for the rest of a body nobody will read.
func TestEarlyAnswerToAPausedUpload(t *testing.T) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Connection: close, or Go's server would wait for the rest of
		// the body (to keep the connection) before answering.
		w.Header().Set("Connection", "close")
		io.WriteString(w, "ok "+string(buf))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	_, addr := startProxy(t, oneRoute(ln.Addr().String()))

	// The pause outlasts the wait for the answer many times over: an
	// answer that waits for the rest of the body does not come at all.
	const answerWithin = 20 * time.Second

	t.Run("http1", func(t *testing.T) {
		skipOnFastHTTP(t, "it reads a request body whole before sending it on (fast.go), so an upload that pauses is answered at the header timeout, not by the upstream")
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(answerWithin))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer while the upload paused: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok hello" {
			t.Errorf("answer %d %q", resp.StatusCode, body)
		}
		// The rest of the body would be read as requests: the proxy
		// closes the connection, and does not wait for the client first.
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after the answer: read %d bytes, %v; want the connection closed", n, err)
		}
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a)
		}}
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		defer pw.Close()
		go io.WriteString(pw, "hello") // and nothing more until the test ends
		ctx, cancel := context.WithTimeout(context.Background(), answerWithin)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/up", pr)
		req.Host = "x"
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("no answer while the upload paused: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "ok hello") {
			t.Errorf("answer %d %q", resp.StatusCode, body)
		}
	})
}
