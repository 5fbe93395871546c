//! The control API's handlers ([`crate::api`] lists the resources): an axum
//! router over the daemon. Every change is validated whole before anything
//! is written; a refused request changes nothing and answers 4xx naming the
//! field.

use axum::{
    Json, Router,
    body::Body,
    extract::{FromRequestParts, Path, State, rejection::StringRejection},
    http::{Method, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use enforcer_common::{
    class::CLASSES,
    control::{self, Command},
    dest::DestKey,
    overrides,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_stream::{
    StreamExt as _,
    wrappers::{BroadcastStream, errors::BroadcastStreamRecvError},
};

use super::{
    Daemon, Shared,
    classes::RunningClass,
    lock,
    notices::{daemon_event, dest_event},
    view,
};
use crate::{
    api::ExperimentView,
    api::{
        Applied, ClassCounts, ClassView, Dest, ErrorBody, Event, Lasting, OverrideKind,
        OverrideQuery, OverrideSet, PolicyView, ResetDone, ResetQuery, StatusQuery, Switch,
        Uninstalling,
    },
    bpf::{Applied as Written, BpfError},
    chaos::experiment::Experiment,
    clock::monotonic_ns,
    config::{Config, PolicySpec},
    http::stream,
    netns::Selector,
    workload::Owner,
};

/// A refused or failed request: its status and the message naming what.
#[derive(Debug, PartialEq, Eq)]
pub struct Reject {
    pub status: StatusCode,
    pub message: String,
}

impl Reject {
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<BpfError> for Reject {
    fn from(e: BpfError) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// A query string read as `T` (serde, as `axum::extract::Query`), refused
/// with serde's message, which names the field.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Reject;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Reject> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(Self)
            .map_err(|e| Reject::bad(e.to_string()))
    }
}

/// A request body as text (policies are TOML), or why not.
fn text(body: Result<String, StringRejection>) -> Result<String, Reject> {
    body.map_err(|e| Reject::new(e.status(), format!("body: {}", e.body_text())))
}

#[derive(Clone)]
struct Api {
    shared: Shared,
    stop: watch::Sender<bool>,
}

type Answer<T> = Result<Json<T>, Reject>;

pub fn router(shared: Shared, stop: watch::Sender<bool>) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/policies", get(policies).post(apply_policies))
        .route(
            "/v1/policies/{name}",
            get(policy).put(set_policy).delete(remove_policy),
        )
        .route("/v1/classes", get(classes))
        .route("/v1/classes/{name}", get(class))
        .route("/v1/trip", post(trip))
        .route("/v1/disable", post(disable))
        .route("/v1/reset", post(reset))
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/reload", post(reload_request))
        .route("/v1/events", get(events))
        .route("/v1/metrics", get(metrics))
        .route("/v1/uninstall", post(uninstall))
        .route("/v1/chaos", get(experiments).post(start_experiment))
        .route("/v1/chaos/abort", post(abort_all))
        .route("/v1/chaos/{name}", get(experiment))
        .route("/v1/chaos/{name}/abort", post(abort_experiment))
        .fallback(no_endpoint)
        .method_not_allowed_fallback(no_endpoint)
        .with_state(Api { shared, stop })
}

async fn no_endpoint(method: Method, uri: Uri) -> Reject {
    Reject::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// The cookies of the namespace `selector` names (several only if an inode
/// was reused after its namespace was gone), or none without a selector.
fn netns_cookies(selector: Option<&Selector>, shared: &Shared) -> Result<Option<Vec<u64>>, Reject> {
    let Some(selector) = selector else {
        return Ok(None);
    };
    // Not under the daemon's lock: finding a namespace created since the last
    // discovery walks /proc.
    let registry = lock(shared).namespaces.clone();
    let cookies = registry.find_now(selector).map_err(|e| {
        Reject::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("netns: discovering namespaces: {e}"),
        )
    })?;
    if cookies.is_empty() {
        let what = match selector {
            Selector::Inode(i) => format!("with inode {i}"),
            Selector::Name(n) => format!("named `{n}` in {}", crate::netns::NAMED_DIR),
        };
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("netns: no network namespace {what} (that this daemon can enter)"),
        ));
    }
    Ok(Some(cookies))
}

