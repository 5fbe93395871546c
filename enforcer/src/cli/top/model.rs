//! What `enforcer top` shows, made from the daemon's successive status
//! answers, and what its keys do: no terminal here, so all of it is tested
//! on the host.

use std::{
    collections::{BTreeSet, HashMap},
    net::SocketAddr,
    time::{Duration, Instant},
};

use crate::api::{BreakerState, Destination, Status};

/// Rejection rates kept per destination for its sparkline.
pub const HISTORY: usize = 60;

/// A destination: its address in a network namespace (the inode; `None`
/// while unknown), as the daemon names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id {
    pub dest: SocketAddr,
    pub netns: Option<u64>,
}

impl Id {
    pub fn of(d: &Destination) -> Self {
        Self {
            dest: d.dest,
            netns: d.netns,
        }
    }
}

/// The order of the rows: the busiest by this first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    /// Failures per second, then in all.
    #[default]
    Failures,
    /// Rejections per second, then in all.
    Rejections,
    /// Connections holding a slot.
    Active,
}

impl SortBy {
    pub fn name(self) -> &'static str {
        match self {
            Self::Failures => "failures",
            Self::Rejections => "rejections",
            Self::Active => "active",
        }
    }

    fn next(self) -> Self {
        match self {
            Self::Failures => Self::Rejections,
            Self::Rejections => Self::Active,
            Self::Active => Self::Failures,
        }
    }
}

/// Per second, between the last two answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub attempts: f64,
    pub failures: f64,
    pub rejections: f64,
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub id: Id,
    pub d: Destination,
    pub rates: Rates,
    /// Rejections per second, oldest first.
    pub rejections: Vec<u64>,
}

/// An action on the selected destination, waiting for `y`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    Trip(Id),
    Reset(Id),
}

/// What a key asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Confirmed: force the destination open (in every namespace).
    Trip(Id),
    /// Confirmed: close the destination's circuit (in its namespace).
    Reset(Id),
}

/// The keys `top` reads (the terminal's, translated by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Press {
    Char(char),
    Up,
    Down,
    Esc,
}

/// The view's state.
#[derive(Default)]
pub struct Top {
    pub paused: bool,
    /// The rows shown: [`Self::all`] of the policy filtered to, sorted.
    pub rows: Vec<Row>,
    pub sort: SortBy,
    /// Only this policy's destinations.
    pub policy: Option<String>,
    pub selected: Option<Id>,
    pub pending: Option<Pending>,
    /// When the rows were read (a countdown runs on from it).
    pub read_at: Option<Instant>,
    /// The last failure to reach the daemon, or what the last action did.
    pub message: Option<String>,
    /// Every destination of the last answer: what the next one's rates and
    /// sparklines go on from.
    all: Vec<Row>,
}

impl Rates {
    /// Per second, from `then` to `now`, `secs` apart.
    fn between(then: &Destination, now: &Destination, secs: f64) -> Self {
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        Self {
            attempts: per_s(now.attempts, then.attempts),
            failures: per_s(now.failures.total(), then.failures.total()),
            rejections: per_s(now.rejections.total(), then.rejections.total()),
        }
    }
}

impl Top {
    /// Takes the daemon's answer read at `at`.
    pub fn update(&mut self, status: Status, at: Instant) {
        self.paused = status.paused;
        let secs = self
            .read_at
            .map_or(0.0, |then| at.saturating_duration_since(then).as_secs_f64());
        let mut before: HashMap<Id, Row> = self.all.drain(..).map(|r| (r.id, r)).collect();
        self.all = status
            .destinations
            .into_iter()
            .map(|d| {
                let id = Id::of(&d);
                let before = before.remove(&id);
                let rates = match &before {
                    Some(b) if secs > 0.0 => Rates::between(&b.d, &d, secs),
                    _ => Rates::default(),
                };
                let mut rejections = before.map_or_else(Vec::new, |b| b.rejections);
                if rejections.len() == HISTORY {
                    rejections.remove(0);
                }
                rejections.push(rates.rejections.round() as u64);
                Row {
                    id,
                    d,
                    rates,
                    rejections,
                }
            })
            .collect();
        self.read_at = Some(at);
        self.arrange();
    }

