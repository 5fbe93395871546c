//! [`Window`]: what a flow knows of both sides' sequence numbers, and which
//! segments it believes.
//!
//! A segment ends or answers a flow only when it fits where the other side
//! would accept it, so that a guest (or anyone spoofing either side) cannot end
//! a flow that goes on, or answer a SYN that nobody answered:
//!
//! | segment                        | believed when                                   |
//! |--------------------------------|-------------------------------------------------|
//! | SYN-ACK to the guest           | it acknowledges the SYN: ack in (SYN, sent]     |
//! | RST to the guest, no answer yet| ACK set and it acknowledges the SYN (RFC 9293 SYN-SENT) |
//! | RST from the guest, no answer  | seq = what the guest sent next (its SYN + 1)     |
//! | FIN or data, no answer         | never (a SYN-SENT peer sends neither): ignored   |
//! | RST or FIN after the answer    | seq in [what the receiver acknowledged, what the sender sent] |
//!
//! The receiver takes a RST only at exactly its next expected number (RFC
//! 5961, as Linux does) and a FIN within its window; both lie in that range,
//! which right after the handshake is a single number and grows only by data
//! in flight. A guest racing its own unacknowledged data can still end its own
//! flow a little early; what it sends outside the range cannot end anything.
//!
//! Tracking is a few compares per segment and a store only when a number
//! moves. A side's next number moves only by segments that start within what
//! it already sent (no gaps: a blind sender must hit the window to move it),
//! or by the other side acknowledging more, which proves the bytes passed.

use crate::{
    impl_pod,
    outcome::{End, Outcome},
    packet::{Segment, tcp_flags},
};

/// Bits of [`Window::marks`].
pub mod marks {
    /// The guest sent its SYN again (same sequence number) while waiting for
    /// an answer: the destination stayed silent for a retransmission timeout.
    pub const SYN_AGAIN: u32 = 1 << 0;
}

/// Sequence numbers of one flow, host order. The guest-side fields are written
/// from the guest's segments, the destination-side ones from the
/// destination's, each with a plain store (a lost race costs a number that the
/// next segment moves again).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// The sequence number of the guest's SYN.
    pub syn: u32,
    /// [`marks`].
    pub marks: u32,
    /// One past the last sequence number the guest sent (its SYN counts one).
    pub guest_next: u32,
    /// The highest acknowledgment the guest sent: the destination's data it has.
    pub guest_acked: u32,
    /// One past the last sequence number the destination sent (from its SYN-ACK on).
    pub dest_next: u32,
    /// The highest acknowledgment the destination sent: the guest's data it has.
    pub dest_acked: u32,
}
const _: () = assert!(size_of::<Window>() == 24);
impl_pod!(Window);

/// What a segment means for its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Neither an answer nor an end (its numbers are tracked).
    Nothing,
    /// The flow's outcome (an answer to its SYN) or its end.
    End(End),
    /// It claims to answer or end the flow but lies outside its window:
    /// ignored.
    OutOfWindow,
}

/// `a` comes after `b` in sequence space (RFC 9293 modular comparison).
#[inline(always)]
pub const fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// `seq` in `[low, high]` in sequence space (`high` not before `low`, which
/// tracking keeps: an acknowledgment moves the peer's next number with it).
#[inline(always)]
const fn within(seq: u32, low: u32, high: u32) -> bool {
    seq.wrapping_sub(low) <= high.wrapping_sub(low)
}

/// The sequence space a segment occupies: its data, and one each for SYN and FIN.
#[inline(always)]
const fn occupies(seg: &Segment) -> u32 {
    seg.payload_len
        .wrapping_add((seg.flags & tcp_flags::SYN != 0) as u32)
        .wrapping_add((seg.flags & tcp_flags::FIN != 0) as u32)
}

impl Window {
    /// The window of a flow the guest opened with `syn`.
    #[inline(always)]
    pub const fn opened_by(syn: &Segment) -> Self {
        Self {
            syn: syn.seq,
            marks: 0,
            guest_next: syn.seq.wrapping_add(occupies(syn)),
            guest_acked: 0,
            dest_next: 0,
            dest_acked: 0,
        }
    }

