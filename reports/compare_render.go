package reports

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Policy says how an inconclusive gate ends: as itself (exit 3), as a
// pass, or as a failure.
type Policy string

// Policies for inconclusive verdicts.
const (
	InconclusiveStays Policy = "inconclusive"
	InconclusivePass  Policy = "pass"
	InconclusiveFail  Policy = "fail"
)

// Final is the gate's outcome under the policy.
func (c *Comparison) Final(p Policy) Outcome {
	if c.Outcome == Inconclusive {
		switch p {
		case InconclusivePass:
			return Pass
		case InconclusiveFail:
			return Fail
		}
	}
	if c.Outcome == NotApplicable {
		return Pass
	}
	return c.Outcome
}

func ratioText(iv Interval) string {
	if math.IsNaN(iv.Value) {
		return "-"
	}
	return fmt.Sprintf("x%.3f [%.3f, %.3f]", iv.Value, iv.Low, iv.High)
}

func (ch Change) format(iv Interval) string {
	m, _ := MetricByName(ch.Metric)
	return m.Format(iv.Value)
}

func (c *Comparison) summaryLine(p Policy) string {
	return fmt.Sprintf("Gate: %s (%d failed, %d inconclusive, %d passed; policy for inconclusive: %s)",
		strings.ToUpper(string(c.Final(p))), c.Failed, c.Inconclusive, c.Passed, p)
}