    /// The policies of the destinations read, for the filter to cycle
    /// through, in order.
    pub fn policies(&self) -> Vec<&str> {
        let names: BTreeSet<&str> = self.all.iter().map(|r| r.d.policy.as_str()).collect();
        names.into_iter().collect()
    }

    /// The rows shown: filtered by policy, sorted, the selection kept on its
    /// destination (or the first row).
    fn arrange(&mut self) {
        let mut rows: Vec<Row> = self
            .all
            .iter()
            .filter(|r| self.policy.as_ref().is_none_or(|p| &r.d.policy == p))
            .cloned()
            .collect();
        let sort = self.sort;
        rows.sort_by(|a, b| {
            let by = |r: &Row| match sort {
                SortBy::Failures => (r.rates.failures, r.d.failures.total() as f64),
                SortBy::Rejections => (r.rates.rejections, r.d.rejections.total() as f64),
                SortBy::Active => (f64::from(r.d.active), f64::from(r.d.pending)),
            };
            by(b)
                .partial_cmp(&by(a))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.id.dest.cmp(&b.id.dest))
                .then_with(|| a.id.netns.cmp(&b.id.netns))
        });
        if self
            .selected
            .is_none_or(|s| !rows.iter().any(|r| r.id == s))
        {
            self.selected = rows.first().map(|r| r.id);
        }
        self.rows = rows;
    }

    /// The selected row's index.
    pub fn selected_index(&self) -> Option<usize> {
        let selected = self.selected?;
        self.rows.iter().position(|r| r.id == selected)
    }

    /// What a key press does.
    pub fn on_key(&mut self, press: Press) -> Action {
        if let Some(pending) = self.pending.take() {
            return match press {
                Press::Char('y') => match pending {
                    Pending::Trip(k) => Action::Trip(k),
                    Pending::Reset(k) => Action::Reset(k),
                },
                _ => {
                    self.message = Some("cancelled".to_owned());
                    Action::None
                }
            };
        }
        match press {
            Press::Char('q') | Press::Esc => return Action::Quit,
            Press::Char('s') => {
                self.sort = self.sort.next();
                self.arrange();
            }
            Press::Char('p') => {
                let policies = self.policies();
                let next = match &self.policy {
                    None => policies.first(),
                    Some(p) => policies
                        .iter()
                        .position(|q| q == p)
                        .and_then(|i| policies.get(i + 1)),
                };
                self.policy = next.map(|p| (*p).to_owned());
                self.arrange();
            }
            Press::Down | Press::Char('j') => self.step(1),
            Press::Up | Press::Char('k') => self.step(-1),
            Press::Char('t') => self.pending = self.selected.map(Pending::Trip),
            Press::Char('r') => self.pending = self.selected.map(Pending::Reset),
            _ => {}
        }
        Action::None
    }

    fn step(&mut self, by: isize) {
        let Some(at) = self.selected_index() else {
            return;
        };
        let last = self.rows.len().saturating_sub(1);
        let to = at.saturating_add_signed(by).min(last);
        self.selected = self.rows.get(to).map(|r| r.id);
    }

    /// How long `row` stays open, counted down from when it was read.
    pub fn open_left(&self, row: &Row, now: Instant) -> Option<Duration> {
        if row.d.state != BreakerState::Open {
            return None;
        }
        let left = Duration::from_millis(row.d.open_for_ms?);
        let since = self
            .read_at
            .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
        Some(left.saturating_sub(since))
    }
}

/// The connections holding a slot by priority class (`critical 2 · default
/// 1`), the classes with none left out; empty while classes are off.
pub fn classes(d: &Destination) -> String {
    d.classes
        .iter()
        .flatten()
        .filter(|(_, c)| c.active > 0)
        .map(|(name, c)| format!("{name} {}", c.active))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// `1h 02m`, `4m 05s`, `42s`.
pub fn countdown(left: Duration) -> String {
    let s = left.as_secs();
    match (s / 3600, (s / 60) % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// A row of block characters, one per value, scaled to the largest.
pub fn sparkline(values: &[u64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let values = &values[values.len().saturating_sub(width)..];
    let top = values.iter().copied().max().unwrap_or(0);
    values
        .iter()
        .map(|&v| match v {
            0 => ' ',
            v => BARS[((v * 8).div_ceil(top.max(1)) as usize).clamp(1, 8) - 1],
        })
        .collect()
}

#[cfg(test)]
mod tests;
