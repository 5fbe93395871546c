//! The packet plane end to end: a guest namespace connects through a router
//! namespace, whose guest-facing interface the packet programs watch, to a
//! backend namespace. No socket program is attached anywhere: whatever the
//! guest sees comes from packets alone. The host's own network is untouched.

use std::{
    io::Read,
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use enforcer::bpf::{Enforcer, Ingress, LoadOptions, PacketHook, TcApi, pins::PinDir};
use enforcer_common::{
    breaker::State,
    counters::GlobalCounter,
    policy::{BackoffRow, Policy},
};
use enforcer_tests::{
    bpffs::PinDir as ScratchBpffs,
    cgroup::ScratchCgroup,
    daemon::Daemon,
    fixtures::{self, ECONNREFUSED, base_policy},
    routed::{Ns, Routed},
    wait,
};

const PORT: u16 = 8080;

/// Loads the programs (attached to nothing) and watches the router's
/// guest-facing interface.
fn watching(net: &Routed, policy: Policy, backoff: BackoffRow) -> Enforcer {
    net.watched(&[PORT], policy, backoff)
}

/// A connect from the guest: how long it took and its errno, if it failed.
fn guest_connect(net: &Routed, to: SocketAddr) -> (Duration, Result<TcpStream, i32>) {
    net.in_ns(Ns::Guest, || {
        let start = Instant::now();
        let result = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| e.raw_os_error().unwrap_or(-1));
        (start.elapsed(), result)
    })
}

#[test]
fn a_guest_is_tripped_by_packets_alone_refused_by_the_kernel_then_recovers() {
    let net = Routed::new();
    let policy = Policy {
        failure_threshold: 3,
        ..base_policy()
    };
    // Long enough that the circuit is still open for the connect after the
    // trip however slow the machine (the 6.1 run is emulated).
    let open = 5_000_000_000;
    let enforcer = watching(&net, policy, BackoffRow::exponential(open, open));
    for backend in [
        SocketAddr::new(net.backend_v4.into(), PORT),
        SocketAddr::new(net.backend_v6.into(), PORT),
    ] {
        let key = enforcer_tests::key(backend);
        // The backend refuses: the guest sees the backend's RSTs, the kernel
        // counts them.
        net.set_backend_port(PORT, "reject with tcp reset");
        for _ in 0..3 {
            let (_, r) = guest_connect(&net, backend);
            assert_eq!(r.err(), Some(ECONNREFUSED as i32));
        }
        let s = enforcer
            .maps()
            .dests
            .get(&key)
            .unwrap()
            .expect("tracked from packets");
        assert_eq!(s.counters.failures_refused, 3, "{backend}");
        assert_eq!(s.breaker.state, State::Open as u32, "{backend}");

        // Now a blackhole: only the kernel can still answer, and does, at once.
        net.set_backend_port(PORT, "drop");
        let resets = enforcer
            .maps()
            .counters
            .get(GlobalCounter::PacketResets)
            .unwrap();
        let (took, r) = guest_connect(&net, backend);
        assert_eq!(r.err(), Some(ECONNREFUSED as i32), "{backend}");
        eprintln!("{backend}: refused by the kernel after {took:?}");
        // Without the kernel's answer the blackhole holds the connect for its
        // whole 3 s timeout.
        assert!(took < Duration::from_secs(2), "refused after {took:?}");
        assert_eq!(
            enforcer
                .maps()
                .counters
                .get(GlobalCounter::PacketResets)
                .unwrap(),
            resets + 1
        );

        // The backend returns; after the open period one probe passes and closes
        // the circuit.
        let listener = net.backend_listener(backend);
        net.set_backend_port(PORT, "accept");
        std::thread::sleep(Duration::from_nanos(open) + Duration::from_millis(100));
        let (_, r) = guest_connect(&net, backend);
        let stream = r.unwrap_or_else(|e| panic!("probe to {backend}: errno {e}"));
        let s = enforcer.maps().dests.get(&key).unwrap().unwrap();
        assert_eq!(s.breaker.state, State::Closed as u32, "{backend}");
        assert_eq!(s.counters.probes, 1);
        drop((stream, listener));
    }
}

