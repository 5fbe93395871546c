//! Field offsets and values of the wire formats, relative to the start of each header.

pub(super) mod eth {
    pub const DST: usize = 0;
    pub const SRC: usize = 6;
    pub const ADDR_LEN: usize = 6;
    pub const TYPE: usize = 12;
    pub const HEADER_LEN: usize = 14;
    /// An 802.1Q/802.1ad tag: TPID (which stands where the ethertype would) + TCI.
    pub const VLAN_TAG_LEN: usize = 4;
    /// 802.1Q and 802.1ad (QinQ): deeper stacks are not seen on a host's veths.
    pub const MAX_VLAN_TAGS: usize = 2;

    pub const P_IPV4: u16 = 0x0800;
    pub const P_IPV6: u16 = 0x86DD;
    pub const P_8021Q: u16 = 0x8100;
    pub const P_8021AD: u16 = 0x88A8;
}

pub(super) mod ipv4 {
    pub const VERSION: u8 = 4;
    pub const TOTAL_LEN: usize = 2;
    pub const ID: usize = 4;
    pub const FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;
    /// Without options (IHL 5).
    pub const HEADER_LEN: usize = 20;

    /// More fragments, in the flags/fragment-offset word.
    pub const MORE_FRAGMENTS: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;
}

pub(super) mod ipv6 {
    pub const VERSION: u8 = 6;
    pub const PAYLOAD_LEN: usize = 4;
    pub const NEXT_HEADER: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: usize = 8;
    pub const DST: usize = 24;
    pub const HEADER_LEN: usize = 40;

    /// Extension headers the parser walks past, each `(hdr_ext_len + 1) * 8` bytes.
    pub const HOP_BY_HOP: u8 = 0;
    pub const ROUTING: u8 = 43;
    pub const DEST_OPTIONS: u8 = 60;
    /// Marks a fragment: never walked past.
    pub const FRAGMENT: u8 = 44;
    /// How many extension headers are walked; more means `Other`. Real stacks send
    /// at most hop-by-hop, routing and destination options before TCP.
    pub const MAX_EXT_HEADERS: usize = 4;
    /// Units of `hdr_ext_len`.
    pub const EXT_UNIT: usize = 8;
}

pub(super) mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const ICMPV6: u8 = 58;
}

pub(super) mod tcp {
    pub const SPORT: usize = 0;
    pub const DPORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    /// Data offset (high nibble) and reserved bits (low nibble).
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    /// Without options (data offset 5).
    pub const HEADER_LEN: usize = 20;
    /// Data offset 15.
    pub const MAX_HEADER_LEN: usize = 60;
    pub const OPTION_NOP: u8 = 1;
    /// What an ICMP error must quote of a segment: ports and sequence number.
    pub const QUOTED_LEN: usize = 8;
}

pub(super) mod icmp {
    /// Type, code, checksum and 4 bytes of type-specific data; the quote follows.
    pub const HEADER_LEN: usize = 8;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;

    pub const V4_DEST_UNREACHABLE: u8 = 3;
    /// "Fragmentation needed": path MTU discovery, not a failure of the destination.
    pub const V4_FRAG_NEEDED: u8 = 4;
    pub const V6_DEST_UNREACHABLE: u8 = 1;
}
