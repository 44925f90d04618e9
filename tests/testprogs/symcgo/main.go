// symcgo is symtest's cgo twin: a Go program that calls C (and is called back from C), so it
// is linked by the external linker and its Go text does not start at .text. goprobe-gopclntab's
// golden tests symbolize its Go functions.
package main

/*
#include <stdint.h>
extern int64_t goCallback(int64_t);
static int64_t c_twice(int64_t x) { return goCallback(x) * 2; }
*/
import "C"

import (
	"fmt"
	"strings"
)

//export goCallback
func goCallback(x C.int64_t) C.int64_t { return x + 1 }

func inner(x int) int  { return x*3 + 1 }
func middle(x int) int { return inner(x) + inner(x+1) }

//go:noinline
func useInlined(n int) int {
	t := 0
	for i := 0; i < n; i++ {
		t += middle(i)
	}
	return t
}

func Join[T fmt.Stringer](xs []T) string {
	parts := make([]string, 0, len(xs))
	for _, x := range xs {
		parts = append(parts, x.String())
	}
	return strings.Join(parts, ",")
}

type name string

func (n name) String() string { return strings.ToUpper(string(n)) }

func main() {
	fmt.Println(int64(C.c_twice(20)), useInlined(50), Join([]name{"a", "b"}))
}
