//! Writes the checked-in seed corpora, `corpus/<target>/`, from scratch:
//!
//! ```sh
//! cargo +nightly run --manifest-path tests/fuzz/Cargo.toml --target-dir target/fuzz/cargo \
//!     --example seed_corpus
//! ```
//!
//! Small valid inputs and near misses for each target: frames built like the
//! packet tests build them (a client's SYN through the host, a router's ICMP
//! errors), the real configuration files, requests as the CLI sends them, and
//! what operators type, and the inputs of the bugs the targets found. The
//! fuzzer finds the rest; these spare it from discovering the formats.

use std::{
    fs,
    path::{Path, PathBuf},
};

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = fuzz_dir.join("corpus");
    write_all(&corpus.join("packet"), &packet_seeds());
    write_all(
        &corpus.join("config"),
        &config_seeds(&fuzz_dir.join("../..")),
    );
    write_all(&corpus.join("api"), &api_seeds());
    write_all(&corpus.join("cli"), &cli_seeds());
}

/// Replaces `dir`'s files with `seeds` (name, bytes).
fn write_all(dir: &Path, seeds: &[(&str, Vec<u8>)]) {
    if dir.exists() {
        fs::remove_dir_all(dir).expect("removing the old seeds");
    }
    fs::create_dir_all(dir).expect("creating the corpus directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("writing a seed");
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}

fn config_seeds(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let read = |path: &str| fs::read(root.join(path)).expect("reading a configuration file");
    let policy = "[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\", \"[fd00::/64]:443\"]\n";
    vec![
        ("dist-enforcer.toml", read("enforcer/dist/enforcer.toml")),
        ("default.toml", read("enforcer/src/config/default.toml")),
        ("empty.toml", Vec::new()),
        ("one-policy.toml", policy.into()),
        (
            "policy-every-knob.toml",
            format!(
                "{policy}mode = \"observe\"\nfailure_threshold = 3\nfailure_rate = 0.5\n\
                 min_attempts = 10\nwindow = \"30s\"\nslow_connect = \"250ms\"\n\
                 connect_timeout = \"2s\"\nopen = \"1s\"\nopen_max = \"1m\"\njitter = 0.2\n\
                 rejitter = \"10s\"\nhalf_open_probes = 2\nclose_after = 3\n\
                 max_connections = 100\nmax_pending = 10\nerrno = \"ETIMEDOUT\"\n\
                 max_open_percent = 50\ntrip_decay = \"1h\"\nheal = true\n\
                 heal_interval = \"5s\"\ncgroup = \"/sys/fs/cgroup/app\"\n"
            )
            .into(),
        ),
        (
            "policy-auto.toml",
            format!(
                "{policy}max_connections = \"auto\"\n[policy.adaptive]\nalgorithm = \"vegas\"\n\
                 min = 5\nmax = 500\ninitial = 50\ninterval = \"500ms\"\nsmoothing = 0.3\n\
                 tolerance = 1.5\nsignal = \"response\"\n"
            )
            .into(),
        ),
        (
            "adaptive-defaults.toml",
            format!(
                "[defaults]\nmax_connections = \"auto\"\n[defaults.adaptive]\n\
                 algorithm = \"aimd\"\nmax = 300\n\n{policy}adaptive.min = 10\n"
            )
            .into(),
        ),
        (
            "adaptive-without-auto.toml",
            format!("{policy}max_connections = 10\n[policy.adaptive]\nmin = 5\n").into(),
        ),
        (
            "policy-outlier.toml",
            format!(
                "{policy}max_open_percent = 30\n[policy.outlier]\ninterval = \"5s\"\n\
                 success_rate_stdev = 1.5\nsuccess_rate_min_hosts = 3\n\
                 success_rate_min_requests = 50\nfailure_percentage = 85\n\
                 failure_percentage_min_hosts = 3\nfailure_percentage_min_requests = 20\n\
                 latency_factor = 3.0\nlatency_min_requests = 10\nbase_ejection = \"10s\"\n\
                 max_ejection = \"10m\"\n"
            )
            .into(),
        ),
        (
            "outlier-defaults.toml",
            format!(
                "[defaults.outlier]\ninterval = \"30s\"\nfailure_percentage = 90\n\
                 max_ejection = \"1h\"\n\n{policy}outlier.latency_factor = 2.5\n"
            )
            .into(),
        ),
        (
            "outlier-ejection-order.toml",
            format!("{policy}[policy.outlier]\nbase_ejection = \"2m\"\nmax_ejection = \"1m\"\n")
                .into(),
        ),
        (
            "daemon.toml",
            "[daemon]\ninterfaces = [\"tap0\", \"veth-guest\"]\npacket_hook = \"xdp\"\n\
             dests_high_water = 0.9\ndests_low_water = 0.8\ngc_idle = \"10m\"\n"
                .into(),
        ),
        (
            "defaults.toml",
            "[defaults]\nfailure_threshold = 1\nopen = \"100ms\"\nopen_max = \"24h\"\n".into(),
        ),
        (
            "bad-values.toml",
            format!("{policy}failure_rate = 1.5\nopen = \"5 parsecs\"\n").into(),
        ),
        (
            "duplicate-rule.toml",
            format!("{policy}\n[[policy]]\nname = \"other\"\nmatch = [\"10.0.0.5:5432\"]\n").into(),
        ),
        (
            "unknown-key.toml",
            "[daemon]\nsocket = \"relative\"\nfoo = 1\n".into(),
        ),
        (
            "classes.toml",
            format!(
                "{policy}max_connections = 100\n\n[[class]]\nname = \"checkout\"\n\
                 priority = \"critical\"\ncgroups = [\"/sys/fs/cgroup/checkout.slice\"]\n\
                 share = 0.5\n\n[[class]]\nname = \"batch\"\npriority = \"sheddable\"\n\
                 cgroups = [\"/sys/fs/cgroup/batch.slice\", \"/sys/fs/cgroup/jobs\"]\n\n\
                 [[class]]\nname = \"rest\"\npriority = \"default\"\nshare = 0.25\n"
            )
            .into(),
        ),
        (
            "classes-bad.toml",
            "[[class]]\nname = \"a\"\npriority = \"high\"\ncgroups = [\"/a\"]\nshare = 0.6\n\n\
             [[class]]\nname = \"b\"\npriority = \"high\"\ncgroups = [\"/a\"]\nshare = 0.6\n"
                .into(),
        ),
    ]
}

/// A query string, a newline, a body (the `api` target's input).
fn api_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("status", "\n"),
        (
            "status-filtered",
            "dest=%5Bfd00%3A%3A1%5D%3A443&netns=4026531840&policy=db\n",
        ),
        (
            "put-policy",
            "db\nmatch = [\"10.0.0.5:5432\"]\nfailure_threshold = 3\nopen = \"10s\"",
        ),
        (
            "apply-policies",
            "\n[[policy]]\nname = \"db\"\nmatch = [\"10.0.0.5:5432\"]\n\n\
             [[policy]]\nname = \"web\"\nmatch = [\"[fd00::/64]:443\"]\nmode = \"observe\"\n",
        ),
        (
            "put-policy-auto",
            "api\nmatch = [\"10.0.1.0/24:8080\"]\nmax_connections = \"auto\"\n\
             adaptive.algorithm = \"vegas\"\nadaptive.max = 500",
        ),
        (
            "put-policy-outlier",
            "db\nmatch = [\"10.0.0.0/24:5432\"]\nmax_open_percent = 20\n\
             outlier.failure_percentage = 85\noutlier.base_ejection = \"10s\"",
        ),
        (
            "put-policy-two-tables",
            "db\nmatch = [\"10.0.0.5:5432\"]\n[[policy]]\nname = \"other\"\nmatch = [\"10.0.0.6:5432\"]",
        ),
        ("trip-for", "dest=10.0.0.5%3A5432&for=1h+30m\n"),
        ("disable", "dest=10.0.0.5%3A5432\n"),
        ("reset-netns", "dest=10.0.0.5%3A5432&netns=blue\n"),
        ("bad-escapes", "a+b=%zz&c=%+1\n"),
        ("unknown-field", "dest=10.0.0.5%3A1&x=1\n"),
    ]
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .to_vec()
}

