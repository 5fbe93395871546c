//! The unloaded latency, tracked passively: the lowest interval sample of a
//! sliding window. Every interval with traffic feeds it, so it follows a
//! destination that became faster at once and one that became slower once the
//! window has passed, without ever refusing callers to re-measure it.

use std::collections::VecDeque;

/// A sliding-window minimum over the last `window` samples (monotonic deque:
/// each sample enters and leaves once).
#[derive(Clone, Debug)]
pub struct Baseline {
    window: usize,
    /// (sample index, value), values increasing from the front.
    candidates: VecDeque<(u64, f64)>,
    seen: u64,
}

impl Baseline {
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            candidates: VecDeque::new(),
            seen: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        while self.candidates.back().is_some_and(|&(_, v)| v >= value) {
            self.candidates.pop_back();
        }
        self.candidates.push_back((self.seen, value));
        self.seen += 1;
        let oldest = self.seen.saturating_sub(self.window as u64);
        while self.candidates.front().is_some_and(|&(i, _)| i < oldest) {
            self.candidates.pop_front();
        }
    }

    /// The lowest of the last `window` samples.
    pub fn get(&self) -> Option<f64> {
        self.candidates.front().map(|&(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_minimum_of_the_window() {
        let mut b = Baseline::new(3);
        assert_eq!(b.get(), None);
        for (value, want) in [
            (5.0, 5.0),
            (3.0, 3.0),
            (4.0, 3.0),
            (6.0, 3.0),
            (7.0, 4.0),
            (8.0, 6.0),
        ] {
            b.observe(value);
            assert_eq!(b.get(), Some(want), "after {value}");
        }
    }
}
