// demo is the workload `cargo xtask demo` profiles: a small "service" whose workers decode,
// transform and encode JSON orders, keep a bounded cache, and export stats every second the
// way a metrics library does (runtime.ReadMemStats, a stop-the-world of its own).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

type item struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty"`
	Price float64 `json:"price"`
}

type order struct {
	ID    int               `json:"id"`
	Items []item            `json:"items"`
	Tags  map[string]string `json:"tags"`
}

func handle(id int) []byte {
	o := order{ID: id, Tags: map[string]string{"region": "eu", "tier": fmt.Sprint(id % 3)}}
	for i := 0; i < 20+id%30; i++ {
		o.Items = append(o.Items, item{SKU: fmt.Sprintf("sku-%d-%d", id, i), Qty: i, Price: float64(i) * 1.5})
	}
	b, _ := json.Marshal(o)
	var back order
	_ = json.Unmarshal(b, &back)
	return b
}

func main() {
	var mu sync.Mutex
	cache := map[int][]byte{}
	// DEMO_WORKERS (default 4) and DEMO_SLEEP_US (pause after each request, default none) let
	// the agent tests run many of these without starving the machine.
	workers, sleep := 4, 0
	fmt.Sscan(os.Getenv("DEMO_WORKERS"), &workers)
	fmt.Sscan(os.Getenv("DEMO_SLEEP_US"), &sleep)
	for w := 0; w < workers; w++ {
		go func(w int) {
			for i := w; ; i += workers {
				b := handle(i)
				mu.Lock()
				cache[i%5000] = b
				mu.Unlock()
				if sleep > 0 {
					time.Sleep(time.Duration(sleep) * time.Microsecond)
				}
			}
		}(w)
	}
	fmt.Printf("demo service running as pid %d\n", os.Getpid())
	lifecycle() // the agent tests' knobs: exit or exec into another program after a while
	tick := time.NewTicker(time.Second)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var ms runtime.MemStats
	for {
		select {
		case <-tick.C:
			runtime.ReadMemStats(&ms) // what a metrics exporter does every scrape
			if os.Getenv("DEMO_PRINT_GC") != "" {
				fmt.Printf("numgc %d\n", ms.NumGC)
			}
		case <-sig:
			return
		}
	}
}

// lifecycle reads DEMO_EXIT_AFTER_MS (exit 0 after that long) and DEMO_EXEC_AFTER_MS with
// DEMO_EXEC (replace this process with that program, same pid and arguments, after that
// long). Arguments are otherwise ignored.
func lifecycle() {
	after := func(name string) time.Duration {
		var ms int
		fmt.Sscan(os.Getenv(name), &ms)
		return time.Duration(ms) * time.Millisecond
	}
	if d := after("DEMO_EXIT_AFTER_MS"); d > 0 {
		time.AfterFunc(d, func() { os.Exit(0) })
	}
	if path, d := os.Getenv("DEMO_EXEC"), after("DEMO_EXEC_AFTER_MS"); path != "" && d > 0 {
		time.AfterFunc(d, func() {
			var env []string
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "DEMO_EXEC") {
					env = append(env, kv)
				}
			}
			err := syscall.Exec(path, append([]string{path}, os.Args[1:]...), env)
			fmt.Fprintln(os.Stderr, "exec:", err)
			os.Exit(1)
		})
	}
}