fn cli_seeds() -> Vec<(&'static str, Vec<u8>)> {
    [
        ("dest-v4", "10.0.0.5:5432"),
        ("dest-v6", "[fd00::1]:443"),
        ("dest-v6-scope", "[fe80::1%2]:80"),
        ("dest-port-0", "10.0.0.5:0"),
        ("v4-mapped", "[::ffff:192.0.2.1]:443"),
        ("duration-ms", "500ms"),
        ("duration-s", "30s"),
        ("duration-m", "5m"),
        ("duration-h", "1h"),
        ("duration-compound", "1h 30m"),
        ("duration-huge", "99999999999h"),
        ("rule-v4", "10.0.0.0/8:5432"),
        ("rule-v6", "[fd00::/64]:443"),
        ("rule-any-port", "127.0.0.1:*"),
        ("rule-all", "[::/0]:*"),
        ("rule-host-bits", "10.0.0.1/8:80"),
        ("netns-inode", "4026531840"),
        ("netns-name", "blue"),
    ]
    .map(|(name, text)| (name, text.as_bytes().to_vec()))
    .to_vec()
}

const MAC_HOST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_CLIENT: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const CLIENT_V4: [u8; 4] = [10, 1, 0, 2];
const SERVER_V4: [u8; 4] = [192, 0, 2, 10];
const ROUTER_V4: [u8; 4] = [10, 1, 0, 1];
const CLIENT_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const SERVER_V6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const ROUTER_V6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

