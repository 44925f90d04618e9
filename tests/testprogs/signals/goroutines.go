// Goroutine modes: a wave of parked goroutines (the count over time), and a leak (creation
// sites). Each reports runtime.NumGoroutine() with timestamps and how many goroutines it
// started and saw finish inside the window.
package main

import (
	"flag"
	"runtime"
	"sync"
	"time"
)

var (
	waveN    = flag.Int("wave-n", 1000, "goroutines parked in each wave (goroutine-wave)")
	waveHold = flag.Duration("wave-hold", 1500*time.Millisecond, "how long each wave is held")
	leakN    = flag.Int("leak-n", 300, "goroutines leaked (goroutine-leak)")
)

func init() {
	register("goroutine-wave", goroutineWave)
	register("goroutine-leak", goroutineLeak)
}

// countSample is one runtime.NumGoroutine() reading.
type countSample struct {
	TUnixNs int64 `json:"t_unix_ns"`
	Count   int   `json:"count"`
}

// plateau is a stretch during which the program held the count still.
type plateau struct {
	StartUnixNs int64         `json:"start_unix_ns"`
	EndUnixNs   int64         `json:"end_unix_ns"`
	Samples     []countSample `json:"samples"`
}

// goroutineReport is what both modes print.
type goroutineReport struct {
	// Goroutines this program started and saw exit (all of them; see settle) in the window.
	Started  int       `json:"started"`
	Finished int       `json:"finished"`
	Plateaus []plateau `json:"plateaus"`
	// Goroutines left running at the end (leaked on purpose).
	Leaked     int `json:"leaked"`
	Gomaxprocs int `json:"gomaxprocs"`
}

// hold samples NumGoroutine every 20 ms for d.
func hold(d time.Duration) plateau {
	p := plateau{StartUnixNs: time.Now().UnixNano()}
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		p.Samples = append(p.Samples, countSample{time.Now().UnixNano(), runtime.NumGoroutine()})
	}
	p.EndUnixNs = time.Now().UnixNano()
	return p
}

// settle waits until NumGoroutine is back to want: the goroutines that signalled they were done
// have really exited (gone through goexit0/gdestroy onto a free list).
func settle(want int) {
	for runtime.NumGoroutine() > want {
		time.Sleep(time.Millisecond)
	}
}

// wave parks n goroutines, holds them, releases them and waits for them to exit.
func wave(n int, d time.Duration) plateau {
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-release
		}()
	}
	started.Wait()
	p := hold(d)
	close(release)
	settle(base)
	return p
}

func goroutineWave() (any, error) {
	r := goroutineReport{Gomaxprocs: runtime.GOMAXPROCS(0)}
	// The first GC starts the runtime's mark workers (system goroutines, created with `go`
	// statements in the runtime): they must count as created but never in NumGoroutine.
	runtime.GC()
	r.Plateaus = append(r.Plateaus, hold(300*time.Millisecond))
	for _, n := range []int{*waveN, *waveN / 2} {
		r.Plateaus = append(r.Plateaus, wave(n, *waveHold))
		r.Started += n
		r.Finished += n
	}
	r.Plateaus = append(r.Plateaus, hold(300*time.Millisecond))
	return r, nil
}

// leakForever starts n goroutines that block forever: the leak the report must name.
//
//go:noinline
func leakForever(n int, started *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			select {}
		}()
	}
}

// shortLived starts n goroutines that exit at once: a smaller, innocent creation site.
//
//go:noinline
func shortLived(n int, done *sync.WaitGroup) {
	for i := 0; i < n; i++ {
		go func() {
			done.Done()
		}()
	}
}

func goroutineLeak() (any, error) {
	r := goroutineReport{Gomaxprocs: runtime.GOMAXPROCS(0)}
	base := runtime.NumGoroutine()
	short := *leakN / 3
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		wg.Add(*leakN/3 + short/3)
		leakForever(*leakN/3, &wg)
		shortLived(short/3, &wg)
		wg.Wait()
		r.Started += *leakN/3 + short/3
		r.Finished += short / 3
		r.Leaked += *leakN / 3
		settle(base + r.Leaked)
		time.Sleep(100 * time.Millisecond)
	}
	r.Plateaus = append(r.Plateaus, hold(500*time.Millisecond))
	return r, nil
}

var churnFor = flag.Duration("churn-for", 3*time.Second, "how long goroutine-churn runs")

func init() {
	register("goroutine-churn", goroutineChurn)
}

// goroutineChurn creates short goroutines as fast as it can, 100 at a time, for -churn-for:
// the bench's measure of what a creation (and exit) costs under goprobe.
func goroutineChurn() (any, error) {
	start := time.Now()
	n := 0
	for time.Since(start) < *churnFor {
		var wg sync.WaitGroup
		wg.Add(100)
		for i := 0; i < 100; i++ {
			go wg.Done()
		}
		wg.Wait()
		n += 100
	}
	secs := time.Since(start).Seconds()
	return map[string]float64{"goroutines": float64(n), "seconds": secs, "per_sec": float64(n) / secs}, nil
}
