//! Scenario 9: the packet plane's cost per packet, from the kernel's own
//! `BPF_PROG_TEST_RUN` loop, against a frame the programs only glance at (ARP:
//! copied, found not to be IP, passed) measured in the same run, and the
//! floor of any program that follows flows ([`crate::flow_floor`]).

use enforcer::bpf::{Enforcer, LoadOptions};
use enforcer_common::{
    chaos::{self, Fault, Target},
    overrides::{Kind, Override},
};
use enforcer_tests::{
    fixtures::{self, base_policy, minute_open},
    frames::{ACK, SYN, Tcp},
};
use serde::Serialize;

use crate::{
    compare::Check,
    flow_floor::FlowFloor,
    report::{self, Goal, Table},
};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Size {
    /// Runs per measurement in the kernel's loop.
    pub repeat: u32,
    /// Single runs averaged for the RST (a repeat would run on the RST itself).
    pub single_runs: u32,
}

pub const FULL: Size = Size {
    repeat: 1_000_000,
    single_runs: 20_000,
};

pub const QUICK: Size = Size {
    repeat: 10_000,
    single_runs: 500,
};

#[derive(Serialize)]
pub struct Row {
    pub program: &'static str,
    pub frame: &'static str,
    pub ns: u32,
    /// The ARP floor measured the same way (in the loop, or in single runs).
    pub floor_ns: u32,
}

#[derive(Serialize)]
pub struct Results {
    pub size: Size,
    pub baseline_ns: u32,
    /// The ARP frame through `packet_in_xdp` in single runs, interleaved with
    /// the RST's: the floor of a figure measured one run at a time.
    pub single_floor_ns: u32,
    /// A data segment through the floor of any program that follows flows.
    pub flow_floor_ns: u32,
    pub rows: Vec<Row>,
    pub check: Check,
}

const XDP_TX: u32 = 3;

pub fn run(size: Size) -> Results {
    let mut enforcer = Enforcer::load(&LoadOptions::default()).expect("loading the programs");
    fixtures::apply(
        &mut enforcer,
        &["10.2.0.0/16:8080"],
        base_policy(),
        minute_open(),
    );
    let (guest, dest) = ("10.1.0.2".parse().unwrap(), "10.2.0.2".parse().unwrap());
    let tracked = Tcp::syn(guest, 47_000, dest, 8080);
    let data = Tcp {
        flags: ACK,
        payload: vec![0; 1000],
        ..tracked.clone()
    };
    let unmatched = Tcp::syn(guest, 47_001, "10.3.0.1".parse().unwrap(), 80);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.resize(60, 0);
    let cost = |enforcer: &Enforcer, program: &'static str, frame: &[u8]| {
        enforcer
            .test_run(program, frame, size.repeat)
            .unwrap_or_else(|e| panic!("test run of {program}: {e:#}"))
            .duration_ns
    };
    let baseline_ns = cost(&enforcer, "packet_in_tc", &arp);
    let flow_floor_ns = FlowFloor::new(&data.frame()).cost(&data.frame(), size.repeat);
    // The flow the data segments belong to.
    cost(&enforcer, "packet_in_tc", &tracked.frame());
    let mut rows = Vec::new();
    for (program, frame, bytes) in [
        (
            "packet_in_tc",
            "data segment of a tracked flow",
            data.frame(),
        ),
        (
            "packet_in_xdp",
            "data segment of a tracked flow",
            data.frame(),
        ),
        ("packet_in_tc", "SYN, no policy", unmatched.frame()),
        (
            "packet_out_tc",
            "SYN-ACK to the guest",
            tracked.answer(SYN | ACK).frame(),
        ),
        (
            "chaos_in_tc",
            "data segment, no guest fault armed",
            data.frame(),
        ),
    ] {
        rows.push(Row {
            program,
            frame,
            ns: cost(&enforcer, program, &bytes),
            floor_ns: baseline_ns,
        });
    }
    // An experiment on another destination: every packet is compared.
    let mut elsewhere = Fault {
        kind: chaos::Kind::GuestLoss as u32,
        chance: chaos::ALWAYS,
        until_ns: enforcer::clock::monotonic_ns() + 3_600_000_000_000,
        ..Fault::default()
    };
    let other: std::net::SocketAddr = "10.9.0.1:80".parse().unwrap();
    elsewhere.set_targets(&[Target::prefix(&other.into(), 128)]);
    let maps = enforcer.maps_mut();
    maps.chaos
        .arm(&mut maps.config, &[(0, elsewhere)])
        .expect("arming a guest fault");
    rows.push(Row {
        program: "chaos_in_tc",
        frame: "data segment, a guest fault armed for another destination",
        ns: cost(&enforcer, "chaos_in_tc", &data.frame()),
        floor_ns: baseline_ns,
    });
    enforcer::bpf::chaos::disarm(&mut enforcer.maps_mut().config, chaos::bit(0))
        .expect("disarming");
    let forced = Override {
        kind: Kind::ForcedOpen as u32,
        ..Override::default()
    };
    let maps = enforcer.maps_mut();
    maps.overrides
        .set(
            &mut maps.config,
            format!("{dest}:8080").parse().unwrap(),
            forced,
        )
        .expect("forcing open");
    let rejected = Tcp::syn(guest, 47_002, dest, 8080).frame();
    // A single run pays what the kernel's loop spreads over its repeats (the
    // timer reads, a cold start): the floor is measured the same way, the
    // runs interleaved so that both see the same machine.
    let (mut total, mut floor_total) = (0u64, 0u64);
    let mut answered = 0u32;
    for _ in 0..size.single_runs {
        let out = enforcer
            .test_run("packet_in_xdp", &rejected, 1)
            .expect("test run");
        total += u64::from(out.duration_ns);
        answered += u32::from(out.retval == XDP_TX);
        floor_total += u64::from(
            enforcer
                .test_run("packet_in_xdp", &arp, 1)
                .expect("test run")
                .duration_ns,
        );
    }
    let single_runs = u64::from(size.single_runs.max(1));
    let single_floor_ns = (floor_total / single_runs) as u32;
    rows.push(Row {
        program: "packet_in_xdp",
        frame: "SYN answered with a RST",
        ns: (total / single_runs) as u32,
        floor_ns: single_floor_ns,
    });
    let check = Check::expect(
        answered == size.single_runs,
        format!(
            "{answered} of {} SYNs to the forced-open destination answered with XDP_TX",
            size.single_runs
        ),
    );
    Results {
        size,
        baseline_ns,
        single_floor_ns,
        flow_floor_ns,
        rows,
        check,
    }
}

