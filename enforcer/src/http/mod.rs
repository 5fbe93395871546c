//! HTTP for the control socket and the metrics listener (axum routers served
//! by hyper, with bounds on everything a client controls), and the CLI's
//! client over the control socket.

pub mod check;
pub mod client;
pub mod server;
pub mod stream;
