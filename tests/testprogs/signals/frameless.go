// Frameless mode: page faults and CPU time inside the runtime's frameless assembly leaves
// (runtime.memmove, runtime.memclrNoHeapPointers), each called from a named function, then the
// program waits (its profiles can be read) until stdin closes.

package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

var framelessCPU = flag.Duration("frameless-cpu", 1500*time.Millisecond, "frameless mode: thread CPU time to spend in copyHot and clearHot together")

func init() {
	register("frameless", runFrameless)
}

type framelessResult struct {
	// Fresh pages main.touchCopy touched (one fault each, inside runtime.memmove).
	CopyPages int `json:"copy_pages"`
	// Thread CPU time spent in main.copyHot (memmove) and main.clearHot (memclr).
	CopyNs  int64 `json:"copy_ns"`
	ClearNs int64 `json:"clear_ns"`
}

var hotSrc, hotDst = make([]byte, 32<<10), make([]byte, 32<<10)

// copyHot copies 32 KiB over and over for d of thread CPU time: nearly all of it in
// runtime.memmove.
//
//go:noinline
func copyHot(d int64) {
	end := threadCPU() + d
	for threadCPU() < end {
		for i := 0; i < 64; i++ {
			copy(hotDst, hotSrc)
		}
	}
}

// clearHot zeroes 32 KiB over and over (the loop is the compiler's memclr idiom, so the time
// is in runtime.memclrNoHeapPointers).
//
//go:noinline
func clearHot(d int64) {
	end := threadCPU() + d
	for threadCPU() < end {
		for i := 0; i < 64; i++ {
			b := hotDst
			for j := range b {
				b[j] = 0
			}
		}
	}
}

func runFrameless() (any, error) {
	ps := os.Getpagesize()
	n := *faultPages
	buf, err := freshPages(n, ps)
	if err != nil {
		return nil, err
	}
	touchCopy(buf, ps)
	runtime.LockOSThread()
	var copyNs, clearNs int64
	for copyNs+clearNs < framelessCPU.Nanoseconds() {
		t0 := threadCPU()
		copyHot(2 * int64(time.Millisecond))
		t1 := threadCPU()
		clearHot(2 * int64(time.Millisecond))
		t2 := threadCPU()
		copyNs += t1 - t0
		clearNs += t2 - t1
	}
	runtime.UnlockOSThread()
	fmt.Println("done")
	// Until stdin closes: the profiles of a live process can be read.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
	}
	return framelessResult{CopyPages: n, CopyNs: copyNs, ClearNs: clearNs}, nil
}
