// goroutines mode: one operation fans out fanOut short goroutines, each passing a value through a
// small pipeline of unbuffered channels, and fans their results back in.
package main

import "sync"

const fanOut = 32

func goroutinesOp(i int) {
	in := make(chan int)
	out := make(chan int, fanOut)
	var wg sync.WaitGroup
	// Stage: one goroutine squares what the workers send it.
	go func() {
		for v := range in {
			out <- v * v
		}
	}()
	for k := 0; k < fanOut; k++ {
		wg.Add(1)
		go func(v int) {
			defer wg.Done()
			in <- v
		}(i + k)
	}
	sum := 0
	for k := 0; k < fanOut; k++ {
		sum += <-out
	}
	wg.Wait()
	close(in)
	sink = sum
}
