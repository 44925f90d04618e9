// Overload workloads (goprobe/tests/overload.rs): as many allocations, or as many short-lived
// goroutines, as this machine can make, on every P, for -overload-for. Each checks its own work
// (a wrong value read back, or a goroutine that never finished, is an error and exit 1) and
// reports what the runtime counted over the window, so the test can compare goprobe's counts
// and losses with it.

package main

import (
	"flag"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

var overloadFor = flag.Duration("overload-for", 10*time.Second, "how long the overload-* modes run")

func init() {
	register("overload-alloc", overloadAlloc)
	register("overload-goroutines", overloadGoroutines)
}

// cell is 8 pointer-free bytes: the tiny allocator. pair is 16 bytes with a pointer: a small
// size class of its own.
type cell struct{ v uint64 }

type pair struct {
	next *pair
	v    uint64
}

// overloadPaths is the depth of the distinct call paths allocDeep takes: 2^17 distinct stacks,
// four times the 32768 goprobe's stack map holds.
const overloadPaths = 17

//go:noinline
func allocCell(v uint64) *cell { return &cell{v: v} }

//go:noinline
func allocPair(v uint64, next *pair) *pair { return &pair{next: next, v: v} }

// deepA and deepB allocate one pair at the end of the call path that the bits of path spell.
//
//go:noinline
func deepA(path uint64, depth int) *pair {
	if depth == 0 {
		return allocPair(path, nil)
	}
	if (path>>depth)&1 == 0 {
		return deepA(path, depth-1)
	}
	return deepB(path, depth-1)
}

//go:noinline
func deepB(path uint64, depth int) *pair {
	if depth == 0 {
		return allocPair(path, nil)
	}
	if (path>>depth)&1 == 0 {
		return deepA(path, depth-1)
	}
	return deepB(path, depth-1)
}

// allocWorker allocates until stop, keeping the last 64 objects of each kind and checking each
// one's value before it is dropped. It returns the allocations it made and the values that
// were wrong.
func allocWorker(id uint64, stop *atomic.Bool) (allocs, bad uint64) {
	var cells [64]*cell
	var pairs [64]*pair
	var deep [64]*pair
	for i := uint64(0); ; i++ {
		if i&1023 == 0 && stop.Load() {
			return allocs, bad
		}
		want := id<<40 | i
		j := i & 63
		if c := cells[j]; c != nil && c.v != want-64 {
			bad++
		}
		cells[j] = allocCell(want)
		if p := pairs[j]; p != nil && (p.v != want-64 || p.next != nil && p.next.v != p.v-1) {
			bad++
		}
		// Each pair links to the one allocated an iteration earlier.
		pairs[j] = allocPair(want, pairs[(j+63)&63])
		allocs += 2
		// Every 4th iteration one more object from a deep call path: each worker goes through
		// its own 2^16 paths first, then the other workers'.
		if i&3 == 0 {
			path := (id<<16 + i>>2) & (1<<overloadPaths - 1)
			k := (i >> 2) & 63
			if p := deep[k]; p != nil && p.v&(1<<overloadPaths-1) != (path-64)&(1<<overloadPaths-1) {
				bad++
			}
			deep[k] = deepA(path, overloadPaths)
			allocs++
		}
	}
}

// overloadAlloc: one allocating goroutine per P for -overload-for.
func overloadAlloc() (any, error) {
	workers := runtime.GOMAXPROCS(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	allocs := make([]uint64, workers)
	bad := make([]uint64, workers)
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			allocs[w], bad[w] = allocWorker(uint64(w), &stop)
		}(w)
	}
	time.Sleep(*overloadFor)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	var total, wrong uint64
	for w := range allocs {
		total += allocs[w]
		wrong += bad[w]
	}
	if wrong > 0 {
		return nil, fmt.Errorf("overload-alloc: %d of %d objects read back wrong", wrong, total)
	}
	mallocs := m1.Mallocs - m0.Mallocs
	return map[string]any{
		"workers":        workers,
		"allocs":         total,
		"mallocs":        mallocs,
		"total_alloc":    m1.TotalAlloc - m0.TotalAlloc,
		"num_gc":         m1.NumGC - m0.NumGC,
		"seconds":        elapsed.Seconds(),
		"allocs_per_sec": float64(mallocs) / elapsed.Seconds(),
		"deep_stacks":    1 << overloadPaths,
	}, nil
}

// overloadBatch is how many goroutines each spawner starts before it waits for them: they are
// alive at the same time, so the runtime's goroutine table (allgs) grows to workers × batch.
const overloadBatch = 2000

// overloadGoroutines: one spawner per P starts batches of goroutines that each add their number
// to a sum and exit, for -overload-for; then it waits until all of them have exited.
func overloadGoroutines() (any, error) {
	workers := runtime.GOMAXPROCS(0)
	base := runtime.NumGoroutine()
	var stop atomic.Bool
	var wg sync.WaitGroup
	started := make([]uint64, workers)
	var sum, finished atomic.Uint64
	var want uint64
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !stop.Load() {
				var batch sync.WaitGroup
				batch.Add(overloadBatch)
				for i := 0; i < overloadBatch; i++ {
					n := started[w] + uint64(i)
					go func() {
						sum.Add(n)
						finished.Add(1)
						batch.Done()
					}()
				}
				batch.Wait()
				started[w] += overloadBatch
			}
		}(w)
	}
	time.Sleep(*overloadFor)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	settle(base)
	runtime.ReadMemStats(&m1)
	var total uint64
	for _, n := range started {
		total += n
		want += n * (n - 1) / 2 // each spawner numbered its goroutines 0..n-1
	}
	if finished.Load() != total || sum.Load() != want {
		return nil, fmt.Errorf("overload-goroutines: started %d, finished %d, sum %d, want %d",
			total, finished.Load(), sum.Load(), want)
	}
	// The spawners themselves are goroutines this program started and saw exit.
	return map[string]any{
		"started":        total + uint64(workers),
		"finished":       total + uint64(workers),
		"gomaxprocs":     workers,
		"goroutines_end": runtime.NumGoroutine(),
		"base":           base,
		"seconds":        elapsed.Seconds(),
		"per_sec":        float64(total) / elapsed.Seconds(),
		"mallocs":        m1.Mallocs - m0.Mallocs,
		"num_gc":         m1.NumGC - m0.NumGC,
	}, nil
}
