package proxy

import (
	"net"
	"net/netip"
	"slices"
)

// parseRange reads a source range: a prefix, or an address (the prefix
// of it alone).
func parseRange(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

// sourceFilter passes on the connections of the listener below it that
// come from one of its ranges, and closes the others (counting them).
type sourceFilter struct {
	net.Listener
	ranges  []netip.Prefix
	refused func()
}

// filterSources wraps ln when the listener has source ranges (which
// Validate checked).
func (l *listener) filterSources(ln net.Listener) net.Listener {
	if len(l.cfg.SourceRanges) == 0 {
		return ln
	}
	f := &sourceFilter{Listener: ln, refused: func() { l.stats.refused.Add(1) }}
	for _, s := range l.cfg.SourceRanges {
		r, _ := parseRange(s)
		f.ranges = append(f.ranges, r)
	}
	return f
}

func (f *sourceFilter) Accept() (net.Conn, error) {
	for {
		c, err := f.Listener.Accept()
		if err != nil || f.admits(c.RemoteAddr()) {
			return c, err
		}
		c.Close()
		f.refused()
	}
}

func (f *sourceFilter) admits(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ip := ta.AddrPort().Addr().Unmap()
	return slices.ContainsFunc(f.ranges, func(r netip.Prefix) bool { return r.Contains(ip) })
}
