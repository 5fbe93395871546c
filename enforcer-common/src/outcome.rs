//! Classification of a connect's outcome from what the kernel tells the socket.
//!
//! Only the peer and the path count against a destination:
//!
//! | how the connect ended                                          | outcome        |
//! |----------------------------------------------------------------|----------------|
//! | a RST answered the SYN (`ECONNREFUSED`)                        | refused        |
//! | the SYN retries or the connect timeout ran out (`ETIMEDOUT`)   | timeout        |
//! | an ICMP error about the SYN (`EHOSTUNREACH`, `ENETUNREACH`, …) | unreachable    |
//! | the caller ended it (close, `shutdown`, `connect(AF_UNSPEC)`)  | abandoned      |
//! | … after its SYN went unanswered past a retransmission          | timeout        |
//! | failed inside `connect()`, before any SYN left                 | local error    |
//! | a timeout or ICMP error of a socket whose TTL the caller lowered | local error  |
//!
//! The socket's error (`sk_err`, read through BTF in `sock_ops`) tells them
//! apart when the socket goes SYN_SENT → CLOSE: the kernel sets it before the
//! transition for a RST, a timeout or an ICMP error, and leaves it 0 when the
//! caller disconnects. Where it cannot be read (no BTF, or an error left over
//! from an earlier connect on the same socket) the segments received and the
//! retransmission timer still tell a RST and a timeout; anything else is
//! abandoned, which never trips a breaker.

use crate::sock::{flags, marks};

/// The kernel's TCP states this module looks at (`BPF_TCP_*`).
pub mod tcp_state {
    pub const SYN_SENT: u32 = 2;
    pub const CLOSE: u32 = 7;
}

/// `ECONNREFUSED`: a RST answered the SYN.
pub const ECONNREFUSED: i32 = 111;
/// `ETIMEDOUT`: the SYN retries or the user timeout ran out.
pub const ETIMEDOUT: i32 = 110;

/// What happened to an admitted connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Refused,
    Timeout,
    Unreachable,
    /// The application gave up before the destination had a say.
    Abandoned,
    /// Failed on this host: not the destination's doing.
    LocalError,
}

/// How an admitted connect moved on, whichever plane saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The handshake completed.
    Established,
    /// The connect ended without a handshake (a failure, or abandoned); nothing
    /// of the connection is left.
    Failed(Outcome),
    /// A connection that had its outcome ended: only its slot is left.
    Closed,
}

impl End {
    /// Whether this end finishes the connect's record (nothing is left for
    /// a later end to give back: its entry can go), as opposed to recording
    /// the handshake of a connection that goes on.
    pub const fn finishes(self) -> bool {
        !matches!(self, Self::Established)
    }
}

impl Outcome {
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Refused | Self::Timeout | Self::Unreachable)
    }
}

/// What `sock_ops` sees of a socket going SYN_SENT → CLOSE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SynSentClose {
    /// The socket's error, if it could be read.
    pub sk_err: Option<i32>,
    /// Segments received in this connect (since its SYN).
    pub segs_in: u32,
    /// The socket's [`marks`].
    pub marks: u64,
}

/// The outcome of a connect whose socket went from SYN_SENT to CLOSE.
pub const fn classify_syn_sent_close(seen: SynSentClose) -> Outcome {
    let trusted_err = if seen.marks & marks::STALE_ERROR != 0 {
        None
    } else {
        seen.sk_err
    };
    let outcome = match trusted_err {
        Some(0) => return caller_ended(seen.marks),
        Some(ECONNREFUSED) => Outcome::Refused,
        Some(ETIMEDOUT) => Outcome::Timeout,
        Some(_) => Outcome::Unreachable,
        None if seen.segs_in > 0 => Outcome::Refused,
        None if seen.marks & marks::SYN_TIMED_OUT != 0 => Outcome::Timeout,
        // A caller's disconnect or an ICMP error: which one cannot be told.
        None => return caller_ended(seen.marks),
    };
    path_failure(outcome, seen.marks)
}

