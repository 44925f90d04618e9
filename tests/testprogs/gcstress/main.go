// gcstress is goprobe's ground-truth workload: it forces GC cycles while goprobe watches and
// reports what the Go runtime itself recorded, so tests can compare goprobe's numbers with it.
//
// Protocol: it prints "ready" once idle, waits for a line on stdin, runs, then prints one JSON
// document on stdout and exits.
//
//	-mode=pauses  run until -cycles GC cycles completed; report MemStats.PauseNs of each cycle
//	              and how many times ReadMemStats was called.
//	-mode=churn   allocate and verify data structures, and start short-lived goroutines that
//	              grow their stacks and compute known sums (churn.go), until stdin says "stop"
//	              (or closes); report iterations, goroutines started, verification failures and
//	              runtime.MemProfileRate at ready and at the end (run it with GODEBUG=gccheckmark=1).
//	-mode=reasons stop the world once for each non-GC reason a program can cause (see
//	              stopForEveryReason) and report the calls in order.
//	-mode=cycles  three phases of -cycles/3 cycles each (runtime.GC and heap-triggered), with
//	              GOGC/GOMEMLIMIT changed between them; report the settings the runtime had, the
//	              cycle and forced-cycle counts and the stop-latency histogram (see cycles.go).
//	-mode=heap    -cycles heap-triggered cycles, never calling runtime.GC; report the counts.
//	-mode=stwstack call runtime.ReadMemStats -calls times from main.readMemStatsLoop.
//	-mode=forcegc  call runtime.GC -calls times from main.forceGCLoop; report NumGC before/after.
//	-mode=assist   run main.allocHeavy (allocates) and main.idleWait (does not) until -cycles
//	               GC cycles completed; report the runtime's GC count and mark assist time
//	               (/cpu/classes/gc/mark/assist:cpu-seconds, Go 1.20+) before and after.
//	-mode=exec     as pauses, then turn GC off (the JSON then lists every cycle of this image),
//	               print the JSON and exec() this binary with -mode pauses
//	               -cycles 5, which prints "ready" and follows the protocol again (lifecycle.go).
//	-mode=fork     as pauses while -children copies of this binary (-mode pauses -cycles 10) run
//	               as child processes; report their results too, and (GC off at the end) every
//	               cycle of the parent until it exits (lifecycle.go).
//	-mode=mixed    GC (heap-triggered and forced), allocations, mark assists, ReadMemStats,
//	               short-lived goroutines and page faults until stdin says "stop" (mixed.go).
//	-mode=longstw  ordinary cycles and ReadMemStats calls, and -calls rounds that make one GC
//	               cycle and one ReadMemStats long (-spin-ms, at least -long-ns by the runtime's
//	               own measure, retried; needs GODEBUG=asyncpreemptoff=1);
//	               report every cycle's MemStats.PauseNs and each call's pause (longstw.go).
//
// -linger SECONDS keeps the process alive, idle, that long after the JSON line, so that a
// metrics scraper can read goprobe's final values while the target still exists.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/trace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type node struct {
	left, right *node
	value       int64
	payload     []byte
}

// build makes a complete binary tree of the given depth whose values sum to a known number.
func build(depth int, value int64) *node {
	n := &node{value: value, payload: make([]byte, 32+value%64)}
	if depth > 0 {
		n.left = build(depth-1, 2*value)
		n.right = build(depth-1, 2*value+1)
	}
	return n
}

func (n *node) sum() int64 {
	if n == nil {
		return 0
	}
	if int64(len(n.payload)) != 32+n.value%64 {
		return -1 << 40 // corrupted
	}
	return n.value + n.left.sum() + n.right.sum()
}

// expected is the sum of values of build(depth, 1): the heap numbering 1..2^(depth+1)-1.
func expected(depth int) int64 {
	n := int64(1)<<(depth+1) - 1
	return n * (n + 1) / 2
}

func numGC() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s) // no stop-the-world, unlike ReadMemStats
	return s[0].Value.Uint64()
}

// churn allocates trees on a few goroutines and checks each one after building it.
func churn(stop *atomic.Bool, iterations, failures *atomic.Int64) {
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var keep []*node
			for !stop.Load() {
				t := build(10, 1)
				keep = append(keep, t)
				if len(keep) > 8 {
					keep = keep[1:]
				}
				for _, k := range keep {
					if k.sum() != expected(10) {
						failures.Add(1)
					}
				}
				iterations.Add(1)
			}
		}()
	}
	wg.Wait()
}

// runPauses runs until cycles GC cycles completed (a third forced, churn meanwhile) and reports
// MemStats.PauseNs of each and how many times ReadMemStats was called (-mode pauses).
func runPauses(out map[string]any, cycles int) {
	var stop atomic.Bool
	var iterations, failures atomic.Int64
	start := numGC()
	done := make(chan struct{})
	go func() { churn(&stop, &iterations, &failures); close(done) }()
	readMemStats := 0
	var ms runtime.MemStats
	for i := 0; numGC() < start+uint64(cycles); i++ {
		switch {
		case i%3 == 0:
			runtime.GC()
		case i%7 == 0:
			runtime.ReadMemStats(&ms)
			readMemStats++
		default:
			_ = build(12, 1)
		}
	}
	stop.Store(true)
	<-done
	runtime.ReadMemStats(&ms)
	readMemStats++
	pauses := map[string]uint64{}
	for c := start + 1; c <= uint64(ms.NumGC); c++ {
		pauses[strconv.FormatUint(c, 10)] = ms.PauseNs[(c+255)%256]
	}
	out["numgc_start"] = start
	out["numgc_end"] = ms.NumGC
	out["pause_ns"] = pauses
	out["read_mem_stats"] = readMemStats
	out["failures"] = failures.Load()
}