fn no_policy(name: &str) -> Reject {
    Reject::new(
        StatusCode::NOT_FOUND,
        format!("policy: no policy named `{name}`"),
    )
}

fn no_class(d: &Daemon, name: &str) -> Reject {
    let running = if d.classes.is_empty() {
        " (no classes are configured)".to_owned()
    } else {
        let names: Vec<&str> = d.classes.iter().map(|c| c.spec.name.as_str()).collect();
        format!(" (the classes are {})", names.join(", "))
    };
    Reject::new(
        StatusCode::NOT_FOUND,
        format!("class: no class named `{name}`{running}"),
    )
}

/// Streams the status as it is serialised: the snapshot is taken under the
/// lock, everything else happens after.
async fn status(State(api): State<Api>, Query(q): Query<StatusQuery>) -> Result<Response, Reject> {
    let netns = netns_cookies(q.netns.as_ref(), &api.shared)?;
    let (snapshot, class) = {
        let d = lock(&api.shared);
        if let Some(p) = &q.policy
            && d.policy_by_name(p).is_none()
        {
            return Err(no_policy(p));
        }
        let class = match &q.class {
            Some(name) => Some(
                d.class_by_name(name)
                    .ok_or_else(|| no_class(&d, name))?
                    .spec
                    .priority,
            ),
            None => None,
        };
        (view::StatusSnapshot::take(&d)?, class)
    };
    let filter = view::Filter {
        dest: q.dest.map(|d| d.0),
        netns,
        policy: q.policy,
        class,
    };
    Ok(stream::streamed("application/json", move |w| {
        serde_json::to_writer(w, &snapshot.into_status(&filter)).map_err(std::io::Error::from)
    }))
}

async fn policies(State(api): State<Api>) -> Answer<Vec<PolicyView>> {
    Ok(Json(view::policies(&lock(&api.shared))?))
}

async fn policy(State(api): State<Api>, Path(name): Path<String>) -> Answer<PolicyView> {
    let d = lock(&api.shared);
    let p = d.policy_by_name(&name).ok_or_else(|| no_policy(&name))?;
    Ok(Json(view::policy(&d, p.id, &p.spec)?))
}

