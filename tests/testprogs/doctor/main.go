// doctor is the workload for `goprobe doctor`'s tests: each mode sets up one deployment
// situation and runs it until killed. It prints "ready" (with its GOMAXPROCS) once the mode runs.
//
// Modes:
//   - healthy: light steady work; a GC every few seconds at most.
//   - cpu: GOMAXPROCS-many busy goroutines that also allocate, so GC cycles run while a CPU
//     quota throttles the process.
//   - gogc: a steady live heap of a few MB plus allocation churn; with GOGC=10 the GC runs many
//     times a second.
//   - leak: leakyWorker goroutines, created by spawnLeakyWorkers, that never exit; 50 more
//     every 100 ms.
//
// Every 200 ms it prints what the runtime says, for the tests to compare with doctor's numbers:
//   stats t_unix_ns=<now> gc=<completed GC cycles> goroutines=<runtime.NumGoroutine()>
// read from runtime/metrics, which stops nothing.
//
// Keep it buildable with every Go release the tests use, Go 1.19 included.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"time"
)

var sink []byte

// sinks keeps cpu's allocations on the heap, one slot per goroutine.
var sinks [64][]byte

func main() {
	mode := flag.String("mode", "healthy", "healthy, cpu, gogc or leak")
	flag.Parse()
	run, ok := map[string]func(){
		"healthy": healthy,
		"cpu":     cpu,
		"gogc":    gogc,
		"leak":    leak,
	}[*mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "doctor: unknown -mode %q\n", *mode)
		os.Exit(2)
	}
	fmt.Printf("ready gomaxprocs=%d\n", runtime.GOMAXPROCS(0))
	go stats()
	run()
}

// stats prints the runtime's GC cycle count and goroutine count every 200 ms.
func stats() {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	for {
		metrics.Read(s)
		fmt.Printf("stats t_unix_ns=%d gc=%d goroutines=%d\n",
			time.Now().UnixNano(), s[0].Value.Uint64(), runtime.NumGoroutine())
		time.Sleep(200 * time.Millisecond)
	}
}

// healthy allocates about 200 KB/s with a 4 MB steady heap: the default GOGC=100 gives a GC
// every ~20 s.
func healthy() {
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 64<<10)
	}
	for i := 0; ; i++ {
		sink = make([]byte, 2<<10)
		live[i%len(live)][i%1024] = byte(i)
		time.Sleep(10 * time.Millisecond)
	}
}

// cpu keeps GOMAXPROCS goroutines busy; each allocates now and then so the GC runs (its
// stop-the-world pauses are what a throttled process makes long).
func cpu() {
	n := runtime.GOMAXPROCS(0)
	for w := 0; w < n; w++ {
		go func(w int) {
			x := uint64(w)
			for i := 0; ; i++ {
				for j := 0; j < 2000; j++ {
					x = x*6364136223846793005 + 1442695040888963407
				}
				if i%64 == 0 {
					b := make([]byte, 32<<10)
					b[0] = byte(x)
					sinks[w%len(sinks)] = b // escapes: a heap allocation
				}
			}
		}(w)
	}
	select {}
}

// gogc holds 8 MB live and allocates ~40 MB/s of garbage.
func gogc() {
	live := make([][]byte, 128)
	for i := range live {
		live[i] = make([]byte, 64<<10)
	}
	for i := 0; ; i++ {
		for j := 0; j < 40; j++ {
			sink = make([]byte, 1<<10)
		}
		live[i%len(live)][0] = byte(i)
		time.Sleep(time.Millisecond)
	}
}

func leak() {
	for {
		spawnLeakyWorkers(50)
		time.Sleep(100 * time.Millisecond)
	}
}

//go:noinline
func spawnLeakyWorkers(n int) {
	for i := 0; i < n; i++ {
		go leakyWorker(make(chan int))
	}
}

// leakyWorker waits on a channel nobody ever sends on.
func leakyWorker(c chan int) {
	<-c
}