/// The caller ended a connect still in SYN_SENT (close, `shutdown`,
/// `connect(AF_UNSPEC)`): abandoned, unless its SYN had already gone
/// unanswered past a retransmission — then the destination was silent, which
/// is what most callers' own connect timeouts (curl, Go, Java) look like.
pub const fn caller_ended(sock_marks: u64) -> Outcome {
    if sock_marks & marks::SYN_RETRANSMITTED != 0 {
        path_failure(Outcome::Timeout, sock_marks)
    } else {
        Outcome::Abandoned
    }
}

/// What `cgroup/sock_release` records for an admitted socket the application
/// releases in `tcp_state`. It runs before the protocol's close, so:
/// - SYN_SENT: the caller gives up on its connect (see [`caller_ended`]); TCP
///   Fast Open connects that never sent their SYN end here too, since no state
///   callback was ever enabled for them;
/// - CLOSE: whatever the record still holds failed inside `connect()`, before
///   any SYN left (no route from the bound address, no local port, another
///   program's refusal): a local error;
/// - any other state: nothing. The connection got as far as its SYN, which
///   enabled the state callbacks (a connect whose callbacks could not be
///   enabled was ended there, abandoned): the close reports it.
pub const fn on_release(tcp_state: u32, sock_flags: u64, sock_marks: u64) -> Option<End> {
    match tcp_state {
        tcp_state::SYN_SENT => Some(End::Failed(caller_ended(sock_marks))),
        tcp_state::CLOSE => on_reconnect(sock_flags),
        _ => None,
    }
}

/// Whether the release of a socket in `tcp_state` can record anything
/// ([`on_release`]): the release hook looks for a record only then, so the
/// common release (of a connection the close reports) costs no lookup.
pub const fn ends_at_release(tcp_state: u32) -> bool {
    matches!(tcp_state, tcp_state::SYN_SENT | tcp_state::CLOSE)
}

/// What the gate records, before a socket's record is written anew, about the
/// previous connect of a socket that connects again. The gate runs only for a
/// socket in CLOSE, so an earlier connect that still holds something failed
/// inside `connect()`: a local error. One that ended is left alone, and a
/// fresh record (no flags: the socket's first connect) holds nothing.
pub const fn on_reconnect(sock_flags: u64) -> Option<End> {
    if sock_flags == 0 {
        return None;
    }
    let ended = sock_flags & flags::OUTCOME_RECORDED != 0;
    let holds = sock_flags & (flags::HOLDS_SLOT | flags::PENDING) != 0;
    if !ended || holds {
        Some(End::Failed(Outcome::LocalError))
    } else {
        None
    }
}

