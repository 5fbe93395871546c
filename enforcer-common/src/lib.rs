//! Types shared by the kernel programs and the daemon, and the pure logic both run.
//!
//! Everything that crosses the kernel/userspace boundary is `#[repr(C)]` with
//! fixed-width integers and explicit padding (no `bool`, no `Option`), and a size
//! assertion beside it, so both sides agree on every byte.
//!
//! Sets of mutually exclusive values (a breaker's state, a policy's mode, a
//! command's kind) are `#[repr(u32)]` enums (`raw_enum!`), but the structs
//! keep a plain `u32` field for them: a map value holds whatever bytes were
//! last written to it (by the other side, an older build, a `bpftool map
//! update`), and an enum field holding a value that names no variant would be
//! undefined behaviour. Code writes `Enum::Variant as u32`, compares the field
//! with it, and decodes a field read from a map with `Enum::from_raw`. Sets of
//! bits (`sock::flags`, `control::when`, ...) stay constants.
#![no_std]
// `dest::add_shared`: the BPF target's atomic add.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(test)]
extern crate std;

pub mod bank;
pub mod baseline;
pub mod breaker;
pub mod chaos;
pub mod class;
pub mod config;
pub mod control;
pub mod counters;
pub mod dest;
pub mod event;
pub mod fields;
pub mod flow;
pub mod maps;
pub mod outcome;
pub mod overrides;
pub mod packet;
pub mod policy;
pub mod response;
pub mod rules;
pub mod sock;
pub mod workload;

/// Implements `aya::Pod` for the listed types when built for the daemon.
macro_rules! impl_pod {
    ($($ty:ty),+ $(,)?) => {
        $(
            #[cfg(feature = "user")]
            // SAFETY: `#[repr(C)]`, only integer fields, no implicit padding (checked by
            // the size assertion next to the type).
            unsafe impl aya::Pod for $ty {}
        )+
    };
}
pub(crate) use impl_pod;

/// Declares a fieldless `#[repr(u32)]` enum of values shared with the kernel,
/// and its `from_raw`: the variant a `u32` field holds, `None` for a value
/// that names none (see the crate's documentation for why fields stay `u32`).
macro_rules! raw_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $( $(#[$variant_meta])* $variant = $value, )+
        }

        impl $name {
            /// The variant `raw` holds, `None` for a value that names none.
            #[inline(always)]
            pub const fn from_raw(raw: u32) -> Option<Self> {
                match raw {
                    $( $value => Some(Self::$variant), )+
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use raw_enum;
