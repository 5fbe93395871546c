//! What scenario 10 prints: a table per part, and the comparisons the issue
//! asks for, side by side without a verdict.

use enforcer_tests::capacity::{LoadOptions, QUEUE_CAPACITY};

use super::{
    Results,
    overload::{self, LIGHT, OVERLOAD, VariantResult},
    signal_cost::{self, NEVER_REACHED},
};
use crate::{
    bpf_stats::ProgramCost,
    report::{self, Comparison, Table},
    stats,
};

impl overload::Results {
    pub fn table(&self) -> Table {
        let mut t = Table::new(
            format!(
                "Scenario 10 (a): adaptive limits under {OVERLOAD}× overload (W = {} workers, \
                 S = {} ms: {:.0} requests/s; {:.0}/s offered)",
                self.workers, self.work_ms, self.capacity_per_s, self.offered_per_s
            ),
            &[
                "variant",
                "goodput",
                "vs capacity",
                "answered p50",
                "answered p99",
                "p99 vs unloaded",
                "refused",
                "refused connect() p99",
                "failed",
                "backend queue, max",
                "settled limit: median [min, max]",
            ],
        );
        let u = &self.unloaded;
        let unloaded_s = self.size.unloaded_ms as f64 / 1e3;
        t.row(vec![
            format!("unloaded ({:.0}/s, no policy)", LIGHT * self.capacity_per_s),
            format!("{:.1}/s", u.ok as f64 / unloaded_s),
            "—".to_owned(),
            report::duration(u.ok_p50_ns),
            report::duration(u.ok_p99_ns),
            report::times(1.0),
            report::share(u.refused, u.sent),
            "—".to_owned(),
            report::share(u.errors, u.sent),
            "—".to_owned(),
            "—".to_owned(),
        ]);
        for v in &self.variants {
            let w = &v.overload.settled;
            let answered = |ns: u64| {
                if w.ok == 0 {
                    "none in time".to_owned()
                } else {
                    report::duration(ns)
                }
            };
            t.row(vec![
                v.name.to_owned(),
                format!("{:.1}/s", v.goodput_per_s),
                report::times(v.goodput_vs_capacity),
                answered(w.ok_p50_ns),
                answered(w.ok_p99_ns),
                if w.ok == 0 {
                    "—".to_owned()
                } else {
                    report::times(v.p99_vs_unloaded)
                },
                report::share(w.refused, w.sent),
                if w.refused == 0 {
                    "—".to_owned()
                } else {
                    report::duration(w.refused_connect_p99_ns)
                },
                report::share(w.errors, w.sent),
                v.queued_max.to_string(),
                v.settled_limit.map_or("—".to_owned(), |l| {
                    format!("{} [{}, {}]", l.median, l.min, l.max)
                }),
            ]);
        }
        let s = &self.size;
        t.note(format!(
            "each variant on a backend of its own: {:.1} s of warm-up at {:.0}/s, then {:.1} s \
             at {:.0}/s, open loop, from the protected cgroup; figures of the requests \
             scheduled from {:.1} s of the overload on (the settled window); unloaded: {:.1} s \
             at {:.0}/s on another backend",
            s.warm_up_ms as f64 / 1e3,
            LIGHT * self.capacity_per_s,
            s.overload_ms as f64 / 1e3,
            self.offered_per_s,
            s.settle_ms as f64 / 1e3,
            s.unloaded_ms as f64 / 1e3,
            LIGHT * self.capacity_per_s,
        ));
        t.note(format!(
            "goodput: answers within the client's timeout ({:.0} s) per second; failed: \
             timeouts, and connections the backend closed unserved once its queue held \
             {QUEUE_CAPACITY}; refused: connect() failed at once (the kernel's cap)",
            s.timeout_ms as f64 / 1e3
        ));
        for v in self.variants.iter().filter(|v| v.overload.settled.ok == 0) {
            t.note(queue_note(v));
        }
        t.note(
            "auto: `max_connections = \"auto\"`, `signal = \"response\"`, `min = 1`, \
             `interval = \"500ms\"`, otherwise the defaults (initial 20, max 200); limits read \
             with `enforcer status` every 500 ms",
        );
        let late = self
            .variants
            .iter()
            .map(|v| v.overload.late_max_ns)
            .max()
            .unwrap_or(0);
        t.note(format!(
            "the generator started requests at most {} behind their schedule",
            report::duration(late)
        ));
        t.note(self.unloaded_check.note());
        for v in &self.variants {
            t.note(v.check.note());
        }
        t
    }

