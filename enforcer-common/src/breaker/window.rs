//! The failure-rate window: a ring of time buckets, so old outcomes fall out
//! without a timer.

use crate::impl_pod;

/// Buckets per window; a bucket covers `window / WINDOW_BUCKETS`.
pub const WINDOW_BUCKETS: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// `now / bucket_width` when the bucket was (re)started.
    pub slot: u64,
    pub attempts: u32,
    pub failures: u32,
}
const _: () = assert!(size_of::<Bucket>() == 16);

/// Completed connects (successes and failures) per time bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub buckets: [Bucket; WINDOW_BUCKETS],
}
const _: () = assert!(size_of::<Window>() == 16 * WINDOW_BUCKETS);
impl_pod!(Window);

/// Totals over the live buckets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub attempts: u32,
    pub failures: u32,
}

#[inline(always)]
fn slot_of(now_ns: u64, window_ns: u64) -> u64 {
    let width = window_ns / WINDOW_BUCKETS as u64;
    // +1 so that slot 0 never means "live" for a zeroed bucket.
    now_ns / if width == 0 { 1 } else { width } + 1
}

impl Window {
    /// Counts one completed connect at `now`.
    #[inline(always)]
    pub fn record(&mut self, now_ns: u64, window_ns: u64, failed: bool) {
        let slot = slot_of(now_ns, window_ns);
        let bucket = &mut self.buckets[(slot % WINDOW_BUCKETS as u64) as usize];
        if bucket.slot != slot {
            *bucket = Bucket {
                slot,
                attempts: 0,
                failures: 0,
            };
        }
        bucket.attempts += 1;
        bucket.failures += u32::from(failed);
    }

    /// Sums the buckets of the last `window_ns` before `now`.
    #[inline(always)]
    pub fn totals(&self, now_ns: u64, window_ns: u64) -> Totals {
        let current = slot_of(now_ns, window_ns);
        let mut totals = Totals::default();
        for b in &self.buckets {
            if b.slot != 0 && b.slot + (WINDOW_BUCKETS as u64) > current && b.slot <= current {
                totals.attempts += b.attempts;
                totals.failures += b.failures;
            }
        }
        totals
    }

    /// Forgets every bucket. Marks them stale rather than zeroing the window:
    /// zeroing 128 bytes compiles to a `memset` call, and this runs under the
    /// destination's spin lock, where Linux 6.1 allows no call at all.
    #[inline(always)]
    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            b.slot = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: u64 = 8_000; // 8 buckets of 1000 ns

    #[test]
    fn counts_within_the_window() {
        let mut w = Window::default();
        w.record(100, W, true);
        w.record(1_100, W, false);
        w.record(7_900, W, true);
        assert_eq!(
            w.totals(7_900, W),
            Totals {
                attempts: 3,
                failures: 2
            }
        );
    }

    #[test]
    fn forgets_old_buckets() {
        let mut w = Window::default();
        w.record(100, W, true);
        w.record(1_100, W, true);
        // At 8_500 the bucket of t=100 (slot 1) has left the window; t=1_100 is in.
        assert_eq!(
            w.totals(8_500, W),
            Totals {
                attempts: 1,
                failures: 1
            }
        );
        assert_eq!(w.totals(100_000, W), Totals::default());
        // Reusing a ring position restarts the bucket.
        w.record(16_100, W, false);
        assert_eq!(
            w.totals(16_100, W),
            Totals {
                attempts: 1,
                failures: 0
            }
        );
    }
}