/// A failure on the path of a socket whose caller lowered its hop limit is
/// the caller's doing.
const fn path_failure(outcome: Outcome, sock_marks: u64) -> Outcome {
    match outcome {
        Outcome::Timeout | Outcome::Unreachable if sock_marks & marks::HOP_LIMITED != 0 => {
            Outcome::LocalError
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(sk_err: Option<i32>, segs_in: u32, marks: u64) -> Outcome {
        classify_syn_sent_close(SynSentClose {
            sk_err,
            segs_in,
            marks,
        })
    }

    const EHOSTUNREACH: i32 = 113;

    #[test]
    fn the_socket_error_names_the_peer_or_the_path() {
        assert_eq!(close(Some(ECONNREFUSED), 1, 0), Outcome::Refused);
        assert_eq!(close(Some(ETIMEDOUT), 0, 0), Outcome::Timeout);
        assert_eq!(close(Some(EHOSTUNREACH), 0, 0), Outcome::Unreachable);
    }

    #[test]
    fn no_error_is_the_caller_giving_up() {
        // shutdown() or connect(AF_UNSPEC) in SYN_SENT, even after segments
        // came in (the socket's counters are not the connect's).
        assert_eq!(close(Some(0), 0, 0), Outcome::Abandoned);
        assert_eq!(close(Some(0), 3, 0), Outcome::Abandoned);
        assert!(!close(Some(0), 0, 0).is_failure());
    }

    #[test]
    fn giving_up_after_a_silent_retransmission_is_a_timeout() {
        let silent = marks::SYN_RETRANSMITTED;
        assert_eq!(close(Some(0), 0, silent), Outcome::Timeout);
        assert_eq!(caller_ended(silent), Outcome::Timeout);
        assert_eq!(caller_ended(0), Outcome::Abandoned);
    }

    #[test]
    fn a_lowered_hop_limit_makes_path_failures_local() {
        let m = marks::HOP_LIMITED;
        assert_eq!(close(Some(EHOSTUNREACH), 0, m), Outcome::LocalError);
        assert_eq!(close(Some(ETIMEDOUT), 0, m), Outcome::LocalError);
        assert_eq!(
            caller_ended(m | marks::SYN_RETRANSMITTED),
            Outcome::LocalError
        );
        // A RST still came from the peer.
        assert_eq!(close(Some(ECONNREFUSED), 1, m), Outcome::Refused);
    }

    #[test]
    fn a_stale_error_is_not_trusted() {
        // An error left by an earlier connect on the socket, then shutdown().
        let m = marks::STALE_ERROR;
        assert_eq!(close(Some(ECONNREFUSED), 0, m), Outcome::Abandoned);
        assert_eq!(close(Some(ECONNREFUSED), 1, m), Outcome::Refused);
        assert_eq!(
            close(Some(EHOSTUNREACH), 0, m | marks::SYN_TIMED_OUT),
            Outcome::Timeout
        );
    }

    #[test]
    fn release_in_syn_sent_is_the_caller_giving_up() {
        let held = flags::HOLDS_SLOT | flags::PENDING;
        let end = on_release(tcp_state::SYN_SENT, held, marks::CALLBACKS_ON);
        assert_eq!(end, Some(End::Failed(Outcome::Abandoned)));
        // A deferred TCP Fast Open connect: no callback was ever enabled.
        assert_eq!(
            on_release(tcp_state::SYN_SENT, held, 0),
            Some(End::Failed(Outcome::Abandoned))
        );
        let silent = marks::CALLBACKS_ON | marks::SYN_RETRANSMITTED;
        assert_eq!(
            on_release(tcp_state::SYN_SENT, held, silent),
            Some(End::Failed(Outcome::Timeout))
        );
    }

    #[test]
    fn release_in_close_settles_a_synchronous_failure() {
        let held = flags::HOLDS_SLOT | flags::PENDING;
        assert_eq!(
            on_release(tcp_state::CLOSE, held, 0),
            Some(End::Failed(Outcome::LocalError))
        );
        // Already ended and released by the state callback: nothing to do.
        assert_eq!(
            on_release(
                tcp_state::CLOSE,
                flags::OUTCOME_RECORDED,
                marks::CALLBACKS_ON
            ),
            None
        );
    }

    #[test]
    fn release_of_a_live_connection_waits_for_its_close() {
        const ESTABLISHED: u32 = 1;
        let f = flags::HOLDS_SLOT | flags::OUTCOME_RECORDED;
        assert_eq!(on_release(ESTABLISHED, f, marks::CALLBACKS_ON), None);
        assert!(!ends_at_release(ESTABLISHED));
        assert!(ends_at_release(tcp_state::SYN_SENT) && ends_at_release(tcp_state::CLOSE));
    }

    #[test]
    fn connecting_again_settles_what_the_last_connect_left() {
        let held = flags::HOLDS_SLOT | flags::PENDING;
        assert_eq!(on_reconnect(held), Some(End::Failed(Outcome::LocalError)));
        assert_eq!(on_reconnect(flags::OUTCOME_RECORDED), None);
        assert_eq!(on_reconnect(0), None);
        assert_eq!(
            on_reconnect(flags::OUTCOME_RECORDED | flags::HOLDS_SLOT),
            Some(End::Failed(Outcome::LocalError))
        );
    }

    #[test]
    fn without_the_socket_error_only_a_rst_and_the_timer_count() {
        assert_eq!(close(None, 1, 0), Outcome::Refused);
        assert_eq!(close(None, 0, marks::SYN_TIMED_OUT), Outcome::Timeout);
        // An answer wins over the timer giving up at the same time.
        assert_eq!(close(None, 1, marks::SYN_TIMED_OUT), Outcome::Refused);
        // An ICMP error or the caller: cannot tell, never a failure.
        assert_eq!(close(None, 0, 0), Outcome::Abandoned);
    }
}
