//! Converting the Go runtime's clock to unix time.
//!
//! NB: Go's `nanotime()` on linux/amd64 and arm64 is `clock_gettime(CLOCK_MONOTONIC)`
//! (src/runtime/sys_linux_amd64.s `nanotime1`: `MOVL $1, DI // CLOCK_MONOTONIC`), the same clock
//! as `bpf_ktime_get_ns()`. Reports convert it with the offset to CLOCK_REALTIME measured once at
//! attach (an NTP step during the window shifts the reported times, not the durations).

/// An offset between CLOCK_MONOTONIC and CLOCK_REALTIME.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    realtime_minus_monotonic: i64,
}

fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec; both clocks always exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> i64 {
    now_ns(libc::CLOCK_MONOTONIC)
}

impl Clock {
    /// Measures the offset, taking the tightest of a few samples.
    pub fn new() -> Self {
        let best = (0..5)
            .map(|_| {
                let m0 = now_ns(libc::CLOCK_MONOTONIC);
                let r = now_ns(libc::CLOCK_REALTIME);
                let m1 = now_ns(libc::CLOCK_MONOTONIC);
                (m1 - m0, r - (m0 + (m1 - m0) / 2))
            })
            .min_by_key(|&(spread, _)| spread)
            .map_or(0, |(_, off)| off);
        Self {
            realtime_minus_monotonic: best,
        }
    }

    /// CLOCK_MONOTONIC ns → unix ns.
    pub fn to_unix(&self, mono_ns: i64) -> i64 {
        mono_ns + self.realtime_minus_monotonic
    }

    /// The current unix time in ns.
    pub fn now_unix(&self) -> i64 {
        now_ns(libc::CLOCK_REALTIME)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_maps_to_now() {
        let c = Clock::new();
        let diff = (c.to_unix(now_ns(libc::CLOCK_MONOTONIC)) - c.now_unix()).abs();
        assert!(diff < 1_000_000, "{diff} ns");
    }
}
