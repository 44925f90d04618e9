// alloc mode: one operation builds a small map, encodes a slice of small structs with
// encoding/json and decodes it back, and allocates a short linked list of small objects.
package main

import (
	"encoding/json"
	"strconv"
)

type item struct {
	ID    int               `json:"id"`
	Name  string            `json:"name"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
	Score float64           `json:"score"`
}

type node struct {
	next *node
	val  [3]int64
}

// sink keeps results alive so the compiler cannot drop the work.
var sink any

func makeItems(i, n int) []item {
	items := make([]item, n)
	for k := range items {
		id := i*n + k
		items[k] = item{
			ID:    id,
			Name:  "item-" + strconv.Itoa(id),
			Tags:  []string{"a", strconv.Itoa(k), "c"},
			Attrs: map[string]string{"k": strconv.Itoa(id), "z": "v"},
			Score: float64(id) / 3,
		}
	}
	return items
}

func allocOp(i int) {
	m := make(map[string]int, 4)
	for k := 0; k < 16; k++ {
		m[strconv.Itoa(i+k)] = k
	}
	b, err := json.Marshal(makeItems(i, 4))
	if err != nil {
		fail(err)
	}
	var back []item
	if err := json.Unmarshal(b, &back); err != nil {
		fail(err)
	}
	var head *node
	for k := 0; k < 32; k++ {
		head = &node{next: head, val: [3]int64{int64(k), int64(i), int64(len(back))}}
	}
	sink = head
	sink = m
}
