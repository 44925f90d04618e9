// CPU mode: one goroutine, locked to its thread, alternating between two busy functions about
// 3:1, with the thread's own CPU time in each as ground truth.

package main

import (
	"flag"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

var (
	cpuBudget = flag.Duration("cpu-budget", 4*time.Second, "cpu mode: thread CPU time to spend in busyA and busyB together")
	cpuWall   = flag.Duration("cpu-wall", 30*time.Second, "cpu mode: give up after this much wall time")
)

func init() {
	register("cpu", runCPU)
}

type cpuResult struct {
	// Thread CPU time (CLOCK_THREAD_CPUTIME_ID) spent in main.busyA and main.busyB.
	ANs    int64   `json:"a_ns"`
	BNs    int64   `json:"b_ns"`
	AShare float64 `json:"a_share"`
	Rounds int     `json:"rounds"`
}

// threadCPU is the calling thread's CPU time (the goroutine is locked to it).
func threadCPU() int64 {
	var ts syscall.Timespec
	// NB: CLOCK_THREAD_CPUTIME_ID = 3 (linux/time.h); a raw syscall, the vDSO has no
	// per-thread clock.
	syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

var cpuSink uint64

// busyA spins until the thread has spent d of CPU time in it.
//
//go:noinline
func busyA(d int64) {
	end := threadCPU() + d
	x := cpuSink
	for threadCPU() < end {
		for i := 0; i < 20000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	cpuSink = x
}

// busyB is busyA under another name, with a different multiplier.
//
//go:noinline
func busyB(d int64) {
	end := threadCPU() + d
	x := cpuSink
	for threadCPU() < end {
		for i := 0; i < 20000; i++ {
			x = x*2862933555777941757 + 3037000493
		}
	}
	cpuSink = x
}

func runCPU() (any, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var a, b int64
	rounds := 0
	deadline := time.Now().Add(*cpuWall)
	for a+b < cpuBudget.Nanoseconds() && time.Now().Before(deadline) {
		t0 := threadCPU()
		busyA(3 * int64(time.Millisecond))
		t1 := threadCPU()
		busyB(1 * int64(time.Millisecond))
		t2 := threadCPU()
		a += t1 - t0
		b += t2 - t1
		rounds++
	}
	share := 0.0
	if a+b > 0 {
		share = float64(a) / float64(a+b)
	}
	return cpuResult{ANs: a, BNs: b, AShare: share, Rounds: rounds}, nil
}
