//! Bounds on what untrusted peers can make hvsim write to its log.
//!
//! * [`cut`]: one guest line is at most [`GUEST_LINE_MAX`] bytes, like a
//!   VMware host, which keeps 4 KiB of a guest `log` message.
//! * [`RateLimiter`]: a byte-rate token bucket per source (a VM's guest
//!   log, its protocol warnings). Lines over the rate are dropped and
//!   counted; the next line that passes carries the count, so the log says
//!   "suppressed N lines" once instead of N times.
//! * [`Every`]: at most one report per interval for events that need only a
//!   summary (refused connections, accept errors).
//!
//! None of these allocate or log by themselves: callers decide what a line
//! looks like. The types are small and shared, so every writer of
//! guest-controlled text (hvsim's log, a per-VM `vmware.log`) can use them.

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest guest log line kept, in bytes (VMware keeps 4 KiB of a guest
/// `log` message; the rest is cut).
pub const GUEST_LINE_MAX: usize = 4096;

/// `line` cut to at most `max` bytes (at a character boundary), with a note
/// saying how much was cut.
pub fn cut(line: &str, max: usize) -> Cow<'_, str> {
    if line.len() <= max {
        return Cow::Borrowed(line);
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}... [{} bytes cut]",
        &line[..end],
        line.len() - end
    ))
}

/// What [`RateLimiter::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write the line; `suppressed` lines were dropped since the last one
    /// written (say so first when it is not zero).
    Pass {
        /// Lines dropped since the last line that passed.
        suppressed: u64,
    },
    /// Drop the line (it is counted).
    Drop,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
    total_suppressed: u64,
}

/// A token bucket over bytes: `rate` bytes a second on average, bursts of
/// up to `burst` bytes.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    /// A full bucket: `rate` bytes per second, `burst` bytes at once.
    pub fn new(rate: u64, burst: u64) -> RateLimiter {
        RateLimiter {
            rate: rate as f64,
            burst: burst as f64,
            bucket: Mutex::new(Bucket {
                tokens: burst as f64,
                last: Instant::now(),
                suppressed: 0,
                total_suppressed: 0,
            }),
        }
    }

    /// May a line of `bytes` bytes be written now?
    pub fn check(&self, bytes: usize) -> Verdict {
        self.check_at(bytes, Instant::now())
    }

    /// [`RateLimiter::check`] at time `now` (for tests).
    pub fn check_at(&self, bytes: usize, now: Instant) -> Verdict {
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let dt = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = b.last.max(now);
        b.tokens = (b.tokens + dt * self.rate).min(self.burst);
        let cost = bytes as f64;
        if b.tokens >= cost {
            b.tokens -= cost;
            let suppressed = std::mem::take(&mut b.suppressed);
            Verdict::Pass { suppressed }
        } else {
            b.suppressed += 1;
            b.total_suppressed += 1;
            Verdict::Drop
        }
    }

    /// Lines dropped since this limiter was made.
    pub fn total_suppressed(&self) -> u64 {
        self.bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .total_suppressed
    }

    /// Most bytes that can pass in `elapsed` (the bound a caller may check).
    pub fn max_bytes(&self, elapsed: Duration) -> u64 {
        (self.burst + self.rate * elapsed.as_secs_f64()) as u64
    }
}

/// At most one report per `interval`: [`Every::hit`] counts an event and
/// says when to report, with how many events the report covers.
#[derive(Debug)]
pub struct Every {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Every {
    /// Report at most once per `interval`.
    pub const fn new(interval: Duration) -> Every {
        Every {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// Count one event; `Some(n)` when it is time to report `n` events (this
    /// one included), `None` when the report waits.
    pub fn hit(&self) -> Option<u64> {
        self.hit_at(Instant::now())
    }

    /// [`Every::hit`] at time `now` (for tests).
    pub fn hit_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 += 1;
        match s.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => None,
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_short_lines_and_cuts_long_ones_at_a_char_boundary() {
        assert_eq!(cut("hello", 10), "hello");
        let long = "é".repeat(3000); // 6000 bytes
        let c = cut(&long, GUEST_LINE_MAX);
        assert!(c.len() < GUEST_LINE_MAX + 40, "{}", c.len());
        assert!(
            c.ends_with("... [1904 bytes cut]"),
            "{}",
            &c[c.len() - 30..]
        );
        assert!(c.starts_with("éé"));
    }

    #[test]
    fn bucket_passes_a_burst_then_the_rate_and_counts_what_it_drops() {
        let l = RateLimiter::new(1000, 4000);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(l.check_at(1000, t0), Verdict::Pass { suppressed: 0 });
        }
        assert_eq!(l.check_at(1000, t0), Verdict::Drop);
        assert_eq!(l.check_at(1000, t0), Verdict::Drop);
        // One second refills 1000 bytes: one line, carrying the count.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.check_at(1000, t1), Verdict::Pass { suppressed: 2 });
        assert_eq!(l.check_at(1000, t1), Verdict::Drop);
        assert_eq!(l.total_suppressed(), 3);
        // A long quiet spell refills only up to the burst.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert!(matches!(l.check_at(1000, t2), Verdict::Pass { .. }));
        }
        assert_eq!(l.check_at(1000, t2), Verdict::Drop);
        assert_eq!(l.max_bytes(Duration::from_secs(2)), 6000);
    }

    #[test]
    fn every_reports_the_first_event_then_once_per_interval_with_the_count() {
        let e = Every::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(e.hit_at(t0), Some(1));
        assert_eq!(e.hit_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(e.hit_at(t0 + Duration::from_secs(2)), None);
        assert_eq!(e.hit_at(t0 + Duration::from_secs(11)), Some(3));
        assert_eq!(e.hit_at(t0 + Duration::from_secs(12)), None);
    }
}
