package scenarios

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in scenarios as "10s", "500ms" or "0".
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeScalar(value, tag string) error {
	if value == "0" {
		*d = 0
		return nil
	}
	if tag != "!!str" {
		return fmt.Errorf("expected a duration such as \"10s\" or \"500ms\", got %s", value)
	}
	v, err := time.ParseDuration(value)
	if err != nil {
		return fmt.Errorf("expected a duration such as \"10s\" or \"500ms\", got %q", value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as its string form, as scenarios do.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads the string form written by MarshalJSON.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	return d.decodeScalar(s, "!!str")
}

// ByteSize is a size in bytes written as 1024, "1KiB", "4KB" or "1MiB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"KB", 1000}, {"MB", 1000 * 1000}, {"B", 1},
}

func (b *ByteSize) decodeScalar(value, tag string) error {
	s := strings.TrimSpace(value)
	mult := int64(1)
	if tag == "!!str" {
		for _, u := range byteUnits {
			if strings.HasSuffix(s, u.suffix) {
				s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
				break
			}
		}
	} else if tag != "!!int" {
		return fmt.Errorf("expected a size such as 1024 or \"1KiB\", got %s", value)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("expected a size such as 1024 or \"1KiB\", got %q", value)
	}
	*b = ByteSize(n * mult)
	return nil
}

func (b ByteSize) String() string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", int64(b))
}
