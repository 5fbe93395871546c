//! Field offsets of kernel structs, read from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`), for the few socket fields the programs read
//! through BTF-typed pointers (see `enforcer_common::maps::globals`).
//!
//! aya parses BTF but keeps its type table private, and the one BTF crate that
//! exposes member offsets is LGPL; what is needed here is a walk over the
//! type section that records the members of a few named structs, which the
//! format (Documentation/bpf/btf.rst) makes short.

use std::{collections::HashMap, fs, io, path::Path};

/// The kernel's own BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;

// BTF kinds whose records carry more than the common 12 bytes.
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;
const KIND_MAX: u32 = 19;

/// The socket fields the programs read, as the loader sets them (0 = unknown:
/// the programs do without).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketFields {
    /// `struct sock.sk_err`.
    pub sk_err: u32,
    /// `struct inet_sock.uc_ttl`.
    pub uc_ttl: u32,
    /// `net.ipv4.ip_default_ttl`: a caller-set TTL below it is lowered.
    pub min_ttl: u32,
    /// `struct inet_sock.pinet6` (NULL on IPv4 sockets).
    pub pinet6: u32,
    /// `struct ipv6_pinfo.hop_limit`: the byte offset of the 16-bit word
    /// holding it, and where in that word it lies (a 9-bit bitfield before
    /// Linux 6.5 or so, a whole `__s16` since).
    pub hop_limit: u32,
    pub hop_limit_shift: u32,
    pub hop_limit_bits: u32,
    /// `net.ipv6.conf.default.hop_limit`: a caller-set hop limit below it is
    /// lowered.
    pub min_hop_limit: u32,
    /// `struct inet_connection_sock.icsk_user_timeout` (ms): whether the
    /// application chose its own `TCP_USER_TIMEOUT`, read without a
    /// `bpf_getsockopt`.
    pub user_timeout: u32,
    /// `struct sock_common.skc_cookie` in `struct sock` (`u64`, 0 until
    /// someone asks for the socket's cookie): whether a socket can have a
    /// record at all, read without generating a cookie for every socket.
    pub cookie: u32,
}

impl SocketFields {
    /// The running kernel's, or unknown (with the reason) when its BTF cannot
    /// be read.
    pub fn of_running_kernel() -> (Self, Option<BtfError>) {
        let sysctl = |path: &str| {
            fs::read_to_string(path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(64)
        };
        let defaults = Self {
            min_ttl: sysctl("/proc/sys/net/ipv4/ip_default_ttl"),
            min_hop_limit: sysctl("/proc/sys/net/ipv6/conf/default/hop_limit"),
            ..Self::default()
        };
        let structs = [
            "sock",
            "sock_common",
            "inet_sock",
            "ipv6_pinfo",
            "inet_connection_sock",
        ];
        match Layout::read(Path::new(VMLINUX), &structs) {
            Ok(layout) => {
                let hop_limit = layout.s16_field("ipv6_pinfo", "hop_limit");
                (
                    Self {
                        sk_err: layout.int_offset("sock", "sk_err", 4).unwrap_or(0),
                        uc_ttl: layout.int_offset("inet_sock", "uc_ttl", 2).unwrap_or(0),
                        pinet6: layout.pointer_offset("inet_sock", "pinet6").unwrap_or(0),
                        hop_limit: hop_limit.map_or(0, |f| f.word),
                        hop_limit_shift: hop_limit.map_or(0, |f| f.shift),
                        hop_limit_bits: hop_limit.map_or(0, |f| f.bits),
                        user_timeout: layout
                            .int_offset("inet_connection_sock", "icsk_user_timeout", 4)
                            .unwrap_or(0),
                        cookie: layout.cookie_offset().unwrap_or(0),
                        ..defaults
                    },
                    None,
                )
            }
            Err(e) => (defaults, Some(e)),
        }
    }
}

/// A member as the type section holds it: name, type id, bit offset,
/// bitfield size (0: not a bitfield).
type RawMember = (String, u32, u32, u32);

/// Why the layout could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: not BTF ({what})")]
    Malformed { path: String, what: &'static str },
}

/// A struct member: byte offset, the size of its type when it is an integer
/// (0 otherwise), and whether it is a pointer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub offset: u32,
    pub int_size: u32,
    pub pointer: bool,
    /// Offset in bits, and the bitfield's size (0: not a bitfield).
    pub bit_offset: u32,
    pub bitfield: u32,
}

/// A signed integer of at most 16 bits: the 16-bit word holding it (byte
/// offset), and its shift and width in that word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S16Field {
    pub word: u32,
    pub shift: u32,
    pub bits: u32,
}

