//! The control API: JSON over HTTP on a root-only Unix socket (0600), usable
//! with `curl --unix-socket`. Every change is validated whole before anything is
//! written; a rejected request changes nothing and answers 400 naming the field.
//!
//! | request                                   | effect                                |
//! |-------------------------------------------|---------------------------------------|
//! | `GET /v1/status[?dest=D][&netns=N][&policy=P]` | destinations and the global switch |
//! | `GET /v1/policies`, `GET /v1/policies/P`  | the running policies                  |
//! | `PUT /v1/policies/P` (TOML keys)          | add or replace policy P               |
//! | `DELETE /v1/policies/P`                   | remove policy P                       |
//! | `POST /v1/policies` (`[[policy]]` TOML)   | replace the whole policy set          |
//! | `POST /v1/trip?dest=D[&for=T]`            | force D open (until reset or T)       |
//! | `POST /v1/disable?dest=D[&for=T]`         | let D pass untouched                  |
//! | `POST /v1/reset?dest=D[&netns=N]`         | D back to CLOSED, override removed    |
//! | `POST /v1/pause`, `POST /v1/resume`       | the global switch                     |
//! | `POST /v1/reload`                         | re-read the configuration file        |
//! | `GET /v1/events`                          | transitions, one JSON line each, live |
//! | `GET /v1/metrics`                         | the Prometheus text                   |
//! | `POST /v1/uninstall`                      | detach, unpin, and stop the daemon    |
//!
//! A destination `D` is an address and port; `netns=N` (a namespace's inode or
//! its name under /run/netns) narrows it to one network namespace, and without
//! it a request acts on the address in every namespace. Overrides (`trip`,
//! `disable`) always apply in every namespace.

use std::{
    fs, io,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
};

use enforcer_common::{
    control::kind as command,
    dest::DestKey,
    overrides::{Override, kind},
};
use serde_json::json;
use tokio::{io::AsyncWriteExt, net::UnixListener, sync::watch};

use super::{
    Daemon, Shared, lock,
    notices::{daemon_event, dest_event},
    view,
};
use crate::{
    bpf::Applied,
    clock::monotonic_ns,
    config::{self, Config, PolicySpec},
    http::{self, Request, Response},
    netns::Selector,
};

/// Binds the control socket: parent directory 0700, socket 0600. A stale socket
/// file (nobody listening) is replaced; a live one means another daemon.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another daemon answers on it",
            ));
        }
        fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, shared: Shared, stop: watch::Sender<bool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let request = match http::read_request(read).await {
                Ok(r) => r,
                Err(e) => {
                    let _ = http::write_response(&mut write, &Response::error(400, e)).await;
                    return;
                }
            };
            if request.method == "GET" && request.path == "/v1/events" {
                follow_events(&shared, &mut write).await;
                return;
            }
            let response = route(&request, &shared, &stop);
            let _ = http::write_response(&mut write, &response).await;
        });
    }
}

