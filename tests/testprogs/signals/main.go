// signals is the ground-truth workload for goprobe's stack-attributed signals (allocations,
// goroutines, page faults, CPU): each mode does a known amount of one kind of work while goprobe
// watches, and reports what the Go runtime and the kernel themselves measured over that window.
//
// Protocol (as gcstress): it prints "ready" once idle, waits for a line on stdin ("start"), runs
// the mode, then prints one JSON document on stdout and exits (with -hold: waits for one more
// line first, idle, so that a test can read /proc/<pid> of the finished process). Modes register themselves from
// the file of their signal (alloc.go, goroutines.go, faults.go, cpu.go) with register().
//
// Keep it buildable with every Go release the tests use, Go 1.19 included.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// A mode runs its workload and returns what it measured, as a JSON-encodable value.
type mode func() (any, error)

var modes = map[string]mode{}

// register adds a mode; called from init() in each signal's file.
func register(name string, m mode) {
	if _, dup := modes[name]; dup {
		panic("mode registered twice: " + name)
	}
	modes[name] = m
}

func main() {
	name := flag.String("mode", "", "workload to run: "+strings.Join(modeNames(), ", "))
	hold := flag.Bool("hold", false, "after the JSON, wait idle for one more stdin line before exiting")
	flag.Parse()
	run, ok := modes[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "signals: unknown -mode %q (have %s)\n", *name, strings.Join(modeNames(), ", "))
		os.Exit(2)
	}
	in := bufio.NewScanner(os.Stdin)
	// The line buffer is made before "ready", so the wait for the start line allocates
	// nothing: the process is idle from "ready" on (tests/page_faults.rs compares exact
	// page-fault counts around it).
	in.Buffer(make([]byte, 4096), 1<<20)
	fmt.Println("ready")
	if !in.Scan() {
		fmt.Fprintln(os.Stderr, "signals: stdin closed before start")
		os.Exit(2)
	}
	out, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "signals:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "signals:", err)
		os.Exit(1)
	}
	if *hold {
		in.Scan()
	}
}

func modeNames() []string {
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