const IPV4: u16 = 0x0800;
const IPV6: u16 = 0x86dd;
const ARP: u16 = 0x0806;
const VLAN: u16 = 0x8100;
const QINQ: u16 = 0x88a8;

const HOP_BY_HOP: u8 = 0;
const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const FRAGMENT: u8 = 44;
const ICMPV6: u8 = 58;
const DEST_OPTIONS: u8 = 60;

const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// MSS, SACK permitted, timestamps, NOP, window scale: what Linux sends.
const LINUX_SYN_OPTIONS: [u8; 20] = [
    2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 0, 1, 3, 3, 7,
];

fn packet_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let syn = tcp(SYN, &LINUX_SYN_OPTIONS, &[]);
    let v4_syn = v4(TCP, 0x4000, 64, &[], &syn);
    let v6_syn = v6(TCP, &syn);
    let mut offloaded = eth(&[], IPV4, &v4_syn);
    // The TCP checksum field holding only the pseudo-header's sum, as a
    // sender with checksum offload leaves it.
    let pseudo = !checksum(&[&pseudo_v4(CLIENT_V4, SERVER_V4, syn.len())]);
    offloaded[14 + 20 + 16..14 + 20 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut bad_checksum = eth(&[], IPV4, &v4_syn);
    bad_checksum[14 + 20 + 16] ^= 0x55;
    let ext_chain = [ext_header(DEST_OPTIONS, 0), ext_header(TCP, 1), syn.clone()].concat();
    let fragment_header = vec![TCP, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    vec![
        ("v4-syn", eth(&[], IPV4, &v4_syn)),
        ("v6-syn", eth(&[], IPV6, &v6_syn)),
        ("v4-syn-vlan", eth(&[VLAN], IPV4, &v4_syn)),
        ("v6-syn-qinq", eth(&[QINQ, VLAN], IPV6, &v6_syn)),
        (
            "v4-syn-bare",
            eth(&[], IPV4, &v4(TCP, 0x4000, 64, &[], &tcp(SYN, &[], &[]))),
        ),
        (
            "v4-syn-ack",
            eth(
                &[],
                IPV4,
                &v4(
                    TCP,
                    0x4000,
                    64,
                    &[],
                    &tcp(SYN | ACK, &LINUX_SYN_OPTIONS, &[]),
                ),
            ),
        ),
        (
            "v4-rst",
            eth(
                &[],
                IPV4,
                &v4(TCP, 0x4000, 64, &[], &tcp(RST | ACK, &[], &[])),
            ),
        ),
        (
            "v6-data",
            eth(&[], IPV6, &v6(TCP, &tcp(PSH | ACK, &[], &[7; 32]))),
        ),
        (
            "v4-syn-ttl-1",
            eth(&[], IPV4, &v4(TCP, 0x4000, 1, &[], &syn)),
        ),
        ("v4-syn-offloaded", offloaded),
        ("v4-syn-bad-checksum", bad_checksum),
        (
            "v4-syn-ip-options",
            eth(&[], IPV4, &v4(TCP, 0x4000, 64, &[0x94, 4, 0, 0], &syn)),
        ),
        (
            "v6-syn-ext-headers",
            eth(&[], IPV6, &v6(HOP_BY_HOP, &ext_chain)),
        ),
        (
            "v4-fragment",
            eth(&[], IPV4, &v4(TCP, 0x2000, 64, &[], &syn)),
        ),
        (
            "v6-fragment",
            eth(
                &[],
                IPV6,
                &v6(FRAGMENT, &[fragment_header, syn.clone()].concat()),
            ),
        ),
        ("v4-syn-truncated", eth(&[], IPV4, &v4_syn)[..40].to_vec()),
        ("icmpv4-unreachable", icmpv4(3, 3, &v4_syn)),
        ("icmpv4-frag-needed", icmpv4(3, 4, &v4_syn)),
        ("icmpv4-quote-cut", icmpv4(3, 1, &v4_syn[..28])),
        ("icmpv6-unreachable", icmpv6(1, 4, &v6_syn)),
        ("icmpv6-quote-cut", icmpv6(1, 3, &v6_syn[..48])),
        (
            "v4-udp",
            eth(
                &[],
                IPV4,
                &v4(UDP, 0, 64, &[], &[0x9c, 0x40, 0, 53, 0, 8, 0, 0]),
            ),
        ),
        (
            "arp",
            eth(
                &[],
                ARP,
                &[
                    &[0, 1, 8, 0, 6, 4, 0, 1][..],
                    &MAC_CLIENT,
                    &CLIENT_V4,
                    &[0; 6],
                    &SERVER_V4,
                ]
                .concat(),
            ),
        ),
    ]
}

/// A TCP segment from the client to the server; its checksum is filled in by
/// [`v4`] and [`v6`].
fn tcp(flags: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    let data_offset = ((20 + options.len()) / 4) as u8;
    let mut out = Vec::new();
    out.extend(40_000u16.to_be_bytes());
    out.extend(443u16.to_be_bytes());
    out.extend(0x1234_5678u32.to_be_bytes());
    out.extend(if flags & ACK != 0 { 0xfeed_f00du32 } else { 0 }.to_be_bytes());
    out.extend([data_offset << 4, flags]);
    out.extend(64_240u16.to_be_bytes());
    out.extend([0, 0, 0, 0]); // checksum, urgent pointer
    out.extend(options);
    out.extend(payload);
    out
}

/// An IPv4 packet from the client to the server, with its checksums.
fn v4(protocol: u8, frag: u16, ttl: u8, options: &[u8], payload: &[u8]) -> Vec<u8> {
    v4_between(CLIENT_V4, SERVER_V4, protocol, frag, ttl, options, payload)
}

fn v4_between(
    src: [u8; 4],
    dst: [u8; 4],
    protocol: u8,
    frag: u16,
    ttl: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let header_len = 20 + options.len();
    let total_len = (header_len + payload.len()) as u16;
    let mut out = vec![0x40 | (header_len / 4) as u8, 0];
    out.extend(total_len.to_be_bytes());
    out.extend([0x1c, 0x46]);
    out.extend(frag.to_be_bytes());
    out.extend([ttl, protocol, 0, 0]);
    out.extend(src);
    out.extend(dst);
    out.extend(options);
    let sum = checksum(&[&out]);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut payload = payload.to_vec();
    if protocol == TCP {
        fill_tcp_checksum(&pseudo_v4(src, dst, payload.len()), &mut payload);
    }
    out.extend(payload);
    out
}

/// An IPv6 packet from the client to the server; a TCP header right after the
/// fixed header gets its checksum.
fn v6(next_header: u8, payload: &[u8]) -> Vec<u8> {
    v6_between(CLIENT_V6, SERVER_V6, next_header, payload)
}

fn v6_between(src: [u8; 16], dst: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x60, 0x0a, 0xbc, 0xde];
    out.extend((payload.len() as u16).to_be_bytes());
    out.extend([next_header, 64]);
    out.extend(src);
    out.extend(dst);
    let mut payload = payload.to_vec();
    if next_header == TCP {
        let pseudo = [
            &src[..],
            &dst,
            &(payload.len() as u32).to_be_bytes(),
            &[0, 0, 0, TCP],
        ]
        .concat();
        fill_tcp_checksum(&pseudo, &mut payload);
    }
    out.extend(payload);
    out
}