/// Each class's counts summed over the destinations: the map is read on a
/// blocking thread, through its own handle, outside the daemon's lock.
async fn class_sums(shared: &Shared) -> Result<[ClassCounts; CLASSES], Reject> {
    let dests = lock(shared).enforcer.maps().dests.clone();
    tokio::task::spawn_blocking(move || view::class_sums(&dests))
        .await
        .map_err(|e| Reject::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(Reject::from)
}

/// A running class and its selectors' matches, per pattern.
fn with_selected(d: &Daemon, c: &RunningClass) -> (RunningClass, Option<Vec<usize>>) {
    let selected = d.workloads.counts(Owner::Class(c.spec.priority));
    (c.clone(), selected.map(<[usize]>::to_vec))
}

async fn classes(State(api): State<Api>) -> Answer<Vec<ClassView>> {
    let running: Vec<_> = {
        let d = lock(&api.shared);
        d.classes.iter().map(|c| with_selected(&d, c)).collect()
    };
    let sums = class_sums(&api.shared).await?;
    Ok(Json(
        running
            .iter()
            .map(|(c, selected)| view::class(c, &sums, selected.as_deref()))
            .collect(),
    ))
}

async fn class(State(api): State<Api>, Path(name): Path<String>) -> Answer<ClassView> {
    let (running, selected) = {
        let d = lock(&api.shared);
        let c = d.class_by_name(&name).ok_or_else(|| no_class(&d, &name))?;
        with_selected(&d, c)
    };
    let sums = class_sums(&api.shared).await?;
    Ok(Json(view::class(&running, &sums, selected.as_deref())))
}

/// Validates `specs` as the new whole set and applies it.
fn replace_policies(d: &mut Daemon, specs: Vec<PolicySpec>) -> Answer<Applied> {
    d.config
        .check_set(&specs)
        .map_err(|e| Reject::bad(e.to_string()))?;
    let policies = specs.len();
    d.change_policies(specs).map_err(|e| match e {
        // A scope naming no cgroup, or more rules than the kernel's maps
        // hold, is the request's fault; apply checks both before writing
        // anything.
        super::apply::ApplyError::Cgroup { .. }
        | super::apply::ApplyError::Bpf(crate::bpf::BpfError::RulesCapacity { .. }) => {
            Reject::bad(e.to_string())
        }
        e => Reject::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    })?;
    Ok(Json(Applied { policies }))
}

/// The policy a `PUT /v1/policies/NAME` sets: the body's TOML keys as one
/// `[[policy]]` table named NAME, inheriting `config`'s defaults.
pub fn put_policy(config: &Config, name: &str, body: &str) -> Result<PolicySpec, Reject> {
    let text = format!(
        "[[policy]]\nname = {}\n{body}\n",
        toml::Value::String(name.to_owned())
    );
    let mut parsed = config
        .parse_policies(&text, "request")
        .map_err(|e| Reject::bad(e.to_string()))?;
    // A `[[policy]]` header in the body would start another policy, which
    // would then be set in NAME's place under its own name.
    match (parsed.pop(), parsed.is_empty()) {
        (Some(spec), true) => Ok(spec),
        _ => Err(Reject::bad(
            "body: the keys of one policy, without table headers",
        )),
    }
}

async fn set_policy(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Result<String, StringRejection>,
) -> Answer<Applied> {
    let body = text(body)?;
    let mut d = lock(&api.shared);
    let spec = put_policy(&d.config, &name, &body)?;
    let mut specs = d.specs();
    match specs.iter_mut().find(|p| p.name == name) {
        Some(existing) => *existing = spec,
        None => specs.push(spec),
    }
    replace_policies(&mut d, specs)
}

async fn remove_policy(State(api): State<Api>, Path(name): Path<String>) -> Answer<Applied> {
    let mut d = lock(&api.shared);
    let mut specs = d.specs();
    let before = specs.len();
    specs.retain(|p| p.name != name);
    if specs.len() == before {
        return Err(no_policy(&name));
    }
    replace_policies(&mut d, specs)
}

async fn apply_policies(
    State(api): State<Api>,
    body: Result<String, StringRejection>,
) -> Answer<Applied> {
    let body = text(body)?;
    let mut d = lock(&api.shared);
    let specs = d
        .config
        .parse_policies(&body, "policy file")
        .map_err(|e| Reject::bad(e.to_string()))?;
    replace_policies(&mut d, specs)
}

async fn trip(State(api): State<Api>, Query(q): Query<OverrideQuery>) -> Answer<OverrideSet> {
    set_override(&api.shared, q.dest, q.lasting, OverrideKind::ForcedOpen)
}

async fn disable(State(api): State<Api>, Query(q): Query<OverrideQuery>) -> Answer<OverrideSet> {
    set_override(&api.shared, q.dest, q.lasting, OverrideKind::Disabled)
}

fn set_override(
    shared: &Shared,
    dest: Dest,
    lasting: Option<Lasting>,
    what: OverrideKind,
) -> Answer<OverrideSet> {
    let until_ns = lasting.map_or(0, |l| monotonic_ns() + l.0.as_nanos() as u64);
    let kind = match what {
        OverrideKind::Disabled => overrides::Kind::Disabled,
        _ => overrides::Kind::ForcedOpen,
    };
    let mut d = lock(shared);
    let maps = d.enforcer.maps_mut();
    maps.overrides.set(
        &mut maps.config,
        dest.0,
        overrides::Override {
            kind: kind as u32,
            _pad: 0,
            until_ns,
        },
    )?;
    let detail = lasting.map_or("until reset".to_owned(), |l| format!("for {l}"));
    d.publish(daemon_event(what.as_str(), Some(dest.0), &detail));
    Ok(Json(OverrideSet {
        dest: dest.0,
        kind: what,
    }))
}

/// Resets the destination in the namespace the query names (its override,
/// which applies in every namespace, stays), or in every namespace (the
/// override goes too).
async fn reset(State(api): State<Api>, Query(q): Query<ResetQuery>) -> Answer<ResetDone> {
    let netns = netns_cookies(q.netns.as_ref(), &api.shared)?;
    let dest = q.dest.0;
    let mut d = lock(&api.shared);
    let address = DestKey::from(dest);
    let keys: Vec<DestKey> = match &netns {
        Some(cookies) => cookies.iter().map(|c| address.in_netns(*c)).collect(),
        None => d
            .enforcer
            .maps()
            .dests
            .all()?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.in_netns(0) == address)
            .collect(),
    };
    let mut reset = Vec::new();
    for key in keys {
        let command = Command::new(control::Kind::Reset, key);
        if d.enforcer.control().run(&command)? != Written::NotFound {
            reset.push(key);
        }
    }
    let (override_removed, override_kept) = if netns.is_none() {
        (d.enforcer.maps_mut().overrides.remove(dest)?, None)
    } else {
        let kept = d
            .enforcer
            .maps()
            .overrides
            .all()?
            .into_iter()
            .find(|(k, o)| *k == address && o.active(monotonic_ns()))
            .map(|(_, o)| view::override_kind(&o));
        (false, kept)
    };
    if reset.is_empty() && !override_removed {
        let place = match &q.netns {
            Some(n) => format!("in netns {n}"),
            None => "in any namespace".to_owned(),
        };
        let override_note = if netns.is_none() {
            " and has no override"
        } else {
            ""
        };
        return Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("dest: {dest} is not tracked {place}{override_note}"),
        ));
    }
    let mut namespaces = Vec::new();
    for key in &reset {
        let label = d.namespaces.label(key.netns);
        if netns.is_some() {
            d.publish(dest_event("reset", key, label.clone(), ""));
        }
        namespaces.push(label.inode);
    }
    if netns.is_none() {
        d.publish(daemon_event("reset", Some(dest), ""));
    }
    Ok(Json(ResetDone {
        dest,
        destinations: reset.len(),
        netns: namespaces,
        override_removed,
        override_kept,
    }))
}