/// Accepts on `listener` until told to stop, holding every connection open
/// until its peer closes it; records the most held at once.
struct CountingBackend {
    stop: Arc<AtomicBool>,
    most: Arc<AtomicUsize>,
    /// Connections held now (a closed one counts until its reader sees EOF).
    now: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingBackend {
    fn serve(listener: TcpListener) -> Self {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let most = Arc::new(AtomicUsize::new(0));
        let now = Arc::new(AtomicUsize::new(0));
        let (s, m, held_now) = (stop.clone(), most.clone(), now.clone());
        let thread = std::thread::spawn(move || {
            let now = held_now;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(held, Ordering::SeqCst);
                let now = now.clone();
                std::thread::spawn(move || {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let _ = stream.read(&mut [0u8; 16]);
                    now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self {
            stop,
            most,
            now,
            thread: Some(thread),
        }
    }
}

impl Drop for CountingBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_capped_backend_never_sees_more_concurrent_guest_flows_than_the_cap() {
    let net = Routed::new();
    let enforcer = watching(
        &net,
        Policy {
            max_connections: 2,
            ..base_policy()
        },
        fixtures::minute_open(),
    );
    let backend = SocketAddr::new(net.backend_v4.into(), PORT);
    let counting = CountingBackend::serve(net.backend_listener(backend));
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..5 {
        let (_, r) = guest_connect(&net, backend);
        match r {
            Ok(stream) => held.push(stream),
            Err(errno) => assert!(
                i >= 2 && errno == ECONNREFUSED as i32,
                "connect {i}: {errno}"
            ),
        }
    }
    assert_eq!(held.len(), 2);
    assert_eq!(
        enforcer
            .maps()
            .counters
            .get(GlobalCounter::RejectedBulkhead)
            .unwrap(),
        3
    );
    // The backend must have accepted both before one closes: otherwise the
    // wait below could pass with one still in its accept queue, and the close
    // seen late would make three at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while counting.now.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the backend never held both");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The guest closes one (its FIN gives the slot back): the next one passes.
    // (Waiting for the backend to see that close too: until then it still
    // counts the closed connection as held.)
    drop(held.remove(0));
    let key = enforcer_tests::key(backend);
    let active = || {
        let state = enforcer.maps().dests.get(&key).unwrap();
        state.expect("tracked").breaker.active
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while (active() > 1 || counting.now.load(Ordering::SeqCst) > 1) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, r) = guest_connect(&net, backend);
    held.push(r.expect("a slot was freed"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        counting.most.load(Ordering::SeqCst) <= 2,
        "the backend saw more than the cap"
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(5);
    while active() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(active(), 0, "no slot leaked");
}

#[test]
fn pinned_interface_links_are_adopted_and_removed_with_the_configuration() {
    let net = Routed::new();
    let bpffs = ScratchBpffs::new();
    let cgroup = ScratchCgroup::new();
    let pins = PinDir::new(bpffs.path().join("enforcer"));
    let interface = net.router_guest_if.clone();
    let wanted = vec![interface.clone()];
    net.in_ns(Ns::Router, || {
        let (mut first, _) =
            Enforcer::install(&LoadOptions::default(), &pins, cgroup.path()).expect("install");
        let watched = first
            .interfaces()
            .watch_pinned(&pins, &wanted, PacketHook::Auto)
            .unwrap();
        assert_eq!(watched.len(), 1);
        assert!(!watched[0].adopted);
        assert_eq!(
            watched[0].ingress,
            Ingress::Tc,
            "a veth gets TC in auto mode"
        );
        let api = watched[0].tc;
        assert_eq!(api, TcApi::of_running_kernel());
        drop(first);
        use aya::programs::tc::TcAttachType::{Egress, Ingress as In};
        let attached = || {
            (
                net.tc_programs(&interface, In),
                net.tc_programs(&interface, Egress),
            )
        };
        // In: the packet plane and the guest faults after it; out: one.
        assert_eq!(attached(), (2, 1), "pinned links outlive the process");
        let mut second = Enforcer::adopt(&pins).expect("adopt");
        let watched = second
            .interfaces()
            .watch_pinned(&pins, &wanted, PacketHook::Auto)
            .unwrap();
        // Netlink filters cannot be pinned: they are found by name, deleted
        // and attached again. Either way, never a second copy.
        assert_eq!(watched[0].adopted, api == TcApi::Tcx);
        assert_eq!(attached(), (2, 1), "never a second copy of ours");
        second
            .interfaces()
            .watch_pinned(&pins, &[], PacketHook::Auto)
            .unwrap();
        // The kernel frees an unpinned link asynchronously.
        let deadline = Instant::now() + Duration::from_secs(5);
        while attached() != (0, 0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(attached(), (0, 0), "unwatched: detached");
        pins.remove_all().unwrap();
    });
}

#[test]
fn the_daemon_watches_its_interfaces_and_its_sweep_counts_silent_syns() {
    let net = Routed::new();
    let cgroup = ScratchCgroup::new();
    let bpffs = ScratchBpffs::new();
    let backend = SocketAddr::new(net.backend_v4.into(), PORT);
    let rest = format!(
        "[[policy]]\nname = \"guests\"\nmatch = [\"{}:{PORT}\"]\nfailure_threshold = 2\n\
         connect_timeout = \"300ms\"\nopen = \"1m\"\n",
        net.backend_v4
    );
    let keys = format!("interfaces = [\"{}\"]\n", net.router_guest_if);
    let d = Daemon::start_in_netns(&cgroup, &bpffs, &rest, &keys, net.path(Ns::Router));
    assert!(
        d.log()
            .contains(&format!("watching {} (ingress tc", net.router_guest_if)),
        "{}",
        d.log()
    );
    // A blackhole: only the daemon's sweep can tell the kernel the SYNs timed
    // out. The guest waits long enough to send its SYN again (after its 1 s
    // initial RTO), which is what makes the silence the destination's.
    net.set_backend_port(PORT, "drop");
    // Every sweep counts the flows it walks, the one that expires a flow
    // too: while the guest waits, the exporter shows its flow.
    let flows = || d.metrics().get("enforcer_tracked_flows", &[]);
    let most_flows_seen = std::thread::scope(|s| {
        let guest = s.spawn(|| {
            for _ in 0..2 {
                let r = net.in_ns(Ns::Guest, || {
                    TcpStream::connect_timeout(&backend, Duration::from_millis(1_500))
                });
                assert!(r.is_err(), "the backend is a blackhole");
            }
        });
        let mut most = 0.0f64;
        while !guest.is_finished() {
            most = most.max(flows().unwrap_or(0.0));
            std::thread::sleep(Duration::from_millis(20));
        }
        guest.join().expect("the guest's connects");
        most
    });
    assert!(most_flows_seen >= 1.0, "no flow counted: {}", d.log());
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.status_of(backend)["state"] != "open" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = d.status_of(backend);
    assert_eq!(status["state"], "open", "{status}");
    assert_eq!(status["failures"]["timeout"], 2, "{status}");
    let (took, r) = guest_connect(&net, backend);
    assert_eq!(r.err(), Some(ECONNREFUSED as i32));
    assert!(took < Duration::from_secs(2), "refused after {took:?}");
    let metrics = d.ok(&["metrics"]);
    assert!(
        metrics.contains("enforcer_kernel_packet_resets_total 1"),
        "{metrics}"
    );
    // The refused connect made no flow, the timed-out ones were swept.
    wait::until_true("the swept flows no longer counted", || flows() == Some(0.0));
}
