package local

import (
	"net/netip"
	"slices"
	"testing"
)

func TestListeningPorts(t *testing.T) {
	// /proc/net/tcp then tcp6, as a node's namespace shows them: the
	// node's address is 10.213.0.2 (0200D50A in host byte order).
	procNet := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0200D50A:3A98 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0300D50A:3A9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0200D50A:3A98 0100D50A:C350 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
   4: 00000000:3A9F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000200D50A:3AA0 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 8 1 0000000000000000 100 0 0 10 0
`
	got := listeningPorts(procNet, netip.MustParseAddr("10.213.0.2"))
	// 8080 on 127.0.0.1 and 8081 on ::1 are not reachable from outside,
	// 15006 on another address is not the node's, the established
	// socket is not listening; 8080 on :: is, as are 15000, 15007 and the
	// v4-mapped 15008.
	want := []int{8080, 15000, 15007, 15008}
	if !slices.Equal(got, want) {
		t.Errorf("listening ports %v, want %v", got, want)
	}
}
