// server and load modes: an HTTP server on loopback whose handler does a little JSON work, and
// the load generator that sends it a fixed number of requests from a few keep-alive connections.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

var (
	addr        = flag.String("addr", "", "load: the server's HOST:PORT")
	requests    = flag.Int("requests", 20000, "load: requests to send (each one timed)")
	concurrency = flag.Int("concurrency", 4, "load: connections sending at once")
)

// handle decodes the id query, builds a few items and encodes them as the response.
func handle(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.Atoi(r.URL.Query().Get("id"))
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(makeItems(id, 4)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// serve runs the server until "stop" or stdin closes; its result counts the requests it served
// between "start" and then, and their handler times.
func serve(in *bufio.Scanner) result {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	var (
		mu       sync.Mutex
		counting bool
		lat      []int64
	)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := time.Now()
		handle(w, r)
		d := int64(time.Since(t))
		mu.Lock()
		if counting {
			lat = append(lat, d)
		}
		mu.Unlock()
	})
	go func() { _ = http.Serve(ln, h) }()
	fmt.Println("addr", ln.Addr().String())
	waitStart(in)
	mu.Lock()
	counting = true
	mu.Unlock()
	cpu0 := cpuTime()
	start := time.Now()
	for in.Scan() && in.Text() != "stop" {
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	mu.Lock()
	defer mu.Unlock()
	return summarize(lat, wall, cpu)
}

// load sends -requests GETs to -addr from -concurrency workers and times each; connections are
// opened (one warm-up request per worker) before "start".
func load(in *bufio.Scanner) result {
	c := *concurrency
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c, MaxConnsPerHost: c}}
	get := func(i int) {
		resp, err := client.Get("http://" + *addr + "/item?id=" + strconv.Itoa(i))
		if err != nil {
			fail(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fail(fmt.Errorf("status %s", resp.Status))
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func(w int) { defer wg.Done(); get(w) }(w)
	}
	wg.Wait()
	waitStart(in)
	lats := make([][]int64, c)
	cpu0 := cpuTime()
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			// Worker w sends requests w, w+c, w+2c, ...
			for i := w; i < *requests; i += c {
				t := time.Now()
				get(i)
				lats[w] = append(lats[w], int64(time.Since(t)))
			}
		}(w)
	}
	wg.Wait()
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	var all []int64
	for _, l := range lats {
		all = append(all, l...)
	}
	return summarize(all, wall, cpu)
}
