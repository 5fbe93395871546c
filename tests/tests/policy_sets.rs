//! Policy sets through the real daemon, checked in the kernel: a set applies
//! whole or not at all (the programs read one of two banks of policy maps,
//! and the daemon flips them to the next set with one write), and a rule
//! written as an IPv4-mapped IPv6 prefix is the IPv4 rule it spells.

use std::net::SocketAddr;

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::Daemon,
    exec::Place,
    fixtures::ECONNREFUSED,
    net::{self, AcceptingServer, LOCAL_CONNECT_ERRORS},
    require_root,
};

const REFUSED: Result<(), i32> = Err(ECONNREFUSED as i32);

/// A `[[policy]]` table: `server` capped at `cap` connections, and more rules.
fn policy(name: &str, server: SocketAddr, cap: u32, more: &[&str]) -> String {
    let rules: Vec<String> = std::iter::once(server.to_string())
        .chain(more.iter().map(|r| (*r).to_owned()))
        .map(|r| format!("\"{r}\""))
        .collect();
    format!(
        "[[policy]]\nname = \"{name}\"\nmatch = [{}]\nmax_connections = {cap}\n",
        rules.join(", ")
    )
}

/// `enforcer policy show NAME` (JSON).
fn show(d: &Daemon, name: &str) -> serde_json::Value {
    serde_json::from_str(&d.ok(&["policy", "show", name])).expect("JSON")
}

/// What the kernel's rule map must hold for the running policy `name`:
/// its rules as `policy show` prints them, under its id.
fn expected(d: &Daemon, name: &str) -> Vec<(String, u32)> {
    let shown = show(d, name);
    let id = shown["id"].as_u64().expect("an id") as u32;
    let mut rules: Vec<(String, u32)> = shown["match"]
        .as_array()
        .expect("match")
        .iter()
        .map(|r| (r.as_str().expect("a rule").to_owned(), id))
        .collect();
    rules.sort();
    rules
}

/// `n` connects to `addr` held open together, once no earlier one holds a
/// slot: what its policy's cap admits and refuses.
fn held(d: &Daemon, cgroup: &ScratchCgroup, addr: SocketAddr, n: usize) -> Vec<Result<(), i32>> {
    d.wait_no_slot_held(addr);
    Place::cgroup(cgroup).held_connects(addr, n)
}

/// `enforcer policy apply` of `text`: the CLI's output.
fn apply(d: &Daemon, text: &str) -> std::process::Output {
    let file = d.config.with_file_name("policies.toml");
    std::fs::write(&file, text).expect("writing the policy file");
    d.cli(&["policy", "apply", file.to_str().unwrap()])
}

/// `enforcer policy apply` of `text` is refused as bad input, saying each of
/// `says`.
fn refused(d: &Daemon, text: &str, says: &[&str]) {
    let out = apply(d, text);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for s in says {
        assert!(err.contains(s), "no `{s}` in: {err}");
    }
}

