package bench

import (
	"context"
	"fmt"
	"time"
)

// PairStats is a Kannuki candidate timed in short blocks that alternate
// with its floor's on the same connection: (floor, Kannuki), (Kannuki,
// floor), … A block of a few dozen cycles lasts a few milliseconds, so both
// members of a round see the same machine. The blocks of section 1 last
// 75 ms and sit a second apart, and on a small shared machine the round
// trip time moves between two levels (about 18 µs and about 60 µs here)
// on that scale, which swings their ratios from one run to the next.
type PairStats struct {
	Floor, Kannuki *CycleStats
}

// Ratio is the median over rounds of Kannuki's cycles per second divided
// by the floor's in the same round.
func (s *PairStats) Ratio() float64 { return s.Kannuki.RatioTo(s.Floor) }

// P50Ratio is the floor's median cycle time over Kannuki's.
func (s *PairStats) P50Ratio() float64 {
	k := s.Kannuki.p50()
	if k == 0 {
		return 0
	}
	return float64(s.Floor.p50()) / float64(k)
}

// pairBlockLimit bounds one paired block in time, in case a cycle stalls.
const pairBlockLimit = time.Second

// RunPaired times every Kannuki candidate of fams against the floor of its
// family: rounds rounds of one block of n cycles each, the order of the
// two swapping every round, after one untimed warm-up round.
func RunPaired(ctx context.Context, fams []*Family, rounds, n int, progress func(string)) []*PairStats {
	var out []*PairStats
	for _, f := range fams {
		for _, c := range f.Candidates {
			floor, ok := familyFloor(f, c)
			if !ok {
				continue
			}
			progress(fmt.Sprintf("paired: %s against %s", c.Name, floor.Name))
			s := runPair(ctx, c, floor, rounds, n)
			out = append(out, s)
		}
	}
	return out
}

// runPair times c against base: rounds rounds of one block of n cycles
// each, the order of the two swapping every round, after one untimed
// warm-up round.
func runPair(ctx context.Context, c, base Candidate, rounds, n int) *PairStats {
	s := &PairStats{Floor: &CycleStats{Candidate: base}, Kannuki: &CycleStats{Candidate: c}}
	warm := &CycleStats{}
	runCycles(ctx, base, pairBlockLimit, n, warm, 0)
	runCycles(ctx, c, pairBlockLimit, n, warm, 0)
	for r := range rounds {
		if ctx.Err() != nil {
			break
		}
		first, second := s.Floor, s.Kannuki
		if r%2 == 1 {
			first, second = second, first
		}
		runCycles(ctx, first.Candidate, pairBlockLimit, n, first, r)
		runCycles(ctx, second.Candidate, pairBlockLimit, n, second, r)
	}
	return s
}

// familyFloor returns the floor of a Kannuki candidate c in its family f.
func familyFloor(f *Family, c Candidate) (Candidate, bool) {
	if c.Kind != KindKannuki || c.Floor == "" {
		return Candidate{}, false
	}
	for _, o := range f.Candidates {
		if o.Name == c.Floor {
			return o, true
		}
	}
	return Candidate{}, false
}
