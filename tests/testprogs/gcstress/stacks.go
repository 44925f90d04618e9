package main

// Modes whose ground truth is a stack: who stopped the world, who forced a cycle, who paid mark
// assists. The functions named in the output must not be inlined, so that they appear in stacks
// as their own frames.

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// assistMetric is the runtime's own total of mark assist time (Go 1.20+; absent on Go 1.19).
const assistMetric = "/cpu/classes/gc/mark/assist:cpu-seconds"

// readMemStatsLoop stops the world n times for ReadMemStats.
//
//go:noinline
func readMemStatsLoop(n int) int {
	var ms runtime.MemStats
	for i := 0; i < n; i++ {
		runtime.ReadMemStats(&ms)
		time.Sleep(time.Millisecond)
	}
	return n
}

// forceGCLoop forces n GC cycles.
//
//go:noinline
func forceGCLoop(n int) int {
	for i := 0; i < n; i++ {
		runtime.GC()
	}
	return n
}

var sink []*node

// allocHeavy allocates trees, keeping a few alive, until stop is closed.
//
//go:noinline
func allocHeavy(stop <-chan struct{}, done chan<- int) {
	iterations := 0
	for {
		select {
		case <-stop:
			done <- iterations
			return
		default:
		}
		sink = append(sink, build(10, 1))
		if len(sink) > 16 {
			sink = sink[1:]
		}
		iterations++
	}
}

// idleWait blocks without allocating until stop is closed.
//
//go:noinline
func idleWait(stop <-chan struct{}, done chan<- int) {
	<-stop
	done <- 0
}

// settle gives the runtime time to finish restarting the world after the last GC cycle before
// the program exits: the goroutines resume inside startTheWorldWithSema, before it returns, and
// an exit in between would cut that call (where goprobe sees the cycle end) short.
func settle() {
	time.Sleep(100 * time.Millisecond)
}

// gcOff turns GC off and settles: no cycle starts after this (SetGCPercent(-1) also waits for
// one in flight, src/runtime/mgcpacer.go setGCPercent, and stops no world), so counts read
// after it cover every cycle goprobe can see until the process exits. Every mode reads its
// final counts after it: a heap-triggered cycle completing after the last read (the JSON
// encoding allocates) would otherwise be one goprobe sees and the truth does not.
func gcOff() {
	debug.SetGCPercent(-1)
	settle()
}

// gcAndAssist reads the completed GC cycles and the runtime's assist time (ns; -1 where the
// runtime has no such metric). Both are updated together at each cycle's mark termination.
func gcAndAssist() (uint64, int64) {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: assistMetric}}
	metrics.Read(s)
	assist := int64(-1)
	if s[1].Value.Kind() == metrics.KindFloat64 {
		assist = int64(s[1].Value.Float64() * 1e9)
	}
	return s[0].Value.Uint64(), assist
}

// assistRun runs allocHeavy and idleWait until at least cycles GC cycles completed, and returns
// the runtime's counters before and after, for the cycles in between.
func assistRun(cycles int) map[string]any {
	gc0, assist0 := gcAndAssist()
	stop := make(chan struct{})
	done := make(chan int, 2)
	go allocHeavy(stop, done)
	go idleWait(stop, done)
	for {
		time.Sleep(5 * time.Millisecond)
		if n, _ := gcAndAssist(); n >= gc0+uint64(cycles) {
			break
		}
	}
	close(stop)
	iterations := <-done + <-done
	gcOff()
	gc1, assist1 := gcAndAssist()
	return map[string]any{
		"numgc_start":      gc0,
		"numgc_end":        gc1,
		"assist_ns_start":  assist0,
		"assist_ns_end":    assist1,
		"iterations":       iterations,
		"alloc_function":   "main.allocHeavy",
		"idle_function":    "main.idleWait",
		"assist_supported": assist0 >= 0,
	}
}