// WriteText writes the comparison as terminal tables: every metric's change
// and then every rule's verdict.
func (c *Comparison) WriteText(w io.Writer, p Policy) error {
	fmt.Fprintf(w, "base:      %s\ncandidate: %s\n\n", c.Base, c.Candidate)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MESH/MODE@RATE\tTRIALS\tMETRIC\tBASE\tCANDIDATE\tRATIO [95% CI]\tP")
	for _, r := range c.Rows {
		if len(r.Changes) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t%s\t\n", r.Key, r.trialsText(), r.Note)
			continue
		}
		for i, ch := range r.Changes {
			key, trials := "", ""
			if i == 0 {
				key, trials = r.Key, r.trialsText()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%.3f\n", key, trials, ch.Metric, ch.format(ch.Base), ch.format(ch.Candidate), ratioText(ch.Ratio), ch.P)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(c.Gate) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MESH/MODE@RATE\tRULE\tVERDICT\tDETAIL")
		for _, r := range c.Rows {
			for _, v := range r.Verdicts {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Key, v.Rule, strings.ToUpper(string(v.Outcome)), v.Detail)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(w, "\n%s\n", c.notes())
	if c.Note != "" {
		fmt.Fprintln(w, c.Note)
	}
	if len(c.Gate) > 0 {
		fmt.Fprintln(w, c.summaryLine(p))
	}
	return nil
}

func (c *Comparison) notes() string {
	head := "BASE and CANDIDATE are medians over trials. RATIO is candidate/base: the Hodges-Lehmann estimate with\n" +
		"the distribution-free interval of the Mann-Whitney test (its level can only be 90% for 3 trials a side,\n" +
		"96.8% for 5); P is that test's two-sided p-value. "
	spread := "the base run's trial-to-trial\nspread"
	if c.History != nil {
		head = "BASE is the median of the history's run values (each run's median over its trials), CANDIDATE the\n" +
			"median over the candidate's trials. RATIO is the candidate over the runs' geometric mean, with a t interval\n" +
			"whose width is the series' run-to-run spread (where an unchanged candidate's run falls 95% of the time);\n" +
			"P is that t test's two-sided p-value. "
		spread = "the history's run-to-run\nspread"
	}
	if c.Paired {
		head = "BASE and CANDIDATE are medians over trials of two builds' rows in one run. RATIO is paired by trial: the\n" +
			"Hodges-Lehmann estimate of the trials' log-ratios (candidate/base of the same trial) with the interval of\n" +
			"the Wilcoxon signed-rank test (87.5% for 4 trials, 96.1% for 8); P is that test's two-sided p-value. "
		spread = "the spread of the\ntrials' log-ratios"
	}
	return head + "A rule fails when the whole interval is beyond its limit,\n" +
		"passes when it is within, and is inconclusive when the interval straddles the limit (or when it would fail\n" +
		"on the no-mesh baseline, where only the machine or the harness can have moved). An auto limit is the change\n" +
		"within which an unchanged candidate's interval falls 99.5% of the time, given " + spread + ". \"detects\" is the smallest change the rule fails on 80% of the time with these trial counts: a pass\n" +
		"rules out a change that large, not every change (meshbench gate plan sizes a gate)."
}

// WriteMarkdown writes the comparison for a CI step summary.
func (c *Comparison) WriteMarkdown(w io.Writer, p Policy) error {
	fmt.Fprintf(w, "## meshbench compare: %s\n\n", strings.ToUpper(string(c.Final(p))))
	fmt.Fprintf(w, "Base `%s`, candidate `%s`.\n\n", c.Base, c.Candidate)
	if len(c.Gate) > 0 {
		fmt.Fprintf(w, "| Row | Rule | Verdict | Detail |\n|---|---|---|---|\n")
		for _, r := range c.Rows {
			for _, v := range r.Verdicts {
				fmt.Fprintf(w, "| %s | `%s` | %s | %s |\n", r.Key, v.Rule, mdVerdict(v.Outcome), v.Detail)
			}
			if r.Note != "" {
				fmt.Fprintf(w, "| %s | | %s | %s |\n", r.Key, mdVerdict(r.Outcome), r.Note)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "| Row | Trials | Metric | Base | Candidate | Ratio [95%% CI] | p |\n|---|---:|---|---:|---:|---:|---:|\n")
	for _, r := range c.Rows {
		for i, ch := range r.Changes {
			key, trials := "", ""
			if i == 0 {
				key, trials = r.Key, r.trialsText()
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %.3f |\n", key, trials, ch.Metric, ch.format(ch.Base), ch.format(ch.Candidate), ratioText(ch.Ratio), ch.P)
		}
	}
	fmt.Fprintf(w, "\n%s\n", strings.ReplaceAll(c.notes(), "\n", " "))
	if c.Note != "" {
		fmt.Fprintf(w, "\n**%s**\n", c.Note)
	}
	if len(c.Gate) > 0 {
		fmt.Fprintf(w, "\n%s\n", c.summaryLine(p))
	}
	return nil
}

func mdVerdict(o Outcome) string {
	switch o {
	case Pass:
		return "✅ pass"
	case Fail:
		return "❌ fail"
	case Inconclusive:
		return "⚠️ inconclusive"
	}
	return string(o)
}

// JUnit XML, as Jenkins, GitLab and GitHub test reporters read it.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	ClassName string        `xml:"classname,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr,omitempty"`
	Text    string `xml:",chardata"`
}

// add appends a case with its outcome under the policy.
func (s *junitSuite) add(name, class string, o Outcome, detail string, p Policy) {
	c := junitCase{Name: name, ClassName: class, SystemOut: detail}
	switch {
	case o == Fail, o == Inconclusive && p == InconclusiveFail:
		c.Failure = &junitMessage{Message: string(o) + ": " + detail, Type: string(o), Text: detail}
		s.Failures++
	case o == Inconclusive && p != InconclusivePass, o == NotApplicable:
		c.Skipped = &junitMessage{Message: string(o) + ": " + detail}
		s.Skipped++
	}
	s.Cases = append(s.Cases, c)
	s.Tests++
}

func writeJUnit(w io.Writer, name string, suites []junitSuite) error {
	all := junitSuites{Name: name, Suites: suites}
	for _, s := range suites {
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Skipped += s.Skipped
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// WriteJUnit writes one test case per (row, rule).
func (c *Comparison) WriteJUnit(w io.Writer, p Policy) error {
	var suites []junitSuite
	for _, r := range c.Rows {
		s := junitSuite{Name: "meshbench compare " + r.Key}
		for _, v := range r.Verdicts {
			s.add(v.Rule, r.Key, v.Outcome, v.Detail, p)
		}
		if r.Note == "not in the candidate" && len(c.Gate) > 0 {
			s.add("present in both runs", r.Key, r.Outcome, r.Note, p)
		}
		if s.Tests > 0 {
			suites = append(suites, s)
		}
	}
	return writeJUnit(w, "meshbench compare", suites)
}

// WriteJSON writes the comparison as JSON.
func (c *Comparison) WriteJSON(w io.Writer, p Policy) error {
	out := struct {
		*Comparison
		Final  Outcome `json:"final"`
		Policy Policy  `json:"inconclusivePolicy"`
	}{c, c.Final(p), p}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
