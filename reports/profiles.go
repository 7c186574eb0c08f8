package reports

import (
	"cmp"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/pprof/profile"
)

// ProfileSummary is where a row's Go proxies spent their CPU, and what
// they allocated, over its trials' windows (run --profile).
type ProfileSummary struct {
	Key string `json:"key"`
	// Profiles is how many proxy CPU profiles were read; Seconds, the
	// time they cover (summed); CPUSeconds, the CPU time they sampled.
	Profiles   int     `json:"profiles"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpuSeconds"`
	// Shares of the sampled CPU by what a stack was doing (each stack
	// counted once, in this order): garbage collection (background
	// marking and sweeping, and the assists allocating goroutines make),
	// system calls, cryptography (TLS records), allocation, and the
	// scheduler; the rest is the proxy's own code and the libraries'.
	Shares []Share `json:"shares"`
	// Top is the functions with the most CPU of their own (flat).
	Top []Share `json:"top"`
	// AllocsPerRequest is the heap allocations per request at each
	// proxy: the window's allocations (the heap profiles' difference;
	// sampled by the runtime, so an estimate) over the trial's requests
	// and its proxies. TopAllocs is where they were made (flat).
	AllocsPerRequest float64 `json:"allocsPerRequest,omitempty"`
	TopAllocs        []Share `json:"topAllocs,omitempty"`
	// HeapInUseMB is the mean over proxies of the heap in use as the
	// profiles ended.
	HeapInUseMB float64  `json:"heapInUseMB,omitempty"`
	Errors      []string `json:"errors,omitempty"`
	flame       *frame
}

// Share is a part of a whole, by name.
type Share struct {
	Name     string  `json:"name"`
	Fraction float64 `json:"fraction"`
}

// frame is a node of the flame graph: a function in a call path.
type frame struct {
	name     string
	value    int64
	children []*frame
}

func (f *frame) child(name string) *frame {
	for _, c := range f.children {
		if c.name == name {
			return c
		}
	}
	c := &frame{name: name}
	f.children = append(f.children, c)
	return c
}

// The categories of Shares, each with the functions that put a stack in
// it (a stack holding any of them, by prefix).
var cpuCategories = []struct {
	name  string
	funcs []string
}{
	{"garbage collection", []string{"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.GC"}},
	{"system calls", []string{"syscall.", "internal/runtime/syscall", "runtime/internal/syscall", "internal/poll.(*FD).Read", "internal/poll.(*FD).Write"}},
	{"cryptography", []string{"crypto/"}},
	{"allocation", []string{"runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.makemap"}},
	{"scheduler", []string{"runtime.schedule", "runtime.findRunnable", "runtime.mcall", "runtime.netpoll"}},
}

// LoadProfiles reads the proxies' profiles of every trial that has them
// from the results directory, for the reports.
func (r *Report) LoadProfiles(dir string) { r.Profiles = SummarizeProfiles(dir, r.groups) }

// SummarizeProfiles summarizes the proxies' profiles of each group's
// trials, read from the results directory; groups without any are left
// out.
func SummarizeProfiles(dir string, groups []*Group) []*ProfileSummary {
	var out []*ProfileSummary
	for _, g := range groups {
		var s *ProfileSummary
		var allocs float64
		var requests, heaps int64
		var allocProfiles []*profile.Profile
		for _, t := range g.Trials {
			for _, p := range t.Profiles {
				if s == nil {
					s = &ProfileSummary{Key: g.Key(), flame: &frame{name: "all"}}
				}
				if p.Error != "" {
					s.Errors = append(s.Errors, fmt.Sprintf("trial %d, %s: %s", t.Trial, p.Proxy, p.Error))
				}
				tdir := filepath.Join(dir, t.Dir())
				if p.CPU != "" {
					if cpu, err := readProfile(filepath.Join(tdir, p.CPU)); err != nil {
						s.Errors = append(s.Errors, err.Error())
					} else {
						s.addCPU(cpu)
						s.Seconds += float64(p.Seconds)
					}
				}
				if p.HeapStart == "" || p.Heap == "" {
					continue
				}
				start, err := readProfile(filepath.Join(tdir, p.HeapStart))
				if err != nil {
					s.Errors = append(s.Errors, err.Error())
					continue
				}
				end, err := readProfile(filepath.Join(tdir, p.Heap))
				if err != nil {
					s.Errors = append(s.Errors, err.Error())
					continue
				}
				start.Scale(-1)
				diff, err := profile.Merge([]*profile.Profile{end, start})
				if err != nil {
					s.Errors = append(s.Errors, fmt.Sprintf("trial %d, %s: heap profiles: %v", t.Trial, p.Proxy, err))
					continue
				}
				allocs += float64(total(diff, "alloc_objects"))
				requests += t.Requests
				allocProfiles = append(allocProfiles, diff)
				s.HeapInUseMB += float64(total(end, "inuse_space")) / (1 << 20)
				heaps++
			}
		}
		if s == nil {
			continue
		}
		if heaps > 0 {
			s.HeapInUseMB /= float64(heaps)
			if requests > 0 {
				// requests summed once per proxy: per request per proxy.
				s.AllocsPerRequest = allocs / float64(requests)
			}
			s.TopAllocs = flatTop(allocProfiles, "alloc_objects", 8)
		}
		s.finish()
		out = append(out, s)
	}
	return out
}