    /// "name X" for each variant, side by side.
    pub fn side_by_side(&self, figure: impl Fn(&VariantResult) -> String) -> String {
        self.variants
            .iter()
            .map(|v| format!("{} {}", v.name, figure(v)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// For a variant that answered nothing in time once settled: what the
/// requests it did answer waited, and up to when any was answered (how long
/// the queue took to outgrow the client's patience).
fn queue_note(v: &VariantResult) -> String {
    let o = &v.overload;
    let width = LoadOptions::default().bucket.as_millis() as u64;
    match o.buckets.iter().rev().find(|b| b.ok > 0) {
        None => format!("{}: no request answered in time at all", v.name),
        Some(last) => format!(
            "{}: over the whole overload {} of {} requests answered in time, p50 {}, p99 {}, \
             none of those scheduled after {:.1} s",
            v.name,
            o.ok,
            o.sent,
            report::duration(o.ok_p50_ns),
            report::duration(o.ok_p99_ns),
            (last.start_ms + width) as f64 / 1e3
        ),
    }
}

impl signal_cost::Results {
    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 10 (b): per-request cost of the response-latency signal and of priority \
             classes (loopback; connect, a line each way, close)",
            &[
                "variant",
                "request p50",
                "request p99",
                "Δp50 vs (n)",
                "Δp99 vs (n)",
                "Δp50 per round: median [min, max]",
            ],
        );
        for (name, m) in &self.request {
            t.row(vec![
                (*name).to_owned(),
                report::duration(m.all.p50_ns),
                report::duration(m.all.p99_ns),
                report::signed(m.vs_baseline.delta_p50_ns),
                report::signed(m.vs_baseline.delta_p99_ns),
                m.vs_baseline.block_spread(),
            ]);
        }
        t.note(format!(
            "{} rounds × {} requests per variant, interleaved every {} in one client process \
             pinned to CPU 0 (the servers on CPU 1); policies capped at {NEVER_REACHED}, never \
             reached",
            self.size.rounds, self.size.round.per_variant, self.size.round.slice
        ));
        for c in &self.checks {
            t.note(c.note());
        }

        let mut r = Table::new(
            "Scenario 10 (b): ratios, paired in the same rounds",
            &[
                "ratio",
                "p50",
                "p99",
                "Δp50",
                "Δp50 per round: median [min, max]",
            ],
        );
        let handshake = &self.request[1].1.vs_baseline;
        for (name, v) in [
            ("(r) response / (h) handshake", &self.response_vs_handshake),
            (
                "(c) classes on / (h) classes off",
                &self.classes_vs_handshake,
            ),
            ("(h) handshake / (n) no policy", handshake),
        ] {
            r.row(vec![
                name.to_owned(),
                report::times(v.ratio_p50),
                report::times(v.ratio_p99),
                report::signed(v.delta_p50_ns),
                v.block_spread(),
            ]);
        }
        vec![t, r, self.programs_table()]
    }

    /// The separate pass: each variant's time inside the programs per
    /// request, and the cgroup_skb programs' share of it (where the response
    /// signal works).
    fn programs_table(&self) -> Table {
        let mut t = Table::new(
            "Scenario 10 (b): time inside the programs per request (separate pass, BPF \
             run-time statistics on)",
            &[
                "variant",
                "all programs",
                "Δ vs (n)",
                "sock_out: runs × ns/run",
                "sock_in: runs × ns/run",
            ],
        );
        let baseline = self.in_programs.first().map_or(0, |(_, c)| total(c));
        for (name, costs) in &self.in_programs {
            let program = |wanted: &str| {
                costs
                    .iter()
                    .find(|c| c.program == wanted)
                    .map_or("—".to_owned(), |c| {
                        format!("{:.1} × {} ns", c.runs_per_connect, c.ns_per_run)
                    })
            };
            t.row(vec![
                (*name).to_owned(),
                report::duration(total(costs)),
                report::signed(stats::delta(baseline, total(costs))),
                program("sock_out"),
                program("sock_in"),
            ]);
        }
        t.note(format!(
            "{} requests per variant, one variant after the other; each run's time includes \
             the statistics' own two clock reads",
            self.size.profiled
        ));
        t
    }

    /// Each variant's time inside the programs per request, in ns.
    fn in_programs_ns(&self) -> Vec<u64> {
        self.in_programs.iter().map(|(_, c)| total(c)).collect()
    }
}

/// The time of all programs per request.
fn total(costs: &[ProgramCost]) -> u64 {
    costs.iter().map(|c| c.ns_per_connect).sum()
}

impl Results {
    pub fn comparisons(&self) -> Vec<Comparison> {
        let o = &self.overload;
        let p99 = |v: &VariantResult| {
            if v.overload.settled.ok == 0 {
                "none answered in time".to_owned()
            } else {
                report::times(v.p99_vs_unloaded)
            }
        };
        let refused = |v: &VariantResult| {
            let w = &v.overload.settled;
            if w.refused == 0 {
                "none refused".to_owned()
            } else {
                report::duration(w.refused_connect_p99_ns)
            }
        };
        let (rh, hn, ch) = (
            &self.signal_cost.response_vs_handshake,
            &self.signal_cost.request[1].1.vs_baseline,
            &self.signal_cost.classes_vs_handshake,
        );
        let programs = self.signal_cost.in_programs_ns();
        let comparison = |what: String, measured: String| Comparison {
            scenario: 10,
            what,
            measured,
        };
        vec![
            comparison(
                format!(
                    "under {:.0}/s offered to a capacity of {:.0}/s, answered p99 once settled \
                     against the unloaded p99 ({})",
                    o.offered_per_s,
                    o.capacity_per_s,
                    report::duration(o.unloaded.ok_p99_ns)
                ),
                o.side_by_side(p99),
            ),
            comparison(
                "goodput once settled against the backend's capacity".to_owned(),
                o.side_by_side(|v| report::times(v.goodput_vs_capacity)),
            ),
            comparison(
                "refused connect() p99 once settled".to_owned(),
                o.side_by_side(refused),
            ),
            comparison(
                "per request, the response signal against the handshake signal, and the \
                 handshake signal against no policy"
                    .to_owned(),
                format!(
                    "response/handshake p50 {} ({}), p99 {}; handshake/none p50 {} ({}), p99 {}; \
                     inside the programs, response − handshake {}, handshake − none {}",
                    report::times(rh.ratio_p50),
                    report::signed(rh.delta_p50_ns),
                    report::times(rh.ratio_p99),
                    report::times(hn.ratio_p50),
                    report::signed(hn.delta_p50_ns),
                    report::times(hn.ratio_p99),
                    report::signed(stats::delta(programs[1], programs[2])),
                    report::signed(stats::delta(programs[0], programs[1])),
                ),
            ),
            comparison(
                "per request, priority classes on against off (same policy)".to_owned(),
                format!(
                    "classes/no classes p50 {} ({}), p99 {}; inside the programs, classes − \
                     no classes {}",
                    report::times(ch.ratio_p50),
                    report::signed(ch.delta_p50_ns),
                    report::times(ch.ratio_p99),
                    report::signed(stats::delta(programs[1], programs[3])),
                ),
            ),
        ]
    }
}