    /// Whether the guest sent its SYN again.
    #[inline(always)]
    pub const fn syn_again(&self) -> bool {
        self.marks & marks::SYN_AGAIN != 0
    }

    /// Whether `ack` acknowledges the guest's SYN (and no more than it sent).
    #[inline(always)]
    const fn acks_syn(&self, ack: u32) -> bool {
        after(ack, self.syn) && !after(ack, self.guest_next)
    }

    /// A segment from the guest; `answered`: the flow has its outcome.
    #[inline(always)]
    pub fn from_guest(&mut self, seg: &Segment, answered: bool) -> Seen {
        if seg.flags & tcp_flags::RST != 0 {
            let believed = if answered {
                within(seg.seq, self.dest_acked, self.guest_next)
            } else {
                // Before the answer the destination expects nothing else.
                seg.seq == self.guest_next
            };
            return end_if(believed, End::Failed(Outcome::Abandoned), answered);
        }
        // A guest in SYN-SENT sends nothing else (data rides on the SYN
        // itself): a FIN or data now is nonsense, neither an end nor numbers
        // to track. The SYN timeout decides.
        if !answered {
            return Seen::Nothing;
        }
        if seg.flags & tcp_flags::FIN != 0 {
            let believed = within(seg.seq, self.dest_acked, self.guest_next);
            return end_if(believed, End::Closed, true);
        }
        track(&mut self.guest_next, seg);
        if seg.flags & tcp_flags::ACK != 0 {
            acknowledge(&mut self.guest_acked, &mut self.dest_next, seg.ack);
        }
        Seen::Nothing
    }

    /// A segment from the destination; `answered`: the flow has its outcome.
    #[inline(always)]
    pub fn from_dest(&mut self, seg: &Segment, answered: bool) -> Seen {
        let acks = seg.flags & tcp_flags::ACK != 0;
        if seg.flags & tcp_flags::RST != 0 {
            let believed = if answered {
                within(seg.seq, self.guest_acked, self.dest_next)
            } else {
                // A RST without ACK in SYN-SENT is dropped by the guest.
                acks && self.acks_syn(seg.ack)
            };
            return end_if(believed, End::Failed(Outcome::Refused), answered);
        }
        if !answered {
            if seg.flags & tcp_flags::SYN == 0 || !acks {
                return Seen::Nothing;
            }
            if !self.acks_syn(seg.ack) {
                return Seen::OutOfWindow;
            }
            // The destination's numbers start here; the guest has its SYN.
            self.dest_next = seg.seq.wrapping_add(occupies(seg));
            self.dest_acked = seg.ack;
            self.guest_acked = self.dest_next;
            return Seen::End(End::Established);
        }
        if seg.flags & tcp_flags::FIN != 0 {
            let believed = within(seg.seq, self.guest_acked, self.dest_next);
            return end_if(believed, End::Closed, true);
        }
        track(&mut self.dest_next, seg);
        if acks {
            acknowledge(&mut self.dest_acked, &mut self.guest_next, seg.ack);
        }
        Seen::Nothing
    }
}

/// `before_answer` when the flow has no outcome yet, else a close.
#[inline(always)]
const fn end_if(believed: bool, before_answer: End, answered: bool) -> Seen {
    match (believed, answered) {
        (false, _) => Seen::OutOfWindow,
        (true, true) => Seen::End(End::Closed),
        (true, false) => Seen::End(before_answer),
    }
}

/// Moves a sender's next number past `seg` if it starts within what was sent.
#[inline(always)]
fn track(next: &mut u32, seg: &Segment) {
    let end = seg.seq.wrapping_add(occupies(seg));
    if !after(seg.seq, *next) && after(end, *next) {
        *next = end;
    }
}

/// Records an acknowledgment; the peer sent at least what it acknowledges.
#[inline(always)]
fn acknowledge(acked: &mut u32, peer_next: &mut u32, ack: u32) {
    if after(ack, *acked) {
        *acked = ack;
        if after(ack, *peer_next) {
            *peer_next = ack;
        }
    }
}
