//! The unloaded latency, tracked passively: the lowest interval sample of a
//! sliding window. Every interval with traffic feeds it, so it follows a
//! destination that became faster at once and one that became slower once the
//! window has passed, without ever refusing callers to re-measure it.
//!
//! The window is kept as [`SLICES`] minima of consecutive slices of it, so a
//! destination costs the same few bytes whatever the window (the daemon keeps
//! one per adaptive destination, maybe 100 000): the minimum covers the last
//! `window` samples give or take a slice (and at least `SLICES`).

use std::collections::VecDeque;

/// Slices of the window.
const SLICES: usize = 10;

/// A sliding-window minimum over about the last `window` samples.
#[derive(Clone, Debug)]
pub struct Baseline {
    /// Samples per slice.
    slice: u32,
    /// Minima of the completed slices, oldest first (at most `SLICES`).
    done: VecDeque<f64>,
    /// The slice being filled: its minimum and how many samples it holds.
    current: Option<f64>,
    in_current: u32,
}

impl Baseline {
    pub fn new(window: usize) -> Self {
        let slice = window.max(1).div_ceil(SLICES).min(u32::MAX as usize) as u32;
        Self {
            slice,
            done: VecDeque::with_capacity(SLICES),
            current: None,
            in_current: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        self.current = Some(self.current.map_or(value, |m| m.min(value)));
        self.in_current += 1;
        if self.in_current == self.slice {
            if self.done.len() == SLICES {
                self.done.pop_front();
            }
            self.done.extend(self.current.take());
            self.in_current = 0;
        }
    }

    /// The lowest sample of the window.
    pub fn get(&self) -> Option<f64> {
        self.done
            .iter()
            .copied()
            .chain(self.current)
            .reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_minimum_of_the_last_window_samples_give_or_take_a_slice() {
        // A window of 20: slices of 2 samples.
        let mut b = Baseline::new(20);
        assert_eq!(b.get(), None);
        b.observe(5.0);
        b.observe(3.0);
        assert_eq!(b.get(), Some(3.0));
        // 20 more samples push the 3.0 out; the minimum of what is left.
        for i in 0..20 {
            b.observe(10.0 + f64::from(i));
        }
        assert_eq!(b.get(), Some(10.0));
        // A faster destination is followed at once.
        b.observe(1.0);
        assert_eq!(b.get(), Some(1.0));
    }

    #[test]
    fn a_window_shorter_than_the_slices_is_a_slice_of_one() {
        let mut b = Baseline::new(3);
        for (value, want) in [(5.0, 5.0), (3.0, 3.0), (4.0, 3.0)] {
            b.observe(value);
            assert_eq!(b.get(), Some(want), "after {value}");
        }
        // With slices of one, the window is ten samples.
        for _ in 0..10 {
            b.observe(9.0);
        }
        assert_eq!(b.get(), Some(9.0));
    }
}
