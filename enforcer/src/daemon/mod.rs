//! `enforcer run`: the daemon. It installs (or adopts) the pinned programs, writes
//! the policies and the priority classes, and then serves the control API and the metrics while the
//! controller loop re-jitters backoff tables, heals, collects garbage and expires
//! overrides, and the event reader turns kernel transitions into logs.
//!
//! Everything shared lives in one [`Daemon`] behind a mutex ([`state`]); the
//! process goes [`start()`] → [`settle()`] → [`serve()`].

pub mod api;
pub mod apply;
pub mod baselines;
pub mod chaos;
pub mod classes;
mod control_socket;
pub mod controller;
pub mod events;
mod flows;
pub mod heal;
mod kernel_log;
pub mod learn;
mod listeners;
pub mod logs;
pub mod metrics;
mod notices;
pub mod outliers;
mod private_dir;
pub mod saved;
pub mod scan;
mod schedule;
mod series;
mod serve;
mod settle;
mod skb_hooks;
mod start;
mod state;
pub mod view;
pub mod workloads;

pub use listeners::Listeners;
pub use serve::serve;
pub use settle::settle;
pub use start::{RunOptions, StartError, Started, attach_point, start};
pub use state::{Daemon, RunningPolicy, Shared, lock};
