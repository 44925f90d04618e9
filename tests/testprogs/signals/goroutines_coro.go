//go:build go1.23

// The coroutine mode (Go 1.23+: iter.Pull runs its iterator on a coroutine goroutine, created
// by runtime.newcoro, not runtime.newproc).
package main

import (
	"iter"
	"runtime"
)

func init() {
	register("goroutine-coro", goroutineCoro)
}

// pullMany runs n iterators to their end through iter.Pull: n coroutine goroutines created
// and exited.
//
//go:noinline
func pullMany(n int) int {
	sum := 0
	for i := 0; i < n; i++ {
		next, stop := iter.Pull(func(yield func(int) bool) {
			for j := 0; j < 3; j++ {
				if !yield(j) {
					return
				}
			}
		})
		for {
			v, ok := next()
			if !ok {
				break
			}
			sum += v
		}
		stop()
	}
	return sum
}

func goroutineCoro() (any, error) {
	r := goroutineReport{Gomaxprocs: runtime.GOMAXPROCS(0)}
	base := runtime.NumGoroutine()
	const n = 200
	pullMany(n)
	settle(base)
	r.Started, r.Finished = n, n
	r.Plateaus = append(r.Plateaus, hold(300e6))
	return r, nil
}
