//! Types shared by the kernel programs and the daemon, and the pure logic both run.
//!
//! Everything that crosses the kernel/userspace boundary is `#[repr(C)]` with
//! fixed-width integers and explicit padding (no `bool`, no `Option`), and a size
//! assertion beside it, so both sides agree on every byte.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod bank;
pub mod breaker;
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
pub mod rules;
pub mod sock;

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
