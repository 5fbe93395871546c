//! Classification of a connect's outcome from what `sock_ops` can see.
//!
//! `sock_ops` does not expose `sk_err`, so the reason a connect failed is told apart
//! by what the socket went through: a RST to the SYN is the only way a SYN_SENT
//! socket closes after receiving a segment (`segs_in` is counted in `tcp_v4_rcv`
//! before the segment is processed; ICMP errors do not go through it); the
//! retransmission timer reports through `RTO_CB` whether it gave up (the socket
//! then closes because of the timeout); any other close of a SYN_SENT socket is
//! an ICMP error (which may arrive after some retransmits) or a local one.

use crate::sock::marks;

/// What happened to an admitted connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Refused,
    Timeout,
    Unreachable,
    /// The application closed the socket before the handshake ended.
    Abandoned,
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

impl Outcome {
    pub const fn is_failure(self) -> bool {
        matches!(self, Self::Refused | Self::Timeout | Self::Unreachable)
    }
}

/// The outcome of a connect whose socket went from SYN_SENT to CLOSE.
///
/// `sock_marks` are the socket's [`marks`]; `segs_in` is the number of segments
/// the socket received.
pub const fn classify_syn_sent_close(sock_marks: u64, segs_in: u32) -> Outcome {
    if sock_marks & marks::RELEASED_CONNECTING != 0 {
        Outcome::Abandoned
    } else if segs_in > 0 {
        Outcome::Refused
    } else if sock_marks & marks::SYN_TIMED_OUT != 0 {
        Outcome::Timeout
    } else {
        Outcome::Unreachable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rst_to_the_syn_is_refused() {
        assert_eq!(classify_syn_sent_close(0, 1), Outcome::Refused);
    }

    #[test]
    fn an_answer_wins_over_a_timeout() {
        // The peer answered with a RST as the timer gave up.
        let f = marks::SYN_TIMED_OUT;
        assert_eq!(classify_syn_sent_close(f, 1), Outcome::Refused);
    }

    #[test]
    fn a_timer_that_gave_up_is_timeout() {
        let f = marks::SYN_TIMED_OUT;
        assert_eq!(classify_syn_sent_close(f, 0), Outcome::Timeout);
    }

    #[test]
    fn any_other_silent_close_is_unreachable() {
        assert_eq!(classify_syn_sent_close(0, 0), Outcome::Unreachable);
    }

    #[test]
    fn application_close_is_not_a_failure() {
        let f = marks::RELEASED_CONNECTING | marks::SYN_TIMED_OUT;
        let outcome = classify_syn_sent_close(f, 0);
        assert_eq!(outcome, Outcome::Abandoned);
        assert!(!outcome.is_failure());
    }
}
