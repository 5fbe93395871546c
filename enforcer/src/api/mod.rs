//! The control API's typed resources, shared by the daemon (which serves
//! them) and the CLI (which reads them): JSON over HTTP on the root-only
//! control socket, usable with `curl --unix-socket`.
//!
//! | request                                                  | answer                               |
//! |----------------------------------------------------------|--------------------------------------|
//! | `GET /v1/status[?dest=D][&netns=N][&policy=P][&class=C]` | [`Status`]                           |
//! | `GET /v1/policies`, `GET /v1/policies/P`                 | [`PolicyView`]s                      |
//! | `GET /v1/classes`, `GET /v1/classes/C`                   | [`ClassView`]s                       |
//! | `PUT /v1/policies/P` (TOML keys)                         | [`Applied`]                          |
//! | `DELETE /v1/policies/P`                                  | [`Applied`]                          |
//! | `POST /v1/policies` (`[[policy]]` TOML)                  | [`Applied`]                          |
//! | `POST /v1/trip?dest=D[&for=T]`                           | [`OverrideSet`]                      |
//! | `POST /v1/disable?dest=D[&for=T]`                        | [`OverrideSet`]                      |
//! | `POST /v1/reset?dest=D[&netns=N]`                        | [`ResetDone`]                        |
//! | `POST /v1/pause`, `POST /v1/resume`                      | [`Switch`]                           |
//! | `POST /v1/reload`                                        | [`Applied`]                          |
//! | `GET /v1/events`                                         | [`Event`]s, one JSON line each, live |
//! | `GET /v1/metrics`                                        | the Prometheus text                  |
//! | `POST /v1/uninstall`                                     | [`Uninstalling`]                     |
//! | `POST /v1/chaos` (experiment TOML)                       | [`ExperimentView`] (started)         |
//! | `GET /v1/chaos`, `GET /v1/chaos/E`                       | [`ExperimentView`]s                  |
//! | `POST /v1/chaos/E/abort`, `POST /v1/chaos/abort`         | [`ExperimentView`]s aborted          |
//!
//! A refused request answers 4xx with an [`ErrorBody`] naming the field
//! (nothing changed); a failure answers 5xx. A destination `D` is an address
//! and port; `netns=N` (a namespace's inode or its name under /run/netns)
//! narrows it to one network namespace, and without it a request acts on the
//! address in every namespace. Overrides (`trip`, `disable`) always apply in
//! every namespace.

mod chaos;
mod params;
mod resources;

pub use chaos::{AbortView, CheckView, ExperimentView, FaultView, Stage};

pub use params::{Dest, Lasting, OverrideQuery, ResetQuery, StatusQuery, duration_within};
pub use resources::{
    AdaptiveSettings, Applied, BaselineView, BreakerState, ByCause, Cap, ClassCounts,
    ClassSettings, ClassView, Destination, EjectionView, ErrorBody, Event, Failures, LimitChange,
    Netns, OutlierSettings, OverrideKind, OverrideSet, PolicySettings, PolicyView, ResetDone,
    Status, Switch, Uninstalling, WorkloadMatch,
};
