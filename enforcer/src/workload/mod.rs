//! Workload selectors: policies and classes that name their workloads by
//! cgroup path pattern ([`Pattern`]) instead of a fixed directory. The
//! daemon walks the tree where the patterns may match ([`tree`]), matches
//! them ([`select`]), writes what they select into the kernel, and watches
//! the directories it walked for workloads coming and going
//! ([`crate::daemon::workloads`]).

mod pattern;
pub mod select;
pub mod tree;

pub use pattern::Pattern;
pub use select::{Owner, Selection, Selectors, select};
pub use tree::{Cgroup, walk};
