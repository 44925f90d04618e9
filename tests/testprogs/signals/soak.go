// Soak workloads (goprobe/tests/soak.rs): soak-stacks allocates at the end of a new call path
// at a steady rate for as long as -soak-for, so that goprobe sees a stream of distinct stacks;
// soak-blip is a program that starts, does a little GC work and exits, many times over.

package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
)

var (
	soakFor  = flag.Duration("soak-for", time.Minute, "how long soak-stacks runs")
	soakRate = flag.Int("soak-rate", 400, "soak-stacks call paths per second")
)

func init() {
	register("soak-stacks", soakStacks)
	register("soak-blip", soakBlip)
}

// soakDepth is the number of bits of the path the calls spell: 2^20 distinct stacks before
// the paths repeat.
const soakDepth = 20

// soakLeafBytes is large against the sampling rate the mode sets (soakSampleRate), so that the
// runtime's heap-profile sampler takes nearly every leaf allocation (p = 1 - e^-8).
const (
	soakLeafBytes  = 4096
	soakSampleRate = 512
)

var soakSink []byte

//go:noinline
func soakLeaf() []byte {
	b := make([]byte, soakLeafBytes)
	soakSink = b
	return b
}

// soakZero and soakOne are the frames of the path's bits: below the root (always soakZero),
// the frame at depth d (leaf side first: bit 0 next to soakLeaf) is soakOne when bit d is set.
//
//go:noinline
func soakZero(path uint64, depth int) []byte {
	if depth == 0 {
		return soakLeaf()
	}
	if (path>>(depth-1))&1 == 0 {
		return soakZero(path, depth-1)
	}
	return soakOne(path, depth-1)
}

//go:noinline
func soakOne(path uint64, depth int) []byte {
	if depth == 0 {
		return soakLeaf()
	}
	if (path>>(depth-1))&1 == 0 {
		return soakZero(path, depth-1)
	}
	return soakOne(path, depth-1)
}

type soakResult struct {
	// Paths taken: path i is i mod 2^soakDepth.
	Paths uint64 `json:"paths"`
	// Per second of the run: unix ns at its end and the paths taken by then.
	Progress [][2]int64 `json:"progress"`
}

func soakStacks() (any, error) {
	runtime.MemProfileRate = soakSampleRate
	start := time.Now()
	var res soakResult
	next := start.Add(time.Second)
	for {
		now := time.Now()
		if now.Sub(start) >= *soakFor {
			break
		}
		// Catch up with the rate: the count follows the clock, not the scheduling.
		want := uint64(now.Sub(start).Seconds() * float64(*soakRate))
		for res.Paths < want {
			soakZero(res.Paths%(1<<soakDepth), soakDepth)
			res.Paths++
		}
		if now.After(next) {
			res.Progress = append(res.Progress, [2]int64{now.UnixNano(), int64(res.Paths)})
			fmt.Fprintf(os.Stderr, "soak: %d paths\n", res.Paths)
			next = next.Add(time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	res.Progress = append(res.Progress, [2]int64{time.Now().UnixNano(), int64(res.Paths)})
	return res, nil
}

// soakBlip lives about two seconds: a few allocations and GC cycles, then it exits.
func soakBlip() (any, error) {
	var keep [][]byte
	for i := 0; i < 8; i++ {
		for j := 0; j < 64; j++ {
			keep = append(keep, make([]byte, 16<<10))
		}
		runtime.GC()
		time.Sleep(250 * time.Millisecond)
		keep = keep[:0]
	}
	return map[string]int{"cycles": 8}, nil
}
