package main

// -mode=mixed: every kind of work goprobe measures, at once and for as long as a test needs, so
// that each panel of the Grafana dashboards has series to show (goprobe/tests/dashboards.rs runs
// every panel's query against a Prometheus that scrapes goprobe).

import (
	"bufio"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// mixedFaultPages is how many fresh pages touchPages touches per round (every 100 ms).
const mixedFaultPages = 256

// runMixed runs until stdin says "stop" (or closes):
//   - churn (4 goroutines building and checking trees): heap-triggered GC cycles, with mark
//     assists charged to the allocating goroutines, and allocations attributed to main.build;
//   - runtime.GC every 500 ms: forced cycles;
//   - runtime.ReadMemStats every 250 ms: stop-the-world pauses that are not GC;
//   - 50 short-lived goroutines every 100 ms: goroutine creation and a moving goroutine count;
//   - mixedFaultPages fresh anonymous pages mapped, touched and unmapped every 100 ms: minor
//     page faults taken in main.touchPages.
//
// It reports how many of each it did.
func runMixed(in *bufio.Scanner) map[string]any {
	var stop atomic.Bool
	var iterations, failures atomic.Int64
	go func() {
		for in.Scan() && in.Text() != "stop" {
		}
		stop.Store(true)
	}()
	done := make(chan struct{})
	go func() { churn(&stop, &iterations, &failures); close(done) }()

	pageSize := os.Getpagesize()
	var forced, readMemStats, spawned, faultPages int
	var ms runtime.MemStats
	var wg sync.WaitGroup
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 1; !stop.Load(); i++ {
		<-tick.C
		if i%10 == 0 {
			runtime.GC()
			forced++
		}
		if i%5 == 0 {
			runtime.ReadMemStats(&ms)
			readMemStats++
		}
		if i%2 == 0 {
			for g := 0; g < 50; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					time.Sleep(200 * time.Millisecond)
				}()
			}
			spawned += 50
			if err := touchPages(mixedFaultPages, pageSize); err != nil {
				panic(err)
			}
			faultPages += mixedFaultPages
		}
	}
	<-done
	wg.Wait()
	settle()
	return map[string]any{
		"iterations":     iterations.Load(),
		"failures":       failures.Load(),
		"forced_gc":      forced,
		"read_mem_stats": readMemStats,
		"goroutines":     spawned,
		"fault_pages":    faultPages,
	}
}

// touchPages maps n fresh anonymous pages, writes one byte into each (one minor fault per page,
// taken in this function's own code) and unmaps them.
//
//go:noinline
func touchPages(n, pageSize int) error {
	b, err := syscall.Mmap(-1, 0, n*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return err
	}
	// Refuse transparent huge pages, which would turn the n faults into one.
	if err := syscall.Madvise(b, syscall.MADV_NOHUGEPAGE); err != nil {
		return err
	}
	for off := 0; off < len(b); off += pageSize {
		b[off] = 1
	}
	return syscall.Munmap(b)
}
