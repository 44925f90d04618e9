// overhead is the workload of `cargo xtask bench`'s target-overhead case (xtask/src/bench_overhead.rs):
// the same fixed amount of work run with and without goprobe attached, timing every operation so
// that the bench can compare throughput and tail latency.
//
// Modes: alloc (maps, encoding/json, small objects), goroutines (channels, fan-out of short
// goroutines, fan-in), server (net/http on 127.0.0.1:0, a handler doing a little JSON work) and
// load (the load generator for server: a separate process, so goprobe watches only the server).
//
// Protocol (as signals): it prints "ready" once idle (server: "addr HOST:PORT" first), waits for
// a line on stdin ("start"), runs, prints ONE JSON line (ops, seconds, ops_per_s, p50_us,
// p99_us, cpu_us_per_op) and exits 0. The server serves from before "ready" and counts from "start"; it prints
// its line and exits on "stop" or when stdin closes.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"syscall"
	"time"
)

var (
	mode = flag.String("mode", "", "alloc, goroutines, server or load")
	ops  = flag.Int("ops", 20000, "alloc, goroutines: operations to run (each one timed)")
)

// result is the one JSON line every mode prints.
type result struct {
	Mode       string  `json:"mode"`
	Ops        int     `json:"ops"`
	Seconds    float64 `json:"seconds"`
	OpsPerS    float64 `json:"ops_per_s"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	Gomaxprocs int     `json:"gomaxprocs"`
	// CPUusPerOp is this process' own CPU time (getrusage RUSAGE_SELF, user + system, every
	// thread) over the timed part, per operation: what goprobe's probes cost shows here, as
	// uprobe and perf-event BPF programs run in the threads they interrupt.
	CPUusPerOp float64 `json:"cpu_us_per_op"`
}

// cpuTime is the process' CPU time so far (user + system, all threads).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// summarize turns per-operation durations (ns), the wall time and the CPU time over it into a
// result; it sorts lat.
func summarize(lat []int64, wall, cpu time.Duration) result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(p * float64(len(lat)-1))
		return float64(lat[i]) / 1e3
	}
	s := wall.Seconds()
	return result{
		Mode: *mode, Ops: len(lat), Seconds: s, OpsPerS: float64(len(lat)) / s,
		P50us: q(0.50), P99us: q(0.99), Gomaxprocs: runtime.GOMAXPROCS(0),
		CPUusPerOp: float64(cpu.Microseconds()) / float64(max(len(lat), 1)),
	}
}

// timed runs op n times, timing each call.
func timed(n int, op func(i int)) result {
	lat := make([]int64, n)
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		op(i)
		lat[i] = int64(time.Since(t))
	}
	wall := time.Since(start)
	return summarize(lat, wall, cpuTime()-cpu0)
}

func main() {
	flag.Parse()
	in := bufio.NewScanner(os.Stdin)
	var r result
	switch *mode {
	case "alloc", "goroutines":
		warm := allocOp
		if *mode == "goroutines" {
			warm = goroutinesOp
		}
		for i := 0; i < 100; i++ {
			warm(i)
		}
		waitStart(in)
		r = timed(*ops, warm)
	case "server":
		r = serve(in)
	case "load":
		r = load(in)
	default:
		fmt.Fprintf(os.Stderr, "overhead: unknown -mode %q (alloc, goroutines, server, load)\n", *mode)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fail(err)
	}
}

// waitStart prints "ready" and waits for the start line.
func waitStart(in *bufio.Scanner) {
	fmt.Println("ready")
	if !in.Scan() {
		fail(fmt.Errorf("stdin closed before start"))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "overhead:", err)
	os.Exit(1)
}