/// A hop-by-hop or destination options header of `(units + 1) * 8` bytes.
fn ext_header(next_header: u8, units: u8) -> Vec<u8> {
    let len = (usize::from(units) + 1) * 8;
    let mut out = vec![next_header, units, 1, (len - 4) as u8];
    out.resize(len, 0);
    out
}

/// What the router sends the client about its packet `quote`.
fn icmpv4(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let message = [&[kind, code, 0, 0, 0, 0, 0, 0][..], quote].concat();
    eth(
        &[],
        IPV4,
        &v4_between(ROUTER_V4, CLIENT_V4, ICMP, 0, 64, &[], &message),
    )
}

fn icmpv6(kind: u8, code: u8, quote: &[u8]) -> Vec<u8> {
    let message = [&[kind, code, 0, 0, 0, 0, 0, 0][..], quote].concat();
    eth(
        &[],
        IPV6,
        &v6_between(ROUTER_V6, CLIENT_V6, ICMPV6, &message),
    )
}

/// An Ethernet frame to the host, with VLAN tags of the given TPIDs.
fn eth(tpids: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = [MAC_HOST, MAC_CLIENT].concat();
    for (i, tpid) in tpids.iter().enumerate() {
        out.extend(tpid.to_be_bytes());
        out.extend((100 + i as u16).to_be_bytes());
    }
    out.extend(ethertype.to_be_bytes());
    out.extend(payload);
    out
}

fn pseudo_v4(src: [u8; 4], dst: [u8; 4], tcp_len: usize) -> Vec<u8> {
    [&src[..], &dst, &[0, TCP], &(tcp_len as u16).to_be_bytes()].concat()
}

fn fill_tcp_checksum(pseudo: &[u8], segment: &mut [u8]) {
    if segment.len() < 20 {
        return;
    }
    let sum = checksum(&[pseudo, segment]);
    segment[16..18].copy_from_slice(&sum.to_be_bytes());
}

/// RFC 1071 over the concatenation of `parts`.
fn checksum(parts: &[&[u8]]) -> u16 {
    !enforcer_fuzz::ones_sum(parts)
}
