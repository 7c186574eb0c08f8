package proxy

import (
	"fmt"
	"os"
)

// The package's tests run on net/http; with MESHBENCH_TEST_HTTP1=fasthttp
// (a second pass of `make test`) every proxy they start serves its
// HTTP/1.1 listeners on the fasthttp engine wherever it can.
func init() {
	switch e := os.Getenv("MESHBENCH_TEST_HTTP1"); e {
	case "", EngineNetHTTP:
	case EngineFastHTTP:
		defaultFastHTTP = true
		fmt.Fprintln(os.Stderr, "proxy tests: HTTP/1.1 listeners on the fasthttp engine")
	default:
		panic(ValidEngine(e))
	}
}

// skipOnFastHTTP skips a test of what the fasthttp engine does not do, on
// the pass that runs it, saying why.
func skipOnFastHTTP(t interface{ Skipf(string, ...any) }, why string) {
	if defaultFastHTTP {
		t.Skipf("on the fasthttp engine: %s", why)
	}
}