/// Streams events until the client goes away.
async fn follow_events<W: tokio::io::AsyncWrite + Unpin>(shared: &Shared, write: &mut W) {
    let mut rx = lock(shared).events.subscribe();
    if http::write_stream_head(write, "application/x-ndjson")
        .await
        .is_err()
    {
        return;
    }
    loop {
        match rx.recv().await {
            Ok(line) => {
                if write
                    .write_all(format!("{line}\n").as_bytes())
                    .await
                    .is_err()
                    || write.flush().await.is_err()
                {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let note = json!({ "kind": "lagged", "missed": n }).to_string();
                let _ = write.write_all(format!("{note}\n").as_bytes()).await;
            }
            Err(_) => return,
        }
    }
}

/// A request error: status and message.
type Reject = (u16, String);

fn bad(message: impl Into<String>) -> Reject {
    (400, message.into())
}

fn route(req: &Request, shared: &Shared, stop: &watch::Sender<bool>) -> Response {
    let path: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let result = match (req.method.as_str(), path.as_slice()) {
        ("GET", ["v1", "status"]) => status(req, shared),
        ("GET", ["v1", "policies"]) => to_json(view::policies(&lock(shared))),
        ("GET", ["v1", "policies", name]) => policy(shared, name),
        ("PUT", ["v1", "policies", name]) => set_policy(shared, name, &req.body),
        ("DELETE", ["v1", "policies", name]) => remove_policy(shared, name),
        ("POST", ["v1", "policies"]) => apply_policies(shared, &req.body),
        ("POST", ["v1", "trip"]) => set_override(req, shared, kind::FORCED_OPEN),
        ("POST", ["v1", "disable"]) => set_override(req, shared, kind::DISABLED),
        ("POST", ["v1", "reset"]) => reset(req, shared),
        ("POST", ["v1", "pause"]) => pause(shared, true),
        ("POST", ["v1", "resume"]) => pause(shared, false),
        ("POST", ["v1", "reload"]) => reload(shared)
            .map(|n| json!({ "policies": n }))
            .map_err(bad),
        ("GET", ["v1", "metrics"]) => {
            return Response::text(
                200,
                super::metrics::CONTENT_TYPE,
                super::metrics::render(&lock(shared)),
            );
        }
        ("POST", ["v1", "uninstall"]) => {
            lock(shared).uninstall_requested = true;
            let _ = stop.send(true);
            Ok(json!({ "uninstalling": true }))
        }
        (_, ["v1", ..]) => Err((
            404,
            format!("no such endpoint: {} {}", req.method, req.path),
        )),
        _ => Err((404, format!("no such endpoint: {}", req.path))),
    };
    match result {
        Ok(value) => Response::json(200, &value),
        Err((status, message)) => Response::error(status, message),
    }
}

fn to_json(
    r: Result<serde_json::Value, crate::bpf::BpfError>,
) -> Result<serde_json::Value, Reject> {
    r.map_err(|e| (500, format!("{e:#}")))
}

/// `dest` of the query, as a destination.
fn dest_param(req: &Request) -> Result<SocketAddr, Reject> {
    let text = req.param("dest").ok_or_else(|| bad("dest: missing"))?;
    parse_dest(text).map_err(bad)
}

/// `10.0.0.5:5432` or `[fd00::1]:443`.
pub fn parse_dest(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|_| {
        format!("dest: `{text}` is not an address like 10.0.0.5:5432 or [fd00::1]:443")
    })?;
    if addr.port() == 0 {
        return Err(format!("dest: `{text}`: port must be 1..=65535"));
    }
    Ok(addr)
}

/// `for` of the query: a duration (1s..=7 days), or none.
fn for_param(req: &Request) -> Result<Option<std::time::Duration>, Reject> {
    let Some(text) = req.param("for") else {
        return Ok(None);
    };
    let d = config::parse_duration(text).map_err(|e| bad(format!("for: {e}")))?;
    if d < std::time::Duration::from_secs(1) || d > std::time::Duration::from_secs(7 * 86_400) {
        return Err(bad(format!("for: `{text}` must be 1s..=7d")));
    }
    Ok(Some(d))
}

/// `netns` of the query: the cookies of the namespace it names (several only
/// if an inode was reused after its namespace was gone), or none.
fn netns_param(req: &Request, shared: &Shared) -> Result<Option<Vec<u64>>, Reject> {
    let Some(text) = req.param("netns") else {
        return Ok(None);
    };
    let selector: Selector = text
        .parse()
        .map_err(|e: crate::netns::BadSelector| bad(e.to_string()))?;
    // Not under the daemon's lock: finding a namespace created since the last
    // discovery walks /proc.
    let registry = lock(shared).namespaces.clone();
    let cookies = registry
        .find_now(&selector)
        .map_err(|e| (500, format!("netns: discovering namespaces: {e}")))?;
    if cookies.is_empty() {
        let what = match selector {
            Selector::Inode(i) => format!("with inode {i}"),
            Selector::Name(n) => format!("named `{n}` in {}", crate::netns::NAMED_DIR),
        };
        return Err((
            404,
            format!("netns: no network namespace {what} (that this daemon can enter)"),
        ));
    }
    Ok(Some(cookies))
}

