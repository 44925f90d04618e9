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
	for w := 0; w < 4; w++ {
		go func(w int) {
			for i := w; ; i += 4 {
				b := handle(i)
				mu.Lock()
				cache[i%5000] = b
				mu.Unlock()
			}
		}(w)
	}
	fmt.Printf("demo service running as pid %d\n", os.Getpid())
	tick := time.NewTicker(time.Second)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var ms runtime.MemStats
	for {
		select {
		case <-tick.C:
			runtime.ReadMemStats(&ms) // what a metrics exporter does every scrape
		case <-sig:
			return
		}
	}
}
