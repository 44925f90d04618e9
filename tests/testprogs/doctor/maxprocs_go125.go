//go:build go1.25

// A service whose go.mod says go 1.25 or later gets the cgroup-aware GOMAXPROCS of Go 1.25
// (containermaxprocs=1, updatemaxprocs=1 by default). This module's go.mod must stay at go 1.21
// for the older toolchains, so the directives below give builds with Go 1.25+ those defaults.
// Older toolchains skip this file (its build tag) and would reject the unknown settings.

//go:debug containermaxprocs=1
//go:debug updatemaxprocs=1

package main