func readProfile(path string) (*profile.Profile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// sampleIndex is the index of a sample type (e.g. "cpu"), or -1.
func sampleIndex(p *profile.Profile, typ string) int {
	for i, st := range p.SampleType {
		if st.Type == typ {
			return i
		}
	}
	return -1
}

// total sums a sample type over a profile.
func total(p *profile.Profile, typ string) int64 {
	i := sampleIndex(p, typ)
	if i < 0 {
		return 0
	}
	var n int64
	for _, s := range p.Sample {
		n += s.Value[i]
	}
	return n
}

// stack is a sample's functions, outermost first (inlined calls as their
// own frames).
func stack(s *profile.Sample) []string {
	var out []string
	for i := len(s.Location) - 1; i >= 0; i-- {
		lines := s.Location[i].Line
		for j := len(lines) - 1; j >= 0; j-- {
			if fn := lines[j].Function; fn != nil {
				out = append(out, fn.Name)
			}
		}
	}
	return out
}

// addCPU adds a CPU profile's samples (nanoseconds) to the summary.
func (s *ProfileSummary) addCPU(p *profile.Profile) {
	i := sampleIndex(p, "cpu")
	if i < 0 {
		return
	}
	s.Profiles++
	if s.Shares == nil {
		for _, c := range cpuCategories {
			s.Shares = append(s.Shares, Share{Name: c.name})
		}
		s.Shares = append(s.Shares, Share{Name: "other"})
	}
	flat := map[string]float64{}
	for _, smp := range p.Sample {
		v := smp.Value[i]
		st := stack(smp)
		f := s.flame
		f.value += v
		for _, name := range st {
			f = f.child(name)
			f.value += v
		}
		if len(st) > 0 {
			flat[st[len(st)-1]] += float64(v)
		}
		s.Shares[category(st)].Fraction += float64(v) // nanoseconds until finish
	}
	for name, v := range flat {
		s.addTop(name, v)
	}
}

// addTop accumulates flat CPU nanoseconds by function (fractions once
// finished).
func (s *ProfileSummary) addTop(name string, v float64) {
	for i := range s.Top {
		if s.Top[i].Name == name {
			s.Top[i].Fraction += v
			return
		}
	}
	s.Top = append(s.Top, Share{Name: name, Fraction: v})
}

// category is the index in Shares of a stack's category.
func category(st []string) int {
	for i, c := range cpuCategories {
		for _, fn := range st {
			for _, prefix := range c.funcs {
				if strings.HasPrefix(fn, prefix) {
					return i
				}
			}
		}
	}
	return len(cpuCategories)
}

// finish turns nanoseconds into fractions and keeps the top ten.
func (s *ProfileSummary) finish() {
	all := float64(s.flame.value)
	s.CPUSeconds = all / 1e9
	if all == 0 {
		s.Top = nil
		return
	}
	for i := range s.Shares {
		s.Shares[i].Fraction /= all
	}
	for i := range s.Top {
		s.Top[i].Fraction /= all
	}
	slices.SortFunc(s.Top, func(a, b Share) int { return cmp.Compare(b.Fraction, a.Fraction) })
	s.Top = s.Top[:min(10, len(s.Top))]
}

// flatTop is the n functions with the most of a sample type of their own
// over profiles, as fractions of its total.
func flatTop(ps []*profile.Profile, typ string, n int) []Share {
	by := map[string]float64{}
	var all float64
	for _, p := range ps {
		i := sampleIndex(p, typ)
		if i < 0 {
			continue
		}
		for _, smp := range p.Sample {
			st := stack(smp)
			if len(st) == 0 {
				continue
			}
			by[st[len(st)-1]] += float64(smp.Value[i])
			all += float64(smp.Value[i])
		}
	}
	var out []Share
	for name, v := range by {
		if all > 0 && v > 0 {
			out = append(out, Share{Name: name, Fraction: v / all})
		}
	}
	slices.SortFunc(out, func(a, b Share) int { return cmp.Compare(b.Fraction, a.Fraction) })
	return out[:min(n, len(out))]
}

// WriteProfilesText writes each row's profile summary.
func WriteProfilesText(w io.Writer, summaries []*ProfileSummary) {
	if len(summaries) == 0 {
		return
	}
	fmt.Fprintln(w, "\nWhere the meshbench proxies' CPU went (run --profile; Go profiles over each trial's window):")
	for _, s := range summaries {
		fmt.Fprintf(w, "  %s: %d profiles, %.2f CPU-s sampled over %.0f proxy-s", s.Key, s.Profiles, s.CPUSeconds, s.Seconds)
		if s.AllocsPerRequest > 0 {
			fmt.Fprintf(w, "; %.0f allocations per request per proxy; heap in use %.1f MB", s.AllocsPerRequest, s.HeapInUseMB)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "    %s\n", sharesText(s.Shares))
		if len(s.Top) > 0 {
			fmt.Fprintf(w, "    top (own CPU): %s\n", sharesText(s.Top[:min(5, len(s.Top))]))
		}
		if len(s.TopAllocs) > 0 {
			fmt.Fprintf(w, "    top (allocations): %s\n", sharesText(s.TopAllocs[:min(5, len(s.TopAllocs))]))
		}
		for _, e := range s.Errors {
			fmt.Fprintf(w, "    missing: %s\n", e)
		}
	}
}

func sharesText(ss []Share) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = fmt.Sprintf("%s %.1f%%", s.Name, s.Fraction*100)
	}
	return strings.Join(parts, ", ")
}

