package schema

import (
	"errors"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	good := map[string]Duration{
		"P7Y":        {Years: 7},
		"P18M":       {Months: 18},
		"P2W":        {Days: 14},
		"P1Y6M15D":   {Years: 1, Months: 6, Days: 15},
		"PT36H":      {Clock: 36 * time.Hour},
		"P1DT2H3M4S": {Days: 1, Clock: 2*time.Hour + 3*time.Minute + 4*time.Second},
		"P0D":        {},
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "7Y", "P", "PT", "P7", "P-7Y", "P1.5Y", "P7X", "P1M1Y", "P1Y1Y", "PT1D", "P1H", "7 years", "P99999999Y"} {
		if d, err := ParseDuration(in); !errors.Is(err, ErrBadDuration) {
			t.Errorf("ParseDuration(%q) = %+v, %v; want ErrBadDuration", in, d, err)
		}
	}
}

func TestDurationStringRoundTrip(t *testing.T) {
	for _, in := range []string{"P7Y", "P1Y6M15D", "P14D", "PT36H", "P1DT2H3M4S"} {
		d, err := ParseDuration(in)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Errorf("%q -> %q -> %+v, %v", in, d.String(), back, err)
		}
	}
	if s := (Duration{Days: 14}).String(); s != "P14D" {
		t.Errorf("String = %q", s)
	}
}

func TestDurationAddTo(t *testing.T) {
	base := time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Time
	}{
		{"P7Y", time.Date(2031, 3, 1, 10, 0, 0, 0, time.UTC)}, // no 29 February in 2031
		{"P1M", time.Date(2024, 3, 29, 10, 0, 0, 0, time.UTC)},
		{"P30D", time.Date(2024, 3, 30, 10, 0, 0, 0, time.UTC)},
		{"P1DT12H", time.Date(2024, 3, 1, 22, 0, 0, 0, time.UTC)},
	}
	for _, c := range cases {
		d, err := ParseDuration(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.AddTo(base); !got.Equal(c.want) {
			t.Errorf("%s.AddTo(%v) = %v, want %v", c.in, base, got, c.want)
		}
	}
}
