// Page-fault modes: a known number of fresh pages touched in named functions, with the
// process's own getrusage minor/major fault counts over the window as ground truth.

package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"
)

var faultPages = flag.Int("fault-pages", 20000, "faults mode: fresh pages touchCopy touches (touchStore touches a quarter as many)")

func init() {
	register("faults", runFaults)
}

// faultsResult is what the kernel counted for the whole process over the window.
type faultsResult struct {
	// Minor and major faults of the process (getrusage RUSAGE_SELF) over the window.
	Minflt int64 `json:"minflt"`
	Majflt int64 `json:"majflt"`
	// Fresh pages main.touchCopy and main.touchStore touched, and the minor faults counted
	// around each call.
	CopyPages   int   `json:"copy_pages"`
	CopyMinflt  int64 `json:"copy_minflt"`
	StorePages  int   `json:"store_pages"`
	StoreMinflt int64 `json:"store_minflt"`
	// Fresh pages main.readFresh filled with one read(2) from /dev/zero: the kernel takes
	// those faults in copy_to_user, on the process's behalf.
	ReadPages  int   `json:"read_pages"`
	ReadMinflt int64 `json:"read_minflt"`
	PageSize    int   `json:"page_size"`
}

func rusage() (syscall.Rusage, error) {
	var ru syscall.Rusage
	err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru, err
}

// freshPages maps n anonymous pages the process has never touched. Transparent huge pages are
// refused for them, so that each page costs exactly one fault.
func freshPages(n, pageSize int) ([]byte, error) {
	b, err := syscall.Mmap(-1, 0, n*pageSize, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %d pages: %w", n, err)
	}
	if err := syscall.Madvise(b, syscall.MADV_NOHUGEPAGE); err != nil {
		return nil, fmt.Errorf("madvise: %w", err)
	}
	return b, nil
}

var faultSrc = []byte("goprobe page fault test: sixty-four bytes copied into each page..")

// touchCopy writes into every page of b with copy(), i.e. runtime.memmove: the fault is taken
// inside a frameless assembly leaf, whose frame-pointer walk skips touchCopy itself.
//
//go:noinline
func touchCopy(b []byte, pageSize int) {
	for off := 0; off+len(faultSrc) <= len(b); off += pageSize {
		copy(b[off:], faultSrc)
	}
}

// touchStore writes one byte into every page of b: the fault is taken in touchStore's own code.
//
//go:noinline
func touchStore(b []byte, pageSize int) {
	for off := 0; off < len(b); off += pageSize {
		b[off] = 1
	}
}

// readFresh fills b from /dev/zero with read(2): every page faults inside the kernel.
//
//go:noinline
func readFresh(b []byte) error {
	fd, err := syscall.Open("/dev/zero", syscall.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	for off := 0; off < len(b); {
		n, err := syscall.Read(fd, b[off:])
		if err != nil {
			return err
		}
		off += n
	}
	return nil
}

func runFaults() (any, error) {
	ps := os.Getpagesize()
	n := *faultPages
	copyBuf, err := freshPages(n, ps)
	if err != nil {
		return nil, err
	}
	storeBuf, err := freshPages(n/4, ps)
	if err != nil {
		return nil, err
	}
	readBuf, err := freshPages(n/4, ps)
	if err != nil {
		return nil, err
	}
	start, err := rusage()
	if err != nil {
		return nil, err
	}
	touchCopy(copyBuf, ps)
	mid, err := rusage()
	if err != nil {
		return nil, err
	}
	touchStore(storeBuf, ps)
	beforeRead, err := rusage()
	if err != nil {
		return nil, err
	}
	if err := readFresh(readBuf); err != nil {
		return nil, err
	}
	end, err := rusage()
	if err != nil {
		return nil, err
	}
	return faultsResult{
		Minflt:      end.Minflt - start.Minflt,
		Majflt:      end.Majflt - start.Majflt,
		CopyPages:   n,
		CopyMinflt:  mid.Minflt - start.Minflt,
		StorePages:  n / 4,
		StoreMinflt: beforeRead.Minflt - mid.Minflt,
		ReadPages:   n / 4,
		ReadMinflt:  end.Minflt - beforeRead.Minflt,
		PageSize:    ps,
	}, nil
}
