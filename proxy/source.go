package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
)

// parseRange reads a source range: a prefix, or an address (the prefix
// of it alone). An IPv4-mapped IPv6 range is taken as the IPv4 one (the
// addresses it is compared with are unmapped); a zone is refused.
func parseRange(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: a range has no zone", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, err
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("%q: an IPv4-mapped range needs at least 96 bits", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
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
		f.refused() // first: a peer that sees the close sees the count
		c.Close()
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
