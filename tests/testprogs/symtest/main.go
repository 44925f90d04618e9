// symtest exercises what a symbolizer must get right: inlining (several levels deep),
// generics, closures, methods on pointer and value receivers, deferred functions and
// panics/recover. goprobe-gopclntab's golden tests compare its frames for this binary with
// `go tool addr2line` and with the DWARF of the same build. It runs briefly and exits.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

type Number interface {
	~int | ~int64 | ~float64
}

// Sum is generic; its instantiations get shape-based names (main.Sum[...]).
func Sum[T Number](xs []T) T {
	var s T
	for _, x := range xs {
		s += x
	}
	return s
}

// Map is generic with two type parameters and a function argument.
func Map[T, U any](xs []T, f func(T) U) []U {
	out := make([]U, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}

type Stack[T any] struct{ items []T }

func (s *Stack[T]) Push(v T) { s.items = append(s.items, v) }

func (s *Stack[T]) Pop() (T, bool) {
	var zero T
	if len(s.items) == 0 {
		return zero, false
	}
	v := s.items[len(s.items)-1]
	s.items = s.items[:len(s.items)-1]
	return v, true
}

type Point struct{ X, Y int }

// Value receiver, small enough to inline.
func (p Point) Add(q Point) Point { return Point{p.X + q.X, p.Y + q.Y} }

// Pointer receiver, small enough to inline.
func (p *Point) Scale(k int) { p.X *= k; p.Y *= k }

// Pointer receiver, kept out of line.
//
//go:noinline
func (p *Point) String() string { return fmt.Sprintf("(%d,%d)", p.X, p.Y) }

// Three levels of inlining: outer -> middle -> inner.
func inner(x int) int  { return x*3 + 1 }
func middle(x int) int { return inner(x) + inner(x+1) }
func outer(x int) int  { return middle(x) * 2 }

//go:noinline
func useInlined(n int) int {
	t := 0
	for i := 0; i < n; i++ {
		t += outer(i)
	}
	return t
}

//go:noinline
func withDefer(n int) (r int) {
	defer func() {
		if e := recover(); e != nil {
			r = -1
		}
	}()
	defer func() { r += n }()
	if n > 1000 {
		panic("too big")
	}
	return n * 2
}

//go:noinline
func closures(n int) int {
	acc := 0
	add := func(k int) { acc += k }
	for i := 0; i < n; i++ {
		add(i)
	}
	mul := func(k int) func(int) int { return func(x int) int { return x * k } }
	return mul(acc)(2)
}

type Shape interface{ Area() float64 }
type Rect struct{ W, H float64 }
type Circle struct{ R float64 }

func (r Rect) Area() float64    { return r.W * r.H }
func (c *Circle) Area() float64 { return 3.14159 * c.R * c.R }

//go:noinline
func totalArea(shapes []Shape) float64 {
	t := 0.0
	for _, s := range shapes {
		t += s.Area()
	}
	return t
}

func main() {
	ints := []int{1, 2, 3, 4, 5}
	fmt.Println(Sum(ints), Sum([]float64{1.5, 2.5}))
	strs := Map(ints, func(i int) string { return strings.Repeat("x", i) })
	sort.Strings(strs)
	var st Stack[string]
	for _, s := range strs {
		st.Push(s)
	}
	v, _ := st.Pop()
	p := Point{1, 2}.Add(Point{3, 4})
	p.Scale(3)
	fmt.Println(v, p.String(), useInlined(100), withDefer(10), withDefer(2000), closures(10))
	fmt.Println(totalArea([]Shape{Rect{2, 3}, &Circle{1}}))
	if len(os.Args) > 1 {
		os.Exit(1)
	}
}
