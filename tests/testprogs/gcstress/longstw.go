package main

// -mode=longstw: ordinary GC cycles (heap-triggered and runtime.GC) and ReadMemStats calls,
// and -calls rounds that each make one GC cycle and one ReadMemStats stop-the-world long on
// purpose: a goroutine spins -spin-ms in a loop without calls while the other goroutine stops
// the world, which (with GODEBUG=asyncpreemptoff=1) cannot stop it until its loop ends.
//
// It reports what the runtime itself measured: MemStats.PauseNs of every cycle, and for each
// ReadMemStats call the bucket of /sched/pauses/total/other:seconds (Go 1.22+) its
// stop-the-world fell in, so a test can tell which pauses were over a threshold without
// assuming the spinning worked.

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// NB: the runtime's histogram of non-GC stop-the-world pauses, Go 1.22+
// (src/runtime/metrics.go; recorded in startTheWorldWithSema, src/runtime/proc.go).
const otherPauses = "/sched/pauses/total/other:seconds"

// NB: the same for GC pauses (sweep and mark termination), Go 1.22+.
const gcPauses = "/sched/pauses/total/gc:seconds"

// attempts is how often a long pause is tried before giving up (a loaded machine may run the
// stopping goroutine late, after much of the spin).
const attempts = 5

var spinSink atomic.Uint64

// spin runs n rounds of a loop without calls: with asynchronous preemption off, the goroutine
// cannot be stopped until it returns. started is set once it runs.
//
//go:noinline
func spin(n uint64, started *atomic.Bool) uint64 {
	started.Store(true)
	x := uint64(1)
	for i := uint64(0); i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// spinRounds is how many rounds of spin take at least d: from the fastest of a few runs.
func spinRounds(d time.Duration) uint64 {
	const n = 1 << 22
	best := time.Duration(math.MaxInt64)
	var started atomic.Bool
	for i := 0; i < 5; i++ {
		t := time.Now()
		spinSink.Add(spin(n, &started))
		if e := time.Since(t); e < best {
			best = e
		}
	}
	return uint64(float64(n) * float64(d) / float64(best))
}

// whileSpinning calls f while another goroutine runs spin(n).
func whileSpinning(n uint64, f func()) {
	var started atomic.Bool
	done := make(chan struct{})
	go func() {
		spinSink.Add(spin(n, &started))
		close(done)
	}()
	for !started.Load() {
		runtime.Gosched()
	}
	f()
	<-done
}

// otherPauseCounts is the histogram of non-GC pauses so far (counts and bucket bounds in ns);
// nil before Go 1.22.
func otherPauseCounts() ([]uint64, []float64) {
	return pauseCounts(otherPauses)
}

func pauseCounts(name string) ([]uint64, []float64) {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil, nil
	}
	h := s[0].Value.Float64Histogram()
	return append([]uint64(nil), h.Counts...), h.Buckets
}

// stwCall is one ReadMemStats call: whether it was made long and where the runtime put its
// stop-the-world ([lo_ns, hi_ns) of the histogram bucket; -1 when unknown).
type stwCall struct {
	Long  bool   `json:"long"`
	Count uint64 `json:"count"`
	LoNs  int64  `json:"lo_ns"`
	HiNs  int64  `json:"hi_ns"`
}

// readMemStats calls runtime.ReadMemStats (while spinning n rounds if n > 0) and says where
// its pause fell.
func readMemStats(n uint64, ms *runtime.MemStats) stwCall {
	before, _ := otherPauseCounts()
	if n > 0 {
		whileSpinning(n, func() { runtime.ReadMemStats(ms) })
	} else {
		runtime.ReadMemStats(ms)
	}
	after, bounds := otherPauseCounts()
	c := stwCall{Long: n > 0, LoNs: -1, HiNs: -1}
	for i := range after {
		d := after[i] - before[i]
		if d == 0 {
			continue
		}
		c.Count += d
		c.LoNs, c.HiNs = toNs(bounds[i]), toNs(bounds[i+1])
	}
	return c
}

// longestGCPause is the lower bound (ns) of the highest bucket of the GC pause histogram that
// counted a pause while f ran; -1 when unknown.
func longestGCPause(f func()) int64 {
	before, _ := pauseCounts(gcPauses)
	f()
	after, bounds := pauseCounts(gcPauses)
	lo := int64(-1)
	for i := range after {
		if after[i] > before[i] {
			lo = toNs(bounds[i])
		}
	}
	return lo
}

func toNs(seconds float64) int64 {
	if math.IsInf(seconds, 0) {
		return -1
	}
	return int64(math.Round(seconds * 1e9))
}

func otherPausesTotal() uint64 {
	counts, _ := otherPauseCounts()
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n
}

// runLongSTW runs rounds rounds of ordinary cycles and calls, one long GC cycle and one long
// ReadMemStats each (-mode longstw).
func runLongSTW(out map[string]any, rounds int, spinFor time.Duration, longNs int64) {
	if !strings.Contains(os.Getenv("GODEBUG"), "asyncpreemptoff=1") {
		panic("-mode longstw needs GODEBUG=asyncpreemptoff=1")
	}
	if runtime.GOMAXPROCS(0) < 2 {
		panic("-mode longstw needs GOMAXPROCS >= 2")
	}
	n := spinRounds(spinFor)
	otherStart := otherPausesTotal()
	start := numGC()
	var calls []stwCall
	var long []uint64
	var ms runtime.MemStats
	for r := 0; r < rounds; r++ {
		for i := 0; i < 5; i++ {
			_ = build(12, 1) // heap-triggered cycles
		}
		calls = append(calls, readMemStats(0, &ms))
		runtime.GC()
		calls = append(calls, readMemStats(0, &ms))
		// runtime.GC returns with no cycle in flight and nothing allocates here, so the
		// next cycle is the one started while spinning.
		// An attempt whose pause came out under -long-ns (the runtime's own measure) is
		// an ordinary one; it is tried again.
		for a := 0; a < attempts; a++ {
			runtime.GC()
			before := numGC()
			lo := longestGCPause(func() { whileSpinning(n, runtime.GC) })
			if after := numGC(); after == before+1 && lo >= longNs {
				long = append(long, after)
				break
			}
		}
		for a := 0; a < attempts; a++ {
			c := readMemStats(n, &ms)
			c.Long = c.LoNs >= longNs
			calls = append(calls, c)
			if c.Long {
				break
			}
		}
	}
	// No cycle after this one (SetGCPercent(-1) waits for one in flight).
	debug.SetGCPercent(-1)
	settle()
	calls = append(calls, readMemStats(0, &ms)) // the cycles' pauses, at the end
	pauses := map[string]uint64{}
	first := uint64(1)
	if ms.NumGC > 256 {
		first = uint64(ms.NumGC) - 255
	}
	for c := first; c <= uint64(ms.NumGC); c++ {
		pauses[strconv.FormatUint(c, 10)] = ms.PauseNs[(c+255)%256]
	}
	out["numgc_start"] = start
	out["numgc_end"] = ms.NumGC
	out["pause_ns"] = pauses
	out["long_cycles"] = long
	out["stws"] = calls
	out["other_stws"] = otherPausesTotal() - otherStart
	out["spin_rounds"] = n
}
