// Allocation workloads (goprobe attach --alloc): known allocation sites, measured with
// runtime.ReadMemStats over the window.
//
// SIGNALS_MEMPROFILERATE, when set, is stored into runtime.MemProfileRate before "ready": this
// program does not link runtime/pprof, so the runtime turned its heap-profile sampler off
// (runtime.disableMemoryProfiling); setting the rate turns it back on, as a program that
// imports runtime/pprof has it (512 KiB by default).
//
// Mode alloc-detach checks that goprobe leaves MemProfileRate as it found it: it runs the alloc
// mix and prints its JSON at once, then waits for a second line on stdin (the test sends it once
// goprobe has exited, i.e. detached) and prints runtime.MemProfileRate as it is then.

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// rateAtReady is runtime.MemProfileRate before "ready", so before goprobe attached.
var rateAtReady int

func init() {
	if v := os.Getenv("SIGNALS_MEMPROFILERATE"); v != "" {
		r, err := strconv.Atoi(v)
		if err != nil {
			panic("SIGNALS_MEMPROFILERATE: " + err.Error())
		}
		runtime.MemProfileRate = r
	}
	rateAtReady = runtime.MemProfileRate
	register("alloc", allocMix)
	register("alloc-detach", allocDetach)
	register("alloc-flood", allocFlood)
	register("alloc-stacks", allocStacks)
}

// node is a 48-byte object with pointers; tiny is 8 pointer-free bytes (the tiny allocator).
type node struct {
	next *node
	val  int
	pad  [4]int
}

type tiny struct{ a, b uint32 }

// Sinks keep the objects reachable for a while, so they escape to the heap.
var (
	sinkA     [64]*[512]byte
	sinkB     [64]*[128]byte
	sinkNode  [64]*node
	sinkTiny  [64]*tiny
	sinkLarge *[40000]byte
)

// allocA allocates 4 times the bytes of allocB (512 vs 128 bytes, both exact size classes).
//
//go:noinline
func allocA(i int) { sinkA[i&63] = new([512]byte) }

//go:noinline
func allocB(i int) { sinkB[i&63] = new([128]byte) }

//go:noinline
func allocNode(i int) { sinkNode[i&63] = &node{val: i} }

//go:noinline
func allocTiny(i int) { sinkTiny[i&63] = &tiny{a: uint32(i)} }

//go:noinline
func allocLarge() { sinkLarge = new([40000]byte) }

func iterations() int {
	if v := os.Getenv("SIGNALS_ALLOC_N"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return 300000
}

// allocMix: per iteration 512 B at allocA, 128 B at allocB (the 80/20 pair), a 48-byte node,
// an 8-byte tiny object, and every 64th iteration a 40000-byte large object.
func allocMix() (any, error) {
	n := iterations()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	for i := 0; i < n; i++ {
		allocA(i)
		allocB(i)
		allocNode(i)
		allocTiny(i)
		if i%64 == 0 {
			allocLarge()
		}
	}
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	return map[string]any{
		"total_alloc":               m1.TotalAlloc - m0.TotalAlloc,
		"mallocs":                   m1.Mallocs - m0.Mallocs,
		"num_gc":                    m1.NumGC - m0.NumGC,
		"site_a":                    "main.allocA",
		"site_b":                    "main.allocB",
		"iterations":                n,
		"seconds":                   elapsed.Seconds(),
		"mem_profile_rate":          runtime.MemProfileRate,
		"mem_profile_rate_at_ready": rateAtReady,
	}, nil
}

// allocDetach: allocMix, its JSON printed at once; then, after a line on stdin (sent once
// goprobe has detached), runtime.MemProfileRate as it is now.
func allocDetach() (any, error) {
	out, err := allocMix()
	if err != nil {
		return nil, err
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return nil, err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return nil, fmt.Errorf("waiting for the line after detach: %w", err)
	}
	return map[string]any{"mem_profile_rate_after_detach": runtime.MemProfileRate}, nil
}

var floodSink [64]*[2]uint64

//go:noinline
func floodAlloc(i int) { floodSink[i&63] = new([2]uint64) }

// allocFlood: every P allocates 16-byte objects as fast as it can for 2 seconds.
func allocFlood() (any, error) {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	deadline := start.Add(2 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				floodAlloc(i)
				if i&1023 == 0 && time.Now().After(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	runtime.ReadMemStats(&m1)
	mallocs := m1.Mallocs - m0.Mallocs
	return map[string]any{
		"total_alloc":    m1.TotalAlloc - m0.TotalAlloc,
		"mallocs":        mallocs,
		"seconds":        elapsed.Seconds(),
		"allocs_per_sec": float64(mallocs) / elapsed.Seconds(),
		"site":           "main.floodAlloc",
	}, nil
}

// Two functions make 2^depth distinct call paths: more stacks than goprobe's stack map holds.

var stacksSink [64]*[32]byte

//go:noinline
func pathA(i, depth int) {
	if depth == 0 {
		stacksSink[i&63] = new([32]byte)
		return
	}
	if (i>>depth)&1 == 0 {
		pathA(i, depth-1)
	} else {
		pathB(i, depth-1)
	}
}

//go:noinline
func pathB(i, depth int) {
	if depth == 0 {
		stacksSink[i&63] = new([32]byte)
		return
	}
	if (i>>depth)&1 == 0 {
		pathA(i, depth-1)
	} else {
		pathB(i, depth-1)
	}
}

// allocStacks: one 32-byte object from each of 2^16 distinct stacks, 4 rounds.
func allocStacks() (any, error) {
	const depth = 16
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for round := 0; round < 4; round++ {
		for i := 0; i < 1<<depth; i++ {
			pathA(i<<1, depth)
		}
	}
	runtime.ReadMemStats(&m1)
	return map[string]any{
		"mallocs":     m1.Mallocs - m0.Mallocs,
		"total_alloc": m1.TotalAlloc - m0.TotalAlloc,
		"stacks":      1 << depth,
	}, nil
}
