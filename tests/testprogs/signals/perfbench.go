// Bench modes for the perf-event signals (`cargo xtask bench`): a fault-heavy and a CPU-bound
// loop, each reporting its own throughput over a fixed wall time.

package main

import (
	"flag"
	"os"
	"syscall"
	"time"
)

var benchTime = flag.Duration("bench-time", 3*time.Second, "faultbench, cpubench: how long to run")

func init() {
	register("faultbench", runFaultBench)
	register("cpubench", runCPUBench)
}

type benchResult struct {
	Ops      int64   `json:"ops"`
	Seconds  float64 `json:"seconds"`
	OpsPerS  float64 `json:"ops_per_s"`
	OpsUnits string  `json:"unit"`
}

func result(ops int64, start time.Time, unit string) benchResult {
	s := time.Since(start).Seconds()
	return benchResult{Ops: ops, Seconds: s, OpsPerS: float64(ops) / s, OpsUnits: unit}
}

// runFaultBench maps 1 MiB, touches every page (one minor fault each), unmaps it, again.
func runFaultBench() (any, error) {
	ps := os.Getpagesize()
	const pages = 256
	var n int64
	start := time.Now()
	for time.Since(start) < *benchTime {
		b, err := freshPages(pages, ps)
		if err != nil {
			return nil, err
		}
		touchStore(b, ps)
		if err := syscall.Munmap(b); err != nil {
			return nil, err
		}
		n += pages
	}
	return result(n, start, "page faults"), nil
}

//go:noinline
func cpuOp(x uint64) uint64 {
	for i := 0; i < 1000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// runCPUBench calls a 1000-step hash loop as often as it can.
func runCPUBench() (any, error) {
	var n int64
	x := uint64(1)
	start := time.Now()
	for time.Since(start) < *benchTime {
		for i := 0; i < 1000; i++ {
			x = cpuOp(x)
		}
		n += 1000
	}
	cpuSink = x
	return result(n, start, "calls"), nil
}
