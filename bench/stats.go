package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// quantile returns the q-quantile (0 <= q <= 1) of d by the nearest-rank
// method, or 0 for no samples. It sorts d in place.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	if !slices.IsSorted(d) {
		slices.Sort(d)
	}
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[min(max(i, 0), len(d)-1)]
}

// median returns the median of xs, ignoring NaNs, or NaN when none is left.
func median(xs []float64) float64 {
	v := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	if d <= 0 {
		return "–"
	}
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f < 0.01:
		return fmt.Sprintf("%.4f ms", f)
	case f < 1:
		return fmt.Sprintf("%.3f ms", f)
	case f < 100:
		return fmt.Sprintf("%.2f ms", f)
	}
	return fmt.Sprintf("%.0f ms", f)
}

// ratio formats x as a factor ("0.97×"), or "–" for NaN.
func ratio(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "–"
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

// count formats a number with thousands separators ("12,345"), rounded.
func count(x float64) string {
	if math.IsNaN(x) {
		return "–"
	}
	n := int64(math.Round(x))
	neg := n < 0
	if neg {
		n = -n
	}
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// bytesIEC formats a byte count ("1.4 KiB").
func bytesIEC(x float64) string {
	switch {
	case math.IsNaN(x):
		return "–"
	case math.Abs(x) >= 1<<20:
		return fmt.Sprintf("%.1f MiB", x/(1<<20))
	case math.Abs(x) >= 1<<10:
		return fmt.Sprintf("%.2f KiB", x/(1<<10))
	}
	return fmt.Sprintf("%.0f B", x)
}
