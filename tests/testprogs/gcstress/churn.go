package main

// -mode=churn: the no-harm workload. Trees built and verified on four long-lived goroutines
// (heap churn: GC cycles, mark assists, with GODEBUG=gccheckmark=1 a full re-verification of
// every mark phase), and at the same time batches of short-lived goroutines that each grow their
// stack several times (the runtime copies it: what a uretprobe's rewritten return address would
// not survive) and compute known sums (goroutine churn: newproc, gdestroy, stack growth).

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// goroutineBatch is how many goroutines goroutineChurn starts at once.
const goroutineBatch = 64

// deepDepth is deep's recursion depth: about 160 bytes a frame, so a goroutine's first 8 KiB
// stack is copied into larger ones a few times before the deepest call.
const deepDepth = 400

// deep returns 0+1+…+n, one frame per term.
//
//go:noinline
func deep(n int64) int64 {
	var pad [128]byte
	pad[n%128] = 1
	if n == 0 {
		return int64(pad[0]) - 1
	}
	return n + deep(n-1) + int64(pad[n%128]) - 1
}

// goroutineChurn starts batches of goroutines until stop, each growing its stack (deep) and
// building a small tree, and checks every result; it returns how many goroutines it started.
func goroutineChurn(stop *atomic.Bool, failures *atomic.Int64) int64 {
	var spawned int64
	results := make(chan int64, goroutineBatch)
	for !stop.Load() {
		var wg sync.WaitGroup
		for g := 0; g < goroutineBatch; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- deep(deepDepth) + build(5, 1).sum()
			}()
		}
		wg.Wait()
		spawned += goroutineBatch
		for g := 0; g < goroutineBatch; g++ {
			if <-results != deepDepth*(deepDepth+1)/2+expected(5) {
				failures.Add(1)
			}
		}
		runtime.Gosched()
	}
	return spawned
}