#[test]
fn a_policy_set_applies_whole_or_not_at_all() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    // Each rule map holds 4 rules: a set of 3, then another 3 in its place,
    // is 6 at once in a single map (the old set's and the new one's).
    let first = policy("first", a.addr, 1, &["127.0.0.2/32:80", "127.0.0.3/32:80"]);
    let mut d = Daemon::start_with(&cgroup, &pins, &first, "rules_capacity = 4", false);
    let first_rules = expected(&d, "first");
    assert_eq!(first_rules.len(), 3);
    assert_eq!(d.kernel_rules(), first_rules);
    assert_eq!(held(&d, &cgroup, a.addr, 2), [Ok(()), REFUSED]);

    let b = AcceptingServer::bind("127.0.0.1:0");
    let second = policy("second", b.addr, 2, &["127.0.0.4/32:80", "127.0.0.5/32:80"]);
    let out = apply(&d, &second);
    assert!(
        out.status.success(),
        "a set that fits replaces one that fits, whatever both hold together: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second_rules = expected(&d, "second");
    assert_eq!(
        d.kernel_rules(),
        second_rules,
        "the new set, all of it, only it"
    );
    assert_eq!(held(&d, &cgroup, b.addr, 3), [Ok(()), Ok(()), REFUSED]);
    assert_eq!(
        held(&d, &cgroup, a.addr, 2),
        [Ok(()), Ok(())],
        "no rule left"
    );
    let matched = d.status_of(b.addr);
    assert_eq!(matched["policy"], "second", "{matched}");

    // One rule more than a map holds: refused, naming the field and the
    // capacity, and nothing changes.
    let too_big = policy(
        "third",
        a.addr,
        1,
        &[
            "127.0.0.6/32:80",
            "127.0.0.7/32:80",
            "127.0.0.8/32:80",
            "127.0.0.9/32:80",
        ],
    );
    refused(&d, &too_big, &["policy.match", "at most 4 rules"]);
    assert_eq!(d.kernel_rules(), second_rules);
    assert_eq!(held(&d, &cgroup, b.addr, 3), [Ok(()), Ok(()), REFUSED]);

    // Maps keep the capacity they were created with: a daemon configured
    // for more adopts them as they are, and the kernel's capacity is what
    // refuses the set (after the text's own checks passed).
    d.edit_config(|text| text.replace("rules_capacity = 4", "rules_capacity = 8"));
    d.kill9();
    d.spawn();
    let restarted = expected(&d, "first");
    assert_eq!(d.kernel_rules(), restarted, "the configuration's set again");
    refused(&d, &too_big, &["policy.match: 5 rules", "at most 4"]);
    assert_eq!(d.kernel_rules(), restarted);
    assert_eq!(held(&d, &cgroup, a.addr, 2), [Ok(()), REFUSED]);
    assert_eq!(d.json(&["policy", "list"])[0]["name"], "first");
}

#[test]
fn a_policy_set_rule_spelt_ipv4_mapped_is_the_ipv4_rule() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let d = Daemon::start(&cgroup, &pins, "policy = []");
    d.ok(&["policy", "set", "m", "match=[::ffff:10.0.0.0/104]:80"]);
    let shown = show(&d, "m");
    assert_eq!(shown["match"], serde_json::json!(["10.0.0.0/8:80"]));
    assert_eq!(d.kernel_rules(), expected(&d, "m"));

    // Never reached: see `net::connect_from_loopback`.
    let remote: SocketAddr = "10.0.0.5:80".parse().unwrap();
    let out = Place::cgroup(&cgroup)
        .run_as_nobody(|| format!("{:?}", net::connect_from_loopback(remote)));
    assert!(
        LOCAL_CONNECT_ERRORS
            .iter()
            .any(|e| out == format!("{:?}", Err::<(), i32>(*e))),
        "{out}"
    );
    let matched = d.status_of(remote);
    assert_eq!(
        (
            matched["policy"].as_str(),
            matched["attempts"].as_u64(),
            matched["local_errors"].as_u64()
        ),
        (Some("m"), Some(1), Some(1)),
        "{matched}"
    );
}

/// Slots held by an unprivileged process across a flip to the next set are
/// the same slots: counted once under the policy's new cap, and given back
/// exactly once when the holder dies.
#[test]
fn slots_held_by_nobody_across_a_policy_set_flip_come_back_once() {
    require_root();
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let a = AcceptingServer::bind("127.0.0.1:0");
    let d = Daemon::start(&cgroup, &pins, &policy("p", a.addr, 2, &[]));
    let mut holder = Place::cgroup(&cgroup).spawn_nobody_holding(a.addr, 2);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while d.status_of(a.addr)["active"] != 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            d.status_of(a.addr)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The same policy with a higher cap and another rule: a new bank.
    let out = apply(&d, &policy("p", a.addr, 3, &["127.0.0.2/32:80"]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.kernel_rules(), expected(&d, "p"));
    assert_eq!(d.status_of(a.addr)["active"], 2, "the held slots, kept");
    assert_eq!(
        Place::cgroup(&cgroup).held_connects(a.addr, 2),
        [Ok(()), REFUSED],
        "one slot left under the new cap of 3"
    );
    holder.kill().expect("kill");
    holder.wait().expect("wait");
    assert_eq!(
        held(&d, &cgroup, a.addr, 4),
        [Ok(()), Ok(()), Ok(()), REFUSED],
        "every slot back, none twice"
    );
}
