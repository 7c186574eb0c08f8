package workload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"fortio.org/fortio/periodic"
	"fortio.org/fortio/tcprunner"
)

// serveTCP echoes every connection's bytes back until the client closes
// it (fortio's TCP load writes one payload per request and reads it
// back), counting requests as echo says. When ctx ends it stops
// accepting, gives open connections up to drainTimeout, then closes them.
func serveTCP(ctx context.Context, ln net.Listener, c *caller, size int) error {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			conns[conn] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(conns, conn)
					mu.Unlock()
					conn.Close()
				}()
				echo(conn, c, size)
			})
		}
	}()
	var acceptErr error
	select {
	case acceptErr = <-errc:
	case <-ctx.Done():
		ln.Close()
		// The accept loop has ended (no connection is added after this)
		// before the wait begins.
		acceptErr = <-errc
	}
	ln.Close()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainTimeout):
		mu.Lock()
		for conn := range conns {
			conn.Close()
		}
		mu.Unlock()
		<-done
	}
	if acceptErr != nil && !errors.Is(acceptErr, net.ErrClosed) {
		return acceptErr
	}
	return nil
}

// echo writes back what it reads. With size set (the load's payload),
// each payload read whole is one request: one count, one service time,
// one write. Without it each read counts, and a payload split over
// segments counts more than once.
func echo(conn net.Conn, c *caller, size int) {
	buf := make([]byte, max(size, 32<<10))
	for {
		var n int
		var err error
		if size > 0 {
			n, err = io.ReadFull(conn, buf[:size])
		} else {
			n, err = conn.Read(buf)
		}
		if n > 0 && (size == 0 || n == size) {
			if serr := c.serve(context.Background()); serr != nil {
				return
			}
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil { // io.EOF: the client is done
			return
		}
	}
}

// TCPPayloadSize is the size of a TCP load request's payload: the
// request size, or fortio's generated payload when that is 0.
func TCPPayloadSize(requestSize int) int {
	if requestSize > 0 {
		return requestSize
	}
	return len(tcprunner.GeneratePayload(0, 0))
}

// TCPResult is a TCP load run's result: fortio's tcprunner figures, whose
// RetCodes count "OK" and each error.
type TCPResult = tcprunner.RunnerResults

// runTCP drives fortio's TCP echo runner: one connection per fortio
// connection, each writing the request payload and reading it back.
func runTCP(o LoadOptions, ro periodic.RunnerOptions) (*TCPResult, error) {
	addr, err := hostPort(o.URL)
	if err != nil {
		return nil, err
	}
	to := tcprunner.RunnerOptions{RunnerOptions: ro}
	to.Destination = tcprunner.TCPURLPrefix + addr
	to.ReqTimeout = requestTimeout
	if o.RequestSize > 0 {
		to.Payload = make([]byte, o.RequestSize)
		for i := range to.Payload {
			to.Payload[i] = 'm'
		}
	}
	res, err := tcprunner.RunTCPTest(&to)
	if err != nil {
		return nil, fmt.Errorf("tcp load: %w", err)
	}
	return res, nil
}
