//! Trust: every attack of an unprivileged process, a container or a guest on
//! the state the enforcer shares per destination, run against the real kernel
//! by a child that dropped to `nobody` (or a guest in its own namespace), and
//! shown not to work.

mod flood;
mod guests;
mod sockets;