// stopForEveryReason calls, once each, the public APIs that stop the world for a reason other
// than GC, and returns their names in call order. Each call is one stop-the-world except
// GoroutineProfile, which stops it twice (goroutine profile, then its cleanup).
func stopForEveryReason() ([]string, error) {
	var calls []string
	n := runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n + 1) // a change stops the world; setting the same value does not
	runtime.GOMAXPROCS(n)
	calls = append(calls, "GOMAXPROCS", "GOMAXPROCS")
	buf := make([]byte, 1<<16)
	runtime.Stack(buf, true)
	calls = append(calls, "Stack")
	records := make([]runtime.StackRecord, 1024)
	if _, ok := runtime.GoroutineProfile(records); !ok {
		return nil, fmt.Errorf("GoroutineProfile: %d records are not enough", len(records))
	}
	calls = append(calls, "GoroutineProfile")
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	debug.WriteHeapDump(f.Fd())
	f.Close()
	calls = append(calls, "WriteHeapDump")
	if err := trace.Start(io.Discard); err != nil {
		return nil, err
	}
	trace.Stop()
	calls = append(calls, "trace.Start", "trace.Stop")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	calls = append(calls, "ReadMemStats")
	return calls, nil
}

func main() {
	mode := flag.String("mode", "pauses", "pauses, churn, reasons, cycles, heap, stwstack, forcegc, assist or mixed")
	cycles := flag.Int("cycles", 120, "GC cycles to run in -mode=pauses (at most 250), cycles, heap or assist")
	calls := flag.Int("calls", 20, "calls in -mode=stwstack and forcegc")
	children := flag.Int("children", 4, "child processes in -mode fork")
	spinMs := flag.Float64("spin-ms", 60, "how long -mode longstw makes its long stop-the-worlds")
	longNs := flag.Int64("long-ns", 0, "-mode longstw tries again a long pause that came out shorter")
	linger := flag.Float64("linger", 0, "seconds to stay alive, idle, after printing the JSON line")
	flag.Parse()
	if *cycles > 250 {
		*cycles = 250 // MemStats.PauseNs keeps the last 256 cycles
	}
	debug.SetGCPercent(20)
	runtime.GC() // no cycle in flight when we say ready
	memProfileRate := runtime.MemProfileRate
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	in.Scan()

	var stop atomic.Bool
	var iterations, failures atomic.Int64
	// gomaxprocs: what go.processor.limit must export (the environment's GOMAXPROCS or the CPUs).
	out := map[string]any{"go_version": runtime.Version(), "pid": os.Getpid(), "gomaxprocs": runtime.GOMAXPROCS(0)}
	switch *mode {
	case "cycles":
		runCycles(out, uint64(*cycles)/3)
	case "heap":
		runHeap(out, uint64(*cycles))
	case "reasons":
		calls, err := stopForEveryReason()
		if err != nil {
			panic(err)
		}
		out["calls"] = calls
	case "stwstack":
		out["calls"] = readMemStatsLoop(*calls)
		out["function"] = "main.readMemStatsLoop"
	case "forcegc":
		out["numgc_start"] = numGC()
		out["calls"] = forceGCLoop(*calls)
		gcOff()
		out["numgc_end"] = numGC()
		out["function"] = "main.forceGCLoop"
	case "assist":
		for k, v := range assistRun(*cycles) {
			out[k] = v
		}
	case "mixed":
		for k, v := range runMixed(in) {
			out[k] = v
		}
	case "longstw":
		runLongSTW(out, *calls, time.Duration(*spinMs*float64(time.Millisecond)), *longNs)
	case "churn":
		go func() {
			for in.Scan() && in.Text() != "stop" {
			}
			stop.Store(true)
		}()
		spawned := make(chan int64)
		go func() { spawned <- goroutineChurn(&stop, &failures) }()
		churn(&stop, &iterations, &failures)
		out["goroutines"] = <-spawned
		out["iterations"] = iterations.Load()
		out["failures"] = failures.Load()
		out["mem_profile_rate_ready"] = memProfileRate
		out["mem_profile_rate_end"] = runtime.MemProfileRate
	case "exec":
		runPauses(out, *cycles)
		execSelf(out)
	case "fork":
		runFork(out, *cycles, *children)
	default:
		runPauses(out, *cycles)
		// A heap-triggered cycle can complete after runPauses' last ReadMemStats (the JSON
		// below allocates): goprobe would see one cycle more than the truth says.
		finishPauses(out)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
	// Sleeping allocates nothing, so no GC cycle starts while the process lingers.
	time.Sleep(time.Duration(*linger * float64(time.Second)))
}
