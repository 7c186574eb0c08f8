package workload

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"fortio.org/fortio/periodic"
	"fortio.org/fortio/tcprunner"
)

// serveTCP echoes every connection's bytes back until the client closes
// it, counting each read as a request (fortio's TCP load writes one
// payload per request and reads it back). When ctx ends it stops
// accepting, gives open connections up to drainTimeout, then closes them.
func serveTCP(ctx context.Context, ln net.Listener, c *caller) error {
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
				echo(conn, c)
			})
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
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
	if err := <-errc; err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// echo writes back what it reads, a read at a time; each read counts as
// a request (a payload larger than one segment counts more than once).
func echo(conn net.Conn, c *caller) {
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		if n > 0 {
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
