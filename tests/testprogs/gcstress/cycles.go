package main

// -mode=cycles and -mode=heap: ground truth for what each GC cycle was (trigger, phases, heap,
// GOGC, GOMEMLIMIT, stop latency). Run with GODEBUG=gctrace=1 to get the runtime's own line per
// cycle on stderr.

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// setting is what the runtime said GOGC and GOMEMLIMIT were for the cycles after AfterCycle.
type setting struct {
	AfterCycle uint64 `json:"after_cycle"`
	// GOGC as the runtime reported it: the return value of the next debug.SetGCPercent.
	GOGC int `json:"gogc"`
	// /gc/gogc:percent read right after the change (Go 1.21+; null before).
	MetricGOGC *uint64 `json:"metric_gogc"`
	// debug.SetMemoryLimit(-1): the limit in effect, without changing it.
	MemLimit int64 `json:"gomemlimit"`
	// /gc/gomemlimit:bytes read right after the change (Go 1.21+; null before).
	MetricMemLimit *uint64 `json:"metric_gomemlimit"`
}

func readUint(name string) *uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return nil // not in this Go release
	}
	v := s[0].Value.Uint64()
	return &v
}

// histogram of a runtime/metrics Float64Histogram metric: bucket boundaries (seconds) and counts,
// or nil when the release does not have it.
type histogram struct {
	Buckets []float64 `json:"buckets"`
	Counts  []uint64  `json:"counts"`
}

func readHistogram(name string) *histogram {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return nil
	}
	h := s[0].Value.Float64Histogram()
	out := &histogram{Counts: append([]uint64(nil), h.Counts...)}
	for _, b := range h.Buckets {
		if math.IsInf(b, 0) { // JSON has no infinities
			b = math.Copysign(math.MaxFloat64, b)
		}
		out.Buckets = append(out.Buckets, b)
	}
	return out
}

// delta is the histogram of what happened between a and b.
func (b *histogram) delta(a *histogram) *histogram {
	if a == nil || b == nil {
		return nil
	}
	d := &histogram{Buckets: b.Buckets}
	for i := range b.Counts {
		d.Counts = append(d.Counts, b.Counts[i]-a.Counts[i])
	}
	return d
}

func forcedGC() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return uint64(ms.NumForcedGC)
}

// allocateUntil allocates garbage (and calls runtime.GC every third step if forced) until the
// runtime has completed n more cycles. It keeps a few trees alive so marking has work.
func allocateUntil(n uint64, forced bool) {
	target := numGC() + n
	var keep []*node
	for i := 0; numGC() < target; i++ {
		if forced && i%3 == 0 {
			runtime.GC()
			continue
		}
		keep = append(keep, build(12, 1))
		if len(keep) > 6 {
			keep = keep[1:]
		}
	}
	runtime.KeepAlive(keep)
}

// runCycles runs three phases with different GOGC / GOMEMLIMIT, perCycles cycles each (forced
// and heap-triggered). Between phases runtime.GC() returns only once no cycle is in flight and
// nothing else allocates, so every cycle after AfterCycle ran with the new settings.
func runCycles(out map[string]any, perPhase uint64) {
	stoppingBefore := readHistogram("/sched/pauses/stopping/gc:seconds")
	out["numgc_start"] = numGC()
	out["numforcedgc_start"] = forcedGC()
	changes := []struct {
		gogc     int
		memlimit int64
	}{{60, 512 << 20}, {150, 1 << 30}}
	var settings []setting
	gogc := debug.SetGCPercent(20) // main set 20; this reads it back
	for phase := 0; ; phase++ {
		settings = append(settings, setting{
			AfterCycle:     numGC(),
			GOGC:           gogc,
			MetricGOGC:     readUint("/gc/gogc:percent"),
			MemLimit:       debug.SetMemoryLimit(-1),
			MetricMemLimit: readUint("/gc/gomemlimit:bytes"),
		})
		allocateUntil(perPhase, true)
		runtime.GC() // no cycle in flight from here on
		if phase == len(changes) {
			break
		}
		prev := debug.SetGCPercent(changes[phase].gogc)
		if prev != gogc {
			panic("GOGC changed behind our back")
		}
		debug.SetMemoryLimit(changes[phase].memlimit)
		gogc = debug.SetGCPercent(changes[phase].gogc) // the runtime's value, unchanged
	}
	out["settings"] = settings
	gcOff()
	out["numgc_end"] = numGC()
	out["numforcedgc_end"] = forcedGC()
	out["stopping_gc"] = readHistogram("/sched/pauses/stopping/gc:seconds").delta(stoppingBefore)
}

// runHeap never calls runtime.GC: every cycle of the window is triggered by the heap.
func runHeap(out map[string]any, cycles uint64) {
	out["numgc_start"] = numGC()
	out["numforcedgc_start"] = forcedGC()
	allocateUntil(cycles, false)
	gcOff()
	out["numgc_end"] = numGC()
	out["numforcedgc_end"] = forcedGC()
}
