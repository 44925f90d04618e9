package main

// -mode=exec and -mode=fork: a target that replaces its program or starts child processes
// while goprobe watches it (goprobe/tests/target_lifecycle.rs).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// execSelf prints out (the JSON line of the program before the exec) and exec()s this binary
// with -mode pauses -cycles 5: the same pid, a new image of the same file.
func execSelf(out map[string]any) {
	finishPauses(out)
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	panic(syscall.Exec(self, []string{self, "-mode", "pauses", "-cycles", "5"}, os.Environ()))
}

// child is what one child process of runFork reported.
type child struct {
	Pid      int            `json:"pid"`
	Err      string         `json:"err,omitempty"`
	Result   map[string]any `json:"result"`
	ExitCode int            `json:"exit_code"`
}

// runChild runs this binary with -mode pauses -cycles 10 to its end (os/exec: clone with
// CLONE_VM|CLONE_VFORK, then execve, src/syscall/exec_linux.go).
func runChild() child {
	self, err := os.Executable()
	if err != nil {
		return child{Err: err.Error()}
	}
	cmd := exec.Command(self, "-mode", "pauses", "-cycles", "10")
	cmd.Stdin = strings.NewReader("start\n")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return child{Err: err.Error()}
	}
	if err := cmd.Start(); err != nil {
		return child{Err: err.Error()}
	}
	c := child{Pid: cmd.Process.Pid}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if strings.HasPrefix(lines.Text(), "{") {
			if err := json.Unmarshal(lines.Bytes(), &c.Result); err != nil {
				c.Err = err.Error()
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		c.Err = fmt.Sprint(err)
	}
	c.ExitCode = cmd.ProcessState.ExitCode()
	return c
}

// runFork runs runPauses while n child processes run, and reports them in out["children"].
func runFork(out map[string]any, cycles, n int) {
	results := make([]child, n)
	var wg sync.WaitGroup
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i] = runChild()
		}(i)
	}
	runPauses(out, cycles)
	wg.Wait()
	out["children"] = results
	finishPauses(out) // cycles ran while the children finished too
}

// finishPauses turns GC off, so that no cycle starts after this (SetGCPercent(-1) also waits
// for one in flight, src/runtime/mgcpacer.go setGCPercent), and adds the cycles that ran since
// runPauses returned to out: its pauses then cover every cycle of the process until it exits
// or exec()s.
func finishPauses(out map[string]any) {
	gcOff()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out["read_mem_stats"] = out["read_mem_stats"].(int) + 1
	pauses := out["pause_ns"].(map[string]uint64)
	for c := out["numgc_end"].(uint32) + 1; c <= ms.NumGC; c++ {
		pauses[strconv.FormatUint(uint64(c), 10)] = ms.PauseNs[(c+255)%256]
	}
	out["numgc_end"] = ms.NumGC
}
