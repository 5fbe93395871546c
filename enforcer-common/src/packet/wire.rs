//! What the packet code needs of the wire formats beyond `network_types`' header
//! types and enums, which give every field's offset (`offset_of!`), every fixed
//! header's length (`LEN`), and the ethertype and protocol numbers.
//!
//! The types lay out the headers only: fields are read from the copied bytes
//! through `frame`'s checks, never through a pointer cast to a header type.

use network_types::{eth::EthHdr, vlan::VlanHdr};

/// Bytes of a header field, from its type: `offset_of!` says where a field starts,
/// this how long it is (`field_len(|ip: &Ipv4Hdr| &ip.src_addr)`).
pub(super) const fn field_len<H, F>(_field: fn(&H) -> &F) -> usize {
    size_of::<F>()
}

/// 802.1Q and 802.1ad (QinQ): deeper stacks are not seen on a host's veths.
pub(super) const MAX_VLAN_TAGS: usize = 2;

/// Where the IP header of a packet the parser reads (and so of a plain one) starts
/// at the latest: after at most two VLAN tags.
pub(super) const MAX_L3: usize = EthHdr::LEN + MAX_VLAN_TAGS * VlanHdr::LEN;

/// `Ipv4Hdr` reads the version nibble and the flags/fragment-offset word through
/// accessors with the masks inside, and names no values to compare with.
pub(super) mod ipv4 {
    pub const VERSION: u8 = 4;
    /// More fragments.
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

/// `Ipv6Hdr` names no version to compare with; `network_types` has no IPv6
/// extension header types.
pub(super) mod ipv6 {
    pub const VERSION: u8 = 6;
    /// Units of an extension header's `hdr_ext_len`: each header is
    /// `(hdr_ext_len + 1) * 8` bytes.
    pub const EXT_UNIT: usize = 8;
}

/// `TcpHdr` keeps the data offset and the flags in a bit field it reads bit by
/// bit, and has no options.
pub(super) mod tcp {
    use core::mem::offset_of;

    use network_types::tcp::TcpHdr;

    /// Data offset (high nibble) and reserved bits (low nibble): the bit field's
    /// first byte.
    pub const DATA_OFFSET: usize = offset_of!(TcpHdr, _bitfield_1);
    /// The [`super::super::tcp_flags`] bits: the bit field's second byte.
    pub const FLAGS: usize = DATA_OFFSET + 1;
    /// Data offset 15.
    pub const MAX_HEADER_LEN: usize = 60;
    pub const OPTION_NOP: u8 = 1;
}

/// Codes and types `network_types`' ICMP enums leave out.
pub(super) mod icmp {
    /// ICMPv4 destination unreachable's "fragmentation needed" code: path MTU
    /// discovery, not a failure of the destination.
    pub const V4_FRAG_NEEDED: u8 = 4;
    /// ICMPv6 destination unreachable, which `Icmpv6Type` lacks (it has packet
    /// too big, parameter problem, echo and redirect).
    pub const V6_DEST_UNREACHABLE: u8 = 1;
}