async fn pause(State(api): State<Api>) -> Answer<Switch> {
    switch(&api.shared, true)
}

async fn resume(State(api): State<Api>) -> Answer<Switch> {
    switch(&api.shared, false)
}

fn switch(shared: &Shared, paused: bool) -> Answer<Switch> {
    let mut d = lock(shared);
    d.enforcer.maps_mut().config.set_paused(paused)?;
    let kind = if paused { "paused" } else { "resumed" };
    d.publish(daemon_event(kind, None, ""));
    Ok(Json(Switch { paused }))
}

async fn reload_request(State(api): State<Api>) -> Answer<Applied> {
    reload(&api.shared)
        .map(|policies| Json(Applied { policies }))
        .map_err(Reject::bad)
}

/// Re-reads the configuration file and applies its policies and classes, or
/// changes nothing.
pub fn reload(shared: &Shared) -> Result<usize, String> {
    let _span = tracing::info_span!("reload").entered();
    let mut d = lock(shared);
    let config = Config::load(&d.config_path, &d.overrides).map_err(|e| format!("{e:#}"))?;
    if config.daemon != d.config.daemon {
        // Addresses, pins and the cgroup are bound at start; say so rather than
        // half-apply.
        return Err(
            "[daemon] settings changed: they take effect at the next start; nothing applied".into(),
        );
    }
    // The classes' cgroups are found before anything is written.
    let classes =
        super::classes::resolve(&config.classes).map_err(|e| format!("{e}; nothing applied"))?;
    let n = config.policies.len();
    d.set_policies(config.policies.clone())
        .map_err(|e| format!("{e:#}"))?;
    d.set_classes(classes).map_err(|e| format!("{e:#}"))?;
    // The file is authoritative again: runtime changes are dropped.
    super::saved::discard(&d.config.daemon.state_dir);
    d.config_fingerprint =
        super::saved::fingerprint(&std::fs::read_to_string(&d.config_path).unwrap_or_default());
    d.config = config;
    Ok(n)
}

