//! The enforcer daemon and CLI: loads the kernel programs, attaches them to a
//! cgroup, and reads what they count.

pub mod bpf;
pub mod cgroup;
pub mod cli;
pub mod config;
pub mod rule;