fn status(req: &Request, shared: &Shared) -> Result<serde_json::Value, Reject> {
    let dest = req.param("dest").map(parse_dest).transpose().map_err(bad)?;
    let netns = netns_param(req, shared)?;
    let d = lock(shared);
    let policy = req.param("policy").map(str::to_owned);
    if let Some(p) = &policy
        && !d.policies.iter().any(|s| &s.name == p)
    {
        return Err((404, format!("policy: no policy named `{p}`")));
    }
    let filter = view::Filter {
        dest,
        netns,
        policy,
    };
    to_json(view::status(&d, &filter))
}

fn policy(shared: &Shared, name: &str) -> Result<serde_json::Value, Reject> {
    let d = lock(shared);
    let (i, p) = d
        .policies
        .iter()
        .enumerate()
        .find(|(_, p)| p.name == name)
        .ok_or_else(|| (404, format!("policy: no policy named `{name}`")))?;
    to_json(view::policy(&d, i, p))
}

/// Validates `specs` as the new whole set and applies it.
fn replace_policies(d: &mut Daemon, specs: Vec<PolicySpec>) -> Result<serde_json::Value, Reject> {
    config::check_set(&specs).map_err(|e| bad(e.to_string()))?;
    let n = specs.len();
    d.change_policies(specs).map_err(|e| match e {
        // A scope naming no cgroup is the request's fault; apply checks it
        // before writing anything.
        super::apply::ApplyError::Cgroup { .. } => bad(e.to_string()),
        e => (500, format!("{e:#}")),
    })?;
    Ok(json!({ "policies": n }))
}

fn set_policy(shared: &Shared, name: &str, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let body = std::str::from_utf8(body).map_err(|_| bad("body: not UTF-8"))?;
    let text = format!(
        "[[policy]]\nname = {}\n{body}\n",
        toml::Value::String(name.to_owned())
    );
    let mut d = lock(shared);
    let mut parsed = d
        .config
        .parse_policies(&text, "request")
        .map_err(|e| bad(e.to_string()))?;
    let spec = parsed.pop().ok_or_else(|| bad("body: no policy"))?;
    let mut specs = d.policies.clone();
    match specs.iter_mut().find(|p| p.name == name) {
        Some(existing) => *existing = spec,
        None => specs.push(spec),
    }
    replace_policies(&mut d, specs)
}

fn remove_policy(shared: &Shared, name: &str) -> Result<serde_json::Value, Reject> {
    let mut d = lock(shared);
    let mut specs = d.policies.clone();
    let before = specs.len();
    specs.retain(|p| p.name != name);
    if specs.len() == before {
        return Err((404, format!("policy: no policy named `{name}`")));
    }
    replace_policies(&mut d, specs)
}

fn apply_policies(shared: &Shared, body: &[u8]) -> Result<serde_json::Value, Reject> {
    let body = std::str::from_utf8(body).map_err(|_| bad("body: not UTF-8"))?;
    let mut d = lock(shared);
    let specs = d
        .config
        .parse_policies(body, "policy file")
        .map_err(|e| bad(e.to_string()))?;
    replace_policies(&mut d, specs)
}

fn set_override(req: &Request, shared: &Shared, kind: u32) -> Result<serde_json::Value, Reject> {
    let dest = dest_param(req)?;
    let until_ns = for_param(req)?.map_or(0, |d| monotonic_ns() + d.as_nanos() as u64);
    let mut d = lock(shared);
    d.enforcer
        .set_override(
            dest,
            Override {
                kind,
                _pad: 0,
                until_ns,
            },
        )
        .map_err(|e| (500, format!("{e:#}")))?;
    let what = if kind == kind::FORCED_OPEN {
        "forced_open"
    } else {
        "disabled"
    };
    let detail = req
        .param("for")
        .map_or("until reset".to_owned(), |f| format!("for {f}"));
    d.publish(daemon_event(what, Some(&dest.to_string()), &detail));
    Ok(json!({ "dest": dest.to_string(), "override": what }))
}

