//! Local processes in the protected cgroup.