// writeProfilesHTML writes each row's summary and CPU flame graph.
func (r *Report) writeProfilesHTML(b *strings.Builder) {
	if len(r.Profiles) == 0 {
		return
	}
	b.WriteString("<h2>Where the proxies' CPU went</h2>\n<p class=\"note\">Go CPU profiles of the meshbench proxies over each trial's window (run --profile; 100 samples a second), merged per row. Each bar is a function, its width its share of the row's sampled CPU, its callees below it; hover for figures. Allocations per request are the window's heap allocations (the difference of heap profiles taken, after a forced collection, at its start and end; sampled by the runtime) over the trial's requests, per proxy. HAProxy and nginx are not Go programs: they have no such profiles.</p>\n")
	for _, s := range r.Profiles {
		fmt.Fprintf(b, "<h3>%s</h3>\n<p>%d profiles, %.2f CPU-seconds sampled over %.0f proxy-seconds", html.EscapeString(s.Key), s.Profiles, s.CPUSeconds, s.Seconds)
		if s.AllocsPerRequest > 0 {
			fmt.Fprintf(b, "; %.0f allocations per request per proxy; heap in use %.1f MB", s.AllocsPerRequest, s.HeapInUseMB)
		}
		fmt.Fprintf(b, ".<br>%s</p>\n", html.EscapeString(sharesText(s.Shares)))
		if len(s.Top) > 0 {
			fmt.Fprintf(b, "<p class=\"note\">Most CPU of their own: %s</p>\n", html.EscapeString(sharesText(s.Top)))
		}
		if len(s.TopAllocs) > 0 {
			fmt.Fprintf(b, "<p class=\"note\">Most allocations: %s</p>\n", html.EscapeString(sharesText(s.TopAllocs)))
		}
		b.WriteString(flameSVG(s.flame))
		for _, e := range s.Errors {
			fmt.Fprintf(b, "<p class=\"note\">missing: %s</p>\n", html.EscapeString(e))
		}
	}
}

// flameSVG draws a flame graph, root on top (an icicle): frames narrower
// than a pixel are left out.
func flameSVG(root *frame) string {
	const width, row = 1200.0, 16.0
	if root == nil || root.value == 0 {
		return ""
	}
	var rects strings.Builder
	depth := 0
	var draw func(f *frame, x float64, d int)
	draw = func(f *frame, x float64, d int) {
		w := float64(f.value) / float64(root.value) * width
		if w < 1 {
			return
		}
		depth = max(depth, d+1)
		y := float64(d) * row
		pct := float64(f.value) / float64(root.value) * 100
		label := ""
		if w > 40 {
			// About 6.5 px a character at 11 px.
			label = f.name
			if n := int(w / 6.5); len(label) > n {
				label = label[:max(0, n-1)] + "…"
			}
		}
		fmt.Fprintf(&rects, "<g><title>%s: %.2f%% (%.0f ms)</title><rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"0.5\"/>",
			html.EscapeString(f.name), pct, float64(f.value)/1e6, x, y, w, row-1, flameColour(f.name))
		if label != "" {
			fmt.Fprintf(&rects, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\">%s</text>", x+3, y+row-4, html.EscapeString(label))
		}
		rects.WriteString("</g>\n")
		children := slices.Clone(f.children)
		slices.SortFunc(children, func(a, b *frame) int { return strings.Compare(a.name, b.name) })
		cx := x
		for _, c := range children {
			draw(c, cx, d+1)
			cx += float64(c.value) / float64(root.value) * width
		}
	}
	draw(root, 0, 0)
	return fmt.Sprintf("<div class=\"scroll\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"monospace\">\n%s</svg></div>\n",
		width, float64(depth)*row, width, float64(depth)*row, rects.String())
}

// flameColour is a frame's colour by what it is: the runtime grey, the
// standard library blue, meshbench orange, other modules green.
func flameColour(name string) string {
	switch {
	case strings.HasPrefix(name, "runtime.") || strings.HasPrefix(name, "internal/runtime"):
		return "#d0d0d0"
	case strings.HasPrefix(name, "github.com/meshbench/"):
		return "#f0a050"
	case strings.Contains(strings.SplitN(name, "/", 2)[0], "."):
		return "#90c890"
	default:
		return "#9cc0e0"
	}
}
