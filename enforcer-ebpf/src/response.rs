//! The response latency of admitted connections whose policy learns from it
//! ([`Signal::Response`]), the clock [`enforcer_common::response`] defines,
//! measured on the packets [`crate::skb`] hands over. This only watches.

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::{bpf_ktime_get_ns, generated::bpf_tcp_sock},
    programs::SkBuffContext,
};
use enforcer_common::{
    policy::Signal,
    response::{self, Step},
    sock::{SockInfo, marks},
};
use network_types::{
    eth::EtherType,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
};

use crate::{atomic, dest, policies::Policies};

/// A packet leaves a socket the gate admitted: the clock starts at the
/// caller's first data when the policy learns from it.
#[inline(always)]
pub fn on_out(sk: *mut bpf_sock, sock: &mut SockInfo) {
    let marks = atomic::load(&raw const sock.marks);
    // Measured already, or never to be; or the clock runs: later packets of
    // the request have nothing to start (no helper call for them).
    if marks & (marks::RESPONSE_DONE | marks::REQUEST_SENT) != 0 {
        return;
    }
    // SAFETY: a full socket the caller looked up.
    let tp = unsafe { bpf_tcp_sock(sk) };
    // SAFETY: null-checked; valid for the program's run.
    let data_segs_out = unsafe { tp.as_ref() }.map_or(0, |tp| tp.data_segs_out);
    if response::on_sent(marks, data_segs_out) == Step::Start {
        start(sock);
    }
}

/// A packet arrives for a socket the gate admitted: the first payload after
/// the request stops the clock.
#[inline(always)]
pub fn on_in(ctx: &SkBuffContext, sock: &mut SockInfo) {
    let marks = atomic::load(&raw const sock.marks);
    if marks & marks::RESPONSE_DONE != 0 || marks & marks::REQUEST_SENT == 0 {
        return;
    }
    // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
    let now = unsafe { bpf_ktime_get_ns() };
    let step = response::on_received(marks, payload(ctx), sock.sent_ns, now);
    // Whoever sets the mark first records: packets of one socket may be
    // received on two CPUs at once.
    if let Step::Answered(latency) = step
        && atomic::fetch_or(&raw mut sock.marks, marks::RESPONSE_DONE) & marks::RESPONSE_DONE == 0
    {
        dest::record_answer(sock, latency, Policies::active());
    }
}

/// The caller's first data is leaving: the clock starts when the policy
/// learns from it; otherwise the socket is left alone from now on.
#[inline(always)]
fn start(sock: &mut SockInfo) {
    let wanted = Policies::active()
        .policy(sock.policy_id)
        .is_some_and(|p| p.signal == Signal::Response as u32);
    if wanted {
        // SAFETY: `bpf_ktime_get_ns` takes no argument and reads only the clock.
        sock.sent_ns = unsafe { bpf_ktime_get_ns() };
        // After the time: a reader that sees the mark sees the time.
        atomic::fetch_or(&raw mut sock.marks, marks::REQUEST_SENT);
    } else {
        atomic::fetch_or(&raw mut sock.marks, marks::RESPONSE_DONE);
    }
}

/// Bytes of TCP payload in the packet (0 when its headers cannot be read).
#[inline(always)]
fn payload(ctx: &SkBuffContext) -> u16 {
    // `protocol` holds the EtherType in network order, as `EtherType` does.
    let protocol = ctx.skb.protocol() as u16;
    if protocol == EtherType::Ipv4 as u16 {
        let Ok(ip) = ctx.load::<Ipv4Hdr>(0) else {
            return 0;
        };
        let Ok(tcp) = ctx.load::<TcpHdr>(usize::from(ip.ihl())) else {
            return 0;
        };
        response::payload_v4(&ip, &tcp)
    } else if protocol == EtherType::Ipv6 as u16 {
        let Ok(ip) = ctx.load::<Ipv6Hdr>(0) else {
            return 0;
        };
        let Ok(tcp) = ctx.load::<TcpHdr>(Ipv6Hdr::LEN) else {
            return 0;
        };
        response::payload_v6(&ip, &tcp).unwrap_or(0)
    } else {
        0
    }
}
