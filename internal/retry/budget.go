package retry

import (
	"sync/atomic"
	"time"
)

// window is the budget's memory, in one-second buckets.
const window = 10

// Budget is a route's retry budget, as docs/configuration.md (retry)
// describes it: a retry is allowed while the route's retries in the last
// 10 s are fewer than percent of its client requests (retries not counted)
// in the last 10 s, or while its retries in the last second are fewer than
// minPerSecond. Envoy's retry budgets and Finagle's RetryBudget have the
// same idea.
//
// Its bookkeeping is a ring of per-second buckets of atomic counters: a
// request costs one atomic add (and a compare-and-swap once a second), and
// no lock is taken.
type Budget struct {
	percent      int64
	minPerSecond int64
	buckets      [window]bucket
}

type bucket struct {
	sec      atomic.Int64
	requests atomic.Int64
	retries  atomic.Int64
}

// NewBudget returns a budget.
func NewBudget(percent, minPerSecond int) *Budget {
	return &Budget{percent: int64(percent), minPerSecond: int64(minPerSecond)}
}

// bucket returns the bucket of second sec, clearing it if it held an older
// second.
func (b *Budget) bucket(sec int64) *bucket {
	bk := &b.buckets[sec%window]
	if old := bk.sec.Load(); old != sec && bk.sec.CompareAndSwap(old, sec) {
		bk.requests.Store(0)
		bk.retries.Store(0)
	}
	return bk
}

// Request counts a client request that arrived at now.
func (b *Budget) Request(now time.Time) { b.bucket(now.Unix()).requests.Add(1) }

// Allow reports whether one more retry, at now, is within the budget.
func (b *Budget) Allow(now time.Time) bool {
	return b.allow(now.Unix())
}

func (b *Budget) allow(now int64) bool {
	var requests, retries int64
	for i := range b.buckets {
		bk := &b.buckets[i]
		if s := bk.sec.Load(); s > now-window && s <= now {
			requests += bk.requests.Load()
			retries += bk.retries.Load()
		}
	}
	if retries*100 < b.percent*requests {
		return true
	}
	cur := &b.buckets[now%window]
	return cur.sec.Load() != now && b.minPerSecond > 0 || cur.sec.Load() == now && cur.retries.Load() < b.minPerSecond
}

// Retry counts a retry made at now.
func (b *Budget) Retry(now time.Time) { b.bucket(now.Unix()).retries.Add(1) }
