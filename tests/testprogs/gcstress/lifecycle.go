package main

// -mode=exec and -mode=fork: a target that replaces its program or starts child processes
// while goprobe watches it (agent/tests/target_lifecycle.rs).

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
)

// execSelf prints out (the JSON line of the program before the exec) and exec()s this binary
// with -mode pauses -cycles 5: the same pid, a new image of the same file.
func execSelf(out map[string]any) {
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
	settle()
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
	settle()
}
