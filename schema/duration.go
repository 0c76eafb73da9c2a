package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is an ISO 8601 duration such as P7Y or P1Y6M or P30D, kept in
// calendar units: "seven years" is not a fixed number of seconds, so AddTo
// adds years, months and days on the calendar (time.AddDate) and only then
// the clock part.
type Duration struct {
	Years, Months, Days int
	// Clock is the time part (PT12H), rarely useful for retention but
	// accepted so any ISO 8601 duration without fractions parses.
	Clock time.Duration
}

// ErrBadDuration is wrapped by ParseDuration's errors.
var ErrBadDuration = errors.New("not an ISO 8601 duration")

// ParseDuration parses PnYnMnWnDTnHnMnS with non-negative integer
// components, at least one of them present (P7Y, P18M, P2W, P1Y6M15D,
// PT36H). Weeks are stored as 7 days. Fractions and negative durations are
// refused: a retention period is a whole, forward span.
func ParseDuration(s string) (Duration, error) {
	var d Duration
	bad := func(reason string) (Duration, error) {
		return Duration{}, fmt.Errorf("%w: %q: %s (want e.g. P7Y, P18M, P30D)", ErrBadDuration, s, reason)
	}
	rest, ok := strings.CutPrefix(s, "P")
	if !ok {
		return bad("must start with P")
	}
	if rest == "" {
		return bad("no components")
	}
	inTime := false
	last := -1
	n := 0
	for rest != "" {
		if rest[0] == 'T' {
			if inTime {
				return bad("T given twice")
			}
			inTime = true
			rest = rest[1:]
			if rest == "" {
				return bad("nothing after T")
			}
			continue
		}
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return bad(fmt.Sprintf("want a number before %q", rest[:1]))
		}
		if i == len(rest) {
			return bad("number without a unit")
		}
		v, err := strconv.Atoi(rest[:i])
		if err != nil || v > 1_000_000 {
			return bad("component too large")
		}
		unit := rest[i]
		// Units must come in the order of the standard, each at most once.
		pos := strings.IndexByte("YMWD", unit)
		if inTime {
			pos = strings.IndexByte("HMS", unit)
			if pos >= 0 {
				pos += 4
			}
		}
		if pos < 0 {
			return bad(fmt.Sprintf("unknown unit %q", unit))
		}
		if pos <= last {
			return bad(fmt.Sprintf("unit %q repeated or out of order", unit))
		}
		last = pos
		switch pos {
		case 0:
			d.Years = v
		case 1:
			d.Months = v
		case 2:
			d.Days += 7 * v
		case 3:
			d.Days += v
		case 4:
			d.Clock += time.Duration(v) * time.Hour
		case 5:
			d.Clock += time.Duration(v) * time.Minute
		case 6:
			d.Clock += time.Duration(v) * time.Second
		}
		n++
		rest = rest[i+1:]
	}
	if n == 0 {
		return bad("no components")
	}
	return d, nil
}

// IsZero reports whether d is empty: no retention limit was declared.
func (d Duration) IsZero() bool { return d == Duration{} }

// AddTo returns t moved forward by d: calendar units first (with
// time.AddDate's normalisation, so 31 January + P1M is 3 March), then the
// clock part.
func (d Duration) AddTo(t time.Time) time.Time {
	return t.AddDate(d.Years, d.Months, d.Days).Add(d.Clock)
}

// String formats d in ISO 8601 (P7Y, P1Y6M, PT36H); the zero Duration is
// "P0D".
func (d Duration) String() string {
	if d.IsZero() {
		return "P0D"
	}
	var b strings.Builder
	b.WriteByte('P')
	for _, c := range []struct {
		v int
		u byte
	}{{d.Years, 'Y'}, {d.Months, 'M'}, {d.Days, 'D'}} {
		if c.v != 0 {
			b.WriteString(strconv.Itoa(c.v))
			b.WriteByte(c.u)
		}
	}
	if d.Clock != 0 {
		b.WriteByte('T')
		rest := d.Clock
		for _, c := range []struct {
			unit time.Duration
			u    byte
		}{{time.Hour, 'H'}, {time.Minute, 'M'}, {time.Second, 'S'}} {
			if n := rest / c.unit; n != 0 {
				b.WriteString(strconv.FormatInt(int64(n), 10))
				b.WriteByte(c.u)
				rest -= n * c.unit
			}
		}
	}
	return b.String()
}

// MarshalText writes the ISO 8601 form.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses the ISO 8601 form.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
