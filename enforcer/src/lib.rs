//! The enforcer daemon and CLI: loads the kernel programs, attaches them to a
//! cgroup, and reads what they count.

pub mod adaptive;
pub mod api;
pub mod baseline;
pub mod bpf;
pub mod cgroup;
pub mod chaos;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod http;
pub mod interval;
pub mod netns;
pub mod outlier;
pub mod privilege;
pub mod rule;
pub mod workload;