/// The members of the structs asked for, by struct and member name.
#[derive(Debug, Default)]
pub struct Layout {
    structs: HashMap<String, HashMap<String, Member>>,
}

impl Layout {
    /// Reads the members of `structs` from the BTF file at `path`.
    pub fn read(path: &Path, structs: &[&str]) -> Result<Self, BtfError> {
        let data = fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data, structs).map_err(|what| BtfError::Malformed {
            path: path.display().to_string(),
            what,
        })
    }

    /// The member `member` of `struct name`, if both exist.
    pub fn member(&self, name: &str, member: &str) -> Option<Member> {
        self.structs.get(name)?.get(member).copied()
    }

    /// The byte offset of `skc_cookie` (an `atomic64_t`: a struct, not an
    /// integer) in `struct sock`, through the `struct sock_common` it starts
    /// with.
    pub fn cookie_offset(&self) -> Option<u32> {
        let common = self.member("sock", "__sk_common")?;
        let cookie = self.member("sock_common", "skc_cookie")?;
        (common.bit_offset % 8 == 0 && cookie.bit_offset % 64 == 0 && cookie.bitfield == 0)
            .then_some(common.offset + cookie.offset)
    }

    /// The byte offset of a pointer member, if the kernel has it.
    pub fn pointer_offset(&self, name: &str, member: &str) -> Option<u32> {
        self.member(name, member)
            .filter(|m| m.pointer)
            .map(|m| m.offset)
    }

    /// The byte offset of an integer member of `int_size` bytes (not a
    /// bitfield), if the kernel has it.
    pub fn int_offset(&self, name: &str, member: &str, int_size: u32) -> Option<u32> {
        self.member(name, member)
            .filter(|m| m.int_size == int_size && m.bitfield == 0 && m.bit_offset % 8 == 0)
            .map(|m| m.offset)
    }

    /// A 16-bit integer member, or a bitfield of a 16-bit integer that lies
    /// within one aligned 16-bit word.
    pub fn s16_field(&self, name: &str, member: &str) -> Option<S16Field> {
        let m = self.member(name, member).filter(|m| m.int_size == 2)?;
        if m.bitfield == 0 {
            return (m.bit_offset % 8 == 0).then_some(S16Field {
                word: m.offset,
                shift: 0,
                bits: 16,
            });
        }
        let shift = m.bit_offset % 16;
        (shift + m.bitfield <= 16).then_some(S16Field {
            word: m.bit_offset / 16 * 2,
            shift,
            bits: m.bitfield,
        })
    }

    fn parse(data: &[u8], wanted: &[&str]) -> Result<Self, &'static str> {
        let u16_at = |at: usize| -> Result<u16, &'static str> {
            data.get(at..at + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or("truncated")
        };
        let u32_at = |at: usize| -> Result<u32, &'static str> {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or("truncated")
        };
        if u16_at(0)? != MAGIC {
            return Err("bad magic (or not little-endian)");
        }
        let hdr_len = u32_at(4)? as usize;
        let (type_off, type_len) = (u32_at(8)? as usize, u32_at(12)? as usize);
        let (str_off, str_len) = (u32_at(16)? as usize, u32_at(20)? as usize);
        let types = hdr_len + type_off..hdr_len + type_off + type_len;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or("string section out of bounds")?;
        let name = |off: u32| -> &str {
            strings
                .get(off as usize..)
                .and_then(|s| s.split(|&b| b == 0).next())
                .and_then(|s| std::str::from_utf8(s).ok())
                .unwrap_or("")
        };

        // Type ids start at 1. First pass: every type's kind, size and target,
        // so a member's type can be followed through typedefs and qualifiers.
        let mut kinds: Vec<(u32, u32)> = vec![(0, 0)];
        let mut members_of: Vec<(String, Vec<RawMember>)> = Vec::new();
        // The members of anonymous structs and unions, by type id: a wanted
        // struct's unnamed member of one of those holds members of its own
        // (`sock_common`'s `skc_daddr` is in an anonymous struct in an
        // anonymous union).
        let mut anonymous: HashMap<u32, Vec<RawMember>> = HashMap::new();
        let mut at = types.start;
        while at < types.end {
            let (name_off, info, size_or_type) = (u32_at(at)?, u32_at(at + 4)?, u32_at(at + 8)?);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 != 0;
            if kind == 0 || kind > KIND_MAX {
                return Err("unknown type kind");
            }
            at += 12;
            kinds.push((kind, size_or_type));
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_DATASEC => 12 * vlen,
                _ => 0,
            };
            let anon = matches!(kind, KIND_STRUCT | KIND_UNION) && name_off == 0;
            if (kind == KIND_STRUCT && wanted.contains(&name(name_off))) || anon {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = at + 12 * i;
                    let (m_name, m_type, m_offset) = (u32_at(m)?, u32_at(m + 4)?, u32_at(m + 8)?);
                    // With kind_flag, the top 8 bits hold a bitfield's size.
                    let (bit_offset, bitfield) = if kind_flag {
                        (m_offset & 0x00ff_ffff, m_offset >> 24)
                    } else {
                        (m_offset, 0)
                    };
                    members.push((name(m_name).to_owned(), m_type, bit_offset, bitfield));
                }
                if anon {
                    anonymous.insert(kinds.len() as u32 - 1, members);
                } else {
                    members_of.push((name(name_off).to_owned(), members));
                }
            }
            at += extra;
        }

        // A member's type, through typedefs and qualifiers: (kind, size).
        let resolve = |mut ty: u32| -> (u32, u32) {
            for _ in 0..16 {
                match kinds.get(ty as usize) {
                    // typedef, volatile, const, restrict, type_tag
                    Some(&(8..=11 | 18, next)) => ty = next,
                    Some(&(kind, size)) => return (kind, size),
                    None => break,
                }
            }
            (0, 0)
        };
        // An unnamed member stands for the members of its anonymous type, at
        // its offset (nested at most a few deep).
        let flatten = |members: Vec<RawMember>| -> Vec<RawMember> {
            let mut out = Vec::new();
            let mut todo: Vec<(RawMember, u32)> = members.into_iter().map(|m| (m, 0)).collect();
            while let Some(((member, ty, bit_offset, bitfield), depth)) = todo.pop() {
                match anonymous.get(&ty) {
                    Some(inner) if member.is_empty() && depth < 4 => todo.extend(
                        inner
                            .iter()
                            .map(|(n, t, o, b)| ((n.clone(), *t, bit_offset + o, *b), depth + 1)),
                    ),
                    _ => out.push((member, ty, bit_offset, bitfield)),
                }
            }
            out
        };
        let mut layout = Self::default();
        for (name, members) in members_of {
            let entry = layout.structs.entry(name).or_default();
            for (member, ty, bit_offset, bitfield) in flatten(members) {
                let (kind, size) = resolve(ty);
                entry.insert(
                    member,
                    Member {
                        offset: bit_offset / 8,
                        int_size: if kind == KIND_INT { size } else { 0 },
                        pointer: kind == KIND_PTR && bitfield == 0 && bit_offset % 8 == 0,
                        bit_offset,
                        bitfield,
                    },
                );
            }
        }
        Ok(layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: `int` (4 bytes), `typedef int s32_t`, and
    /// `struct pair { s32_t a; short pad; int b; }` with `b` at byte 8.
    /// `struct pinfo { __u16 unused:7; __s16 hop_limit:9; __s16 whole; }`, as
    /// Linux 6.1 lays out `ipv6_pinfo.hop_limit` (bitfields: kind_flag set).
    fn bitfield_blob() -> Vec<u8> {
        let strings = b"\0short\0pinfo\0unused\0hop_limit\0whole\0".to_vec();
        let (short, pinfo, unused, hop, whole) = (1u32, 7u32, 13u32, 20u32, 30u32);
        let words: [u32; 16] = [
            short,
            KIND_INT << 24,
            2,
            (1 << 24) | 16, // id 1: short, signed, 16 bits
            pinfo,
            (1 << 31) | (KIND_STRUCT << 24) | 3,
            4, // id 2: struct pinfo, bitfield offsets
            unused,
            1,
            7 << 24, // 7 bits at bit 0
            hop,
            1,
            (9 << 24) | 7, // 9 bits at bit 7
            whole,
            1,
            16, // a whole short at bit 16
        ];
        wrap(&words, &strings)
    }

    /// `struct outer { union { struct { int a; int b; }; int c; }; short d; }`,
    /// as `sock_common` holds `skc_daddr`: members of anonymous members.
    #[test]
    fn members_of_anonymous_members_are_the_structs_own() {
        let strings = b"\0int\0short\0a\0b\0c\0outer\0d\0".to_vec();
        let (int, short, a, b, c, outer, d) = (1u32, 5u32, 11u32, 13u32, 15u32, 17u32, 23u32);
        let words: Vec<u32> = vec![
            int,
            KIND_INT << 24,
            4,
            (1 << 24) | 32, // 1: int
            short,
            KIND_INT << 24,
            2,
            (1 << 24) | 16, // 2: short
            0,
            (KIND_STRUCT << 24) | 2,
            8,
            a,
            1,
            0,
            b,
            1,
            32, // 3: struct { a; b; }
            0,
            (KIND_UNION << 24) | 2,
            8,
            0,
            3,
            0,
            c,
            1,
            0, // 4: union { (3); c; }
            outer,
            (KIND_STRUCT << 24) | 2,
            10,
            0,
            4,
            0,
            d,
            2,
            64, // 5: outer
        ];
        let layout = Layout::parse(&wrap(&words, &strings), &["outer"]).unwrap();
        assert_eq!(layout.int_offset("outer", "a", 4), Some(0));
        assert_eq!(layout.int_offset("outer", "b", 4), Some(4));
        assert_eq!(layout.int_offset("outer", "c", 4), Some(0));
        assert_eq!(layout.int_offset("outer", "d", 2), Some(8));
    }

    fn wrap(words: &[u32], strings: &[u8]) -> Vec<u8> {
        let types: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let header: [u32; 5] = [
            24,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ];
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        out.extend(header.iter().flat_map(|w| w.to_le_bytes()));
        out.extend_from_slice(&types);
        out.extend_from_slice(strings);
        out
    }

    #[test]
    fn a_bitfield_is_found_in_its_16_bit_word() {
        let layout = Layout::parse(&bitfield_blob(), &["pinfo"]).unwrap();
        let field = |m| layout.s16_field("pinfo", m);
        assert_eq!(
            field("hop_limit"),
            Some(S16Field {
                word: 0,
                shift: 7,
                bits: 9
            })
        );
        assert_eq!(
            field("whole"),
            Some(S16Field {
                word: 2,
                shift: 0,
                bits: 16
            })
        );
        // Not a whole integer: no plain offset for it.
        assert_eq!(layout.int_offset("pinfo", "hop_limit", 2), None);
        assert_eq!(layout.int_offset("pinfo", "whole", 2), Some(2));
    }

    fn blob() -> Vec<u8> {
        let strings = b"\0int\0s32_t\0pair\0a\0b\0".to_vec();
        let (int, s32, pair, a, b) = (1u32, 5u32, 11u32, 16u32, 18u32);
        let words: [u32; 16] = [
            int,
            KIND_INT << 24,
            4,
            32, // id 1: int, 32 bits
            s32,
            8 << 24,
            1, // id 2: typedef s32_t -> int
            pair,
            (KIND_STRUCT << 24) | 2,
            12, // id 3: struct pair
            a,
            2,
            0, // a: s32_t at bit 0
            b,
            1,
            64, // b: int at bit 64
        ];
        wrap(&words, &strings)
    }

    #[test]
    fn members_are_found_through_typedefs() {
        let layout = Layout::parse(&blob(), &["pair"]).unwrap();
        assert_eq!(layout.int_offset("pair", "a", 4), Some(0));
        assert_eq!(layout.int_offset("pair", "b", 4), Some(8));
        assert_eq!(layout.int_offset("pair", "b", 2), None);
        assert_eq!(layout.member("pair", "c"), None);
        assert_eq!(layout.member("other", "a"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Layout::parse(b"nope", &["sock"]).is_err());
        let mut truncated = blob();
        truncated.truncate(40);
        assert!(Layout::parse(&truncated, &["pair"]).is_err());
    }

    #[test]
    fn the_running_kernel_has_the_socket_fields() {
        // Every kernel the enforcer supports has BTF (and the file is
        // world-readable).
        let layout = Layout::read(Path::new(VMLINUX), &["sock", "inet_sock"]).unwrap();
        assert!(layout.int_offset("sock", "sk_err", 4).is_some());
        assert!(layout.int_offset("inet_sock", "uc_ttl", 2).is_some());
        assert!(layout.pointer_offset("inet_sock", "pinet6").is_some());
        let (fields, error) = SocketFields::of_running_kernel();
        assert!(error.is_none(), "{error:?}");
        for (name, value) in [
            ("sk_err", fields.sk_err),
            ("uc_ttl", fields.uc_ttl),
            ("pinet6", fields.pinet6),
            ("hop_limit", fields.hop_limit),
            ("min_ttl", fields.min_ttl),
            ("min_hop_limit", fields.min_hop_limit),
            ("user_timeout", fields.user_timeout),
            ("cookie", fields.cookie),
        ] {
            assert_ne!(value, 0, "{name}");
        }
    }
}