/// Resets `dest` in the namespace the query names (its override, which
/// applies in every namespace, stays), or in every namespace (the override
/// goes too).
fn reset(req: &Request, shared: &Shared) -> Result<serde_json::Value, Reject> {
    let dest = dest_param(req)?;
    let netns = netns_param(req, shared)?;
    let mut d = lock(shared);
    let failed = |e: crate::bpf::BpfError| (500, format!("{e:#}"));
    let address = DestKey::from(dest);
    let keys: Vec<DestKey> = match &netns {
        Some(cookies) => cookies.iter().map(|c| address.in_netns(*c)).collect(),
        None => d
            .enforcer
            .dests()
            .map_err(failed)?
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k.in_netns(0) == address)
            .collect(),
    };
    let mut reset = Vec::new();
    for key in keys {
        if d.enforcer.command(command::RESET, &key).map_err(failed)? != Applied::NotFound {
            reset.push(key);
        }
    }
    let (override_removed, override_kept) = if netns.is_none() {
        (d.enforcer.remove_override(dest).map_err(failed)?, None)
    } else {
        let kept = d
            .enforcer
            .overrides()
            .map_err(failed)?
            .into_iter()
            .find(|(k, o)| *k == address && o.active(monotonic_ns()))
            .map(|(_, o)| view::override_name(&o));
        (false, kept)
    };
    if reset.is_empty() && !override_removed {
        let place = match req.param("netns") {
            Some(n) => format!("in netns {n}"),
            None => "in any namespace".to_owned(),
        };
        let override_note = if netns.is_none() {
            " and has no override"
        } else {
            ""
        };
        return Err((
            404,
            format!("dest: {dest} is not tracked {place}{override_note}"),
        ));
    }
    let mut namespaces = Vec::new();
    for key in &reset {
        let label = d.namespaces.label(key.netns);
        if netns.is_some() {
            d.publish(dest_event("reset", key, &label, ""));
        }
        namespaces.push(label.inode);
    }
    if netns.is_none() {
        d.publish(daemon_event("reset", Some(&dest.to_string()), ""));
    }
    Ok(json!({
        "dest": dest.to_string(),
        "reset": true,
        // The destinations reset: how many, and their namespaces' inodes.
        "destinations": reset.len(),
        "netns": namespaces,
        "override_removed": override_removed,
        "override_kept": override_kept,
    }))
}

fn pause(shared: &Shared, paused: bool) -> Result<serde_json::Value, Reject> {
    let mut d = lock(shared);
    d.enforcer
        .set_paused(paused)
        .map_err(|e| (500, format!("{e:#}")))?;
    d.publish(daemon_event(
        if paused { "paused" } else { "resumed" },
        None,
        "",
    ));
    Ok(json!({ "paused": paused }))
}

/// Re-reads the configuration file and applies its policies, or changes nothing.
pub fn reload(shared: &Shared) -> Result<usize, String> {
    let mut d = lock(shared);
    let config = Config::load(&d.config_path, &d.overrides).map_err(|e| format!("{e:#}"))?;
    if config.daemon != d.config.daemon {
        // Addresses, pins and the cgroup are bound at start; say so rather than
        // half-apply.
        return Err(
            "[daemon] settings changed: they take effect at the next start; nothing applied".into(),
        );
    }
    let n = config.policies.len();
    d.set_policies(config.policies.clone())
        .map_err(|e| format!("{e:#}"))?;
    // The file is authoritative again: runtime changes are dropped.
    super::saved::discard(&d.config.daemon.state_dir);
    d.config_fingerprint =
        super::saved::fingerprint(&std::fs::read_to_string(&d.config_path).unwrap_or_default());
    d.config = config;
    Ok(n)
}