/// Events as they happen, one JSON line each, until the client goes away.
async fn events(State(api): State<Api>) -> Response {
    let rx = lock(&api.shared).events.subscribe();
    let lines = BroadcastStream::new(rx).map(|item| {
        let event = item.unwrap_or_else(|BroadcastStreamRecvError::Lagged(missed)| Event {
            kind: "lagged".to_owned(),
            missed: Some(missed),
            ..Event::default()
        });
        let mut line = serde_json::to_vec(&event)?;
        line.push(b'\n');
        Ok::<_, serde_json::Error>(Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    super::metrics::scrape(api.shared).await
}

async fn experiments(State(api): State<Api>) -> Answer<Vec<ExperimentView>> {
    Ok(Json(lock(&api.shared).chaos.views()))
}

async fn experiment(State(api): State<Api>, Path(name): Path<String>) -> Answer<ExperimentView> {
    lock(&api.shared)
        .chaos
        .view(&name)
        .map(Json)
        .ok_or_else(|| no_experiment(&name))
}

fn no_experiment(name: &str) -> Reject {
    Reject::new(
        StatusCode::NOT_FOUND,
        format!("no experiment `{name}` (see `enforcer chaos list`)"),
    )
}

async fn start_experiment(
    State(api): State<Api>,
    body: Result<String, StringRejection>,
) -> Answer<ExperimentView> {
    use super::chaos::StartError;
    let experiment = Experiment::parse(&text(body)?).map_err(|e| Reject::bad(e.to_string()))?;
    super::chaos::start(&api.shared, experiment)
        .map(Json)
        .map_err(|e| match e {
            StartError::Invalid(_) => Reject::bad(e.to_string()),
            StartError::Running(_) | StartError::Slots { .. } => {
                Reject::new(StatusCode::CONFLICT, e.to_string())
            }
        })
}

async fn abort_experiment(
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Answer<Vec<ExperimentView>> {
    let stopped = super::chaos::abort(&mut lock(&api.shared), Some(&name))?;
    if stopped.is_empty() {
        let d = lock(&api.shared);
        return match d.chaos.view(&name) {
            Some(v) => Err(Reject::new(
                StatusCode::CONFLICT,
                format!("experiment `{name}` is not running ({})", v.stage.name()),
            )),
            None => Err(no_experiment(&name)),
        };
    }
    Ok(Json(aborted_views(&api.shared, stopped).await))
}

/// The kill switch: every fault off in one write, every experiment stopped.
async fn abort_all(State(api): State<Api>) -> Answer<Vec<ExperimentView>> {
    let stopped = super::chaos::abort(&mut lock(&api.shared), None)?;
    Ok(Json(aborted_views(&api.shared, stopped).await))
}

/// The views of experiments just stopped, once their tasks recorded it
/// (their faults are off already).
async fn aborted_views(shared: &Shared, names: Vec<String>) -> Vec<ExperimentView> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let views: Vec<ExperimentView> = {
            let d = lock(shared);
            names.iter().filter_map(|n| d.chaos.view(n)).collect()
        };
        let recorded = views
            .iter()
            .all(|v| v.abort.is_some() || !v.stage.running());
        if recorded || tokio::time::Instant::now() >= deadline {
            return views;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn uninstall(State(api): State<Api>) -> Answer<Uninstalling> {
    lock(&api.shared).uninstall_requested = true;
    let _ = api.stop.send(true);
    Ok(Json(Uninstalling { uninstalling: true }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The `api` fuzz target's check that a PUT sets the policy its path
    /// names: a body could add a policy of another name and set it instead.
    #[test]
    fn a_put_body_sets_only_the_policy_it_names() {
        let config = Config::embedded();
        let spec = put_policy(&config, "db", "match = [\"10.0.0.5:5432\"]\nopen = \"10s\"")
            .expect("the keys of one policy");
        assert_eq!(
            (spec.name.as_str(), spec.open),
            ("db", Duration::from_secs(10))
        );
        let smuggled = "match = [\"10.0.0.5:5432\"]\n[[policy]]\nname = \"other\"\nmatch = [\"10.0.0.6:5432\"]";
        let refused = put_policy(&config, "db", smuggled).expect_err("two policies");
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.message.starts_with("body:"), "{}", refused.message);
    }

    /// `enforcer policy set api max_connections=auto adaptive.max=500 …`
    /// sends dotted keys: the policy's adaptive table.
    #[test]
    fn a_put_body_sets_an_auto_policy_with_dotted_keys() {
        let config = Config::embedded();
        let spec = put_policy(
            &config,
            "api",
            "match = [\"10.0.1.0/24:8080\"]\nmax_connections = \"auto\"\nadaptive.algorithm = \"vegas\"\nadaptive.max = 500",
        )
        .unwrap();
        let a = spec.adaptive.expect("auto");
        assert_eq!(spec.max_connections, None);
        assert_eq!(
            (a.settings.algorithm, a.settings.max, a.settings.min),
            (crate::adaptive::Algorithm::Vegas, 500, 20)
        );
        let refused = put_policy(
            &config,
            "api",
            "match = [\"10.0.1.0/24:8080\"]\nadaptive.max = 500",
        )
        .expect_err("not auto");
        assert!(
            refused
                .message
                .contains("line 4: policy \"api\": adaptive: needs max_connections = \"auto\""),
            "{}",
            refused.message
        );
    }

    /// `enforcer policy set db outlier.failure_percentage=85 …` sends dotted
    /// keys: the policy's outlier table, which turns detection on.
    #[test]
    fn a_put_body_turns_outlier_detection_on_with_dotted_keys() {
        let config = Config::embedded();
        let spec = put_policy(
            &config,
            "db",
            "match = [\"10.0.0.0/24:5432\"]\noutlier.failure_percentage = 85\noutlier.base_ejection = \"10s\"",
        )
        .unwrap();
        let o = spec.outlier.expect("on");
        assert_eq!(
            (o.failure_percentage, o.base_ejection, o.latency_factor),
            (Some(85), Duration::from_secs(10), None)
        );
        assert_eq!(
            (o.interval, o.max_ejection),
            (Duration::from_secs(10), Duration::from_secs(300))
        );
        // `outlier={}`: on, with every default.
        let spec = put_policy(
            &config,
            "db",
            "match = [\"10.0.0.0/24:5432\"]\noutlier = {}",
        )
        .unwrap();
        assert_eq!(spec.outlier, Some(crate::outlier::Settings::default()));
        let spec = put_policy(&config, "db", "match = [\"10.0.0.0/24:5432\"]").unwrap();
        assert_eq!(spec.outlier, None);
        let refused = put_policy(
            &config,
            "db",
            "match = [\"10.0.0.0/24:5432\"]\noutlier.failure_percentage = 0",
        )
        .expect_err("out of bounds");
        assert!(
            refused.message.contains(
                "line 4: policy \"db\": outlier.failure_percentage: must be 1..=100, got 0"
            ),
            "{}",
            refused.message
        );
    }
}