impl Results {
    /// A row's cost as a multiple of the ARP floor measured the same way in
    /// the same run.
    fn vs_floor(&self, r: &Row) -> f64 {
        f64::from(r.ns) / f64::from(r.floor_ns.max(1))
    }

    /// Issue 17's per-packet goals, against the ARP floor of the same run.
    pub fn goals(&self) -> Vec<Goal> {
        let ratio = |frame: &str| {
            self.rows
                .iter()
                .filter(|r| r.frame == frame && r.program.starts_with("packet_"))
                .map(|r| (r.program, self.vs_floor(r), r.floor_ns))
                .collect::<Vec<_>>()
        };
        let goal = |goal: &str, frame: &str, bound: f64| {
            let found = ratio(frame);
            Goal {
                scenario: 9,
                goal: goal.to_owned(),
                measured: found
                    .iter()
                    .map(|(program, r, floor)| {
                        format!(
                            "{program} {} (the floor: {})",
                            report::times(*r),
                            report::duration(u64::from(*floor))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
                met: !found.is_empty() && found.iter().all(|(_, r, _)| *r <= bound),
            }
        };
        let mut data = goal(
            "issue 17: a data segment of a tracked flow at most 1.5× the ARP floor",
            "data segment of a tracked flow",
            1.5,
        );
        data.measured += &format!(
            "; control: a program that only copies the frame and finds its flow in a hash, {} \
             ({} the floor)",
            report::duration(u64::from(self.flow_floor_ns)),
            report::times(f64::from(self.flow_floor_ns) / f64::from(self.baseline_ns.max(1)))
        );
        vec![
            data,
            goal(
                "issue 17: a SYN answered with a RST at most 5× the ARP floor",
                "SYN answered with a RST",
                5.0,
            ),
        ]
    }

    pub fn tables(&self) -> Vec<Table> {
        let mut t = Table::new(
            "Scenario 9: packet plane, per packet (BPF_PROG_TEST_RUN)",
            &["program", "frame", "per packet", "vs ARP floor"],
        );
        t.row(vec![
            "packet_in_tc".into(),
            "ARP (the floor: copied, not IP, passed)".into(),
            report::duration(u64::from(self.baseline_ns)),
            report::times(1.0),
        ]);
        t.row(vec![
            "packet_in_xdp".into(),
            "ARP in single runs (the floor of a figure measured one run at a time)".into(),
            report::duration(u64::from(self.single_floor_ns)),
            report::times(1.0),
        ]);
        t.row(vec![
            "(control)".into(),
            "data segment: copied, its flow found in a hash, nothing else".into(),
            report::duration(u64::from(self.flow_floor_ns)),
            report::times(f64::from(self.flow_floor_ns) / f64::from(self.baseline_ns.max(1))),
        ]);
        for r in &self.rows {
            t.row(vec![
                r.program.into(),
                r.frame.into(),
                report::duration(u64::from(r.ns)),
                report::times(self.vs_floor(r)),
            ]);
        }
        t.note(format!(
            "{} runs per figure in the kernel's loop; the RST and its floor are the means of {} \
             single runs, interleaved",
            self.size.repeat, self.size.single_runs
        ));
        t.note(self.check.note());
        vec![t]
    }
}
