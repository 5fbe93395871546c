//! The control API: JSON over HTTP on a root-only Unix socket (0600, bound by
//! [`super::control_socket`]), usable with `curl --unix-socket`. Every change is validated whole before anything is
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

use std::{net::SocketAddr, time::Duration};

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
pub type Reject = (u16, String);

fn bad(message: impl Into<String>) -> Reject {
    (400, message.into())
}

/// A request as the router reads it: the endpoint, and its query parameters
/// parsed and checked. Reading it needs no state (no lock, no kernel), so a
/// malformed request is refused before anything is looked up. Bodies stay
/// text: policies are parsed against the running configuration's defaults.
#[derive(Clone, Debug, PartialEq)]
pub enum Call<'a> {
    Status {
        dest: Option<SocketAddr>,
        netns: Option<Selector>,
        policy: Option<&'a str>,
    },
    Policies,
    Policy(&'a str),
    SetPolicy {
        name: &'a str,
        body: &'a str,
    },
    RemovePolicy(&'a str),
    ApplyPolicies(&'a str),
    /// `trip` ([`kind::FORCED_OPEN`]) or `disable` ([`kind::DISABLED`]), for
    /// a while (`for`: as parsed, and as written) or until reset.
    Override {
        dest: SocketAddr,
        kind: u32,
        lasting: Option<(Duration, &'a str)>,
    },
    Reset {
        dest: SocketAddr,
        netns: Option<Selector>,
    },
    Pause(bool),
    Reload,
    Metrics,
    Uninstall,
}

/// Reads `req` into the call it makes, or the answer refusing it: 404 for no
/// such endpoint, 400 for a malformed parameter or body.
pub fn parse_call(req: &Request) -> Result<Call<'_>, Reject> {
    let path: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let body = || std::str::from_utf8(&req.body).map_err(|_| bad("body: not UTF-8"));
    Ok(match (req.method.as_str(), path.as_slice()) {
        ("GET", ["v1", "status"]) => Call::Status {
            dest: req.param("dest").map(parse_dest).transpose().map_err(bad)?,
            netns: netns_param(req)?,
            policy: req.param("policy"),
        },
        ("GET", ["v1", "policies"]) => Call::Policies,
        ("GET", ["v1", "policies", name]) => Call::Policy(name),
        ("PUT", ["v1", "policies", name]) => Call::SetPolicy {
            name,
            body: body()?,
        },
        ("DELETE", ["v1", "policies", name]) => Call::RemovePolicy(name),
        ("POST", ["v1", "policies"]) => Call::ApplyPolicies(body()?),
        ("POST", ["v1", "trip"]) => Call::Override {
            dest: dest_param(req)?,
            kind: kind::FORCED_OPEN,
            lasting: for_param(req)?,
        },
        ("POST", ["v1", "disable"]) => Call::Override {
            dest: dest_param(req)?,
            kind: kind::DISABLED,
            lasting: for_param(req)?,
        },
        ("POST", ["v1", "reset"]) => Call::Reset {
            dest: dest_param(req)?,
            netns: netns_param(req)?,
        },
        ("POST", ["v1", "pause"]) => Call::Pause(true),
        ("POST", ["v1", "resume"]) => Call::Pause(false),
        ("POST", ["v1", "reload"]) => Call::Reload,
        ("GET", ["v1", "metrics"]) => Call::Metrics,
        ("POST", ["v1", "uninstall"]) => Call::Uninstall,
        (_, ["v1", ..]) => {
            return Err((
                404,
                format!("no such endpoint: {} {}", req.method, req.path),
            ));
        }
        _ => return Err((404, format!("no such endpoint: {}", req.path))),
    })
}

fn route(req: &Request, shared: &Shared, stop: &watch::Sender<bool>) -> Response {
    let call = match parse_call(req) {
        Ok(call) => call,
        Err((status, message)) => return Response::error(status, message),
    };
    let result = match call {
        Call::Status {
            dest,
            netns,
            policy,
        } => status(dest, netns.as_ref(), policy, shared),
        Call::Policies => to_json(view::policies(&lock(shared))),
        Call::Policy(name) => policy(shared, name),
        Call::SetPolicy { name, body } => set_policy(shared, name, body),
        Call::RemovePolicy(name) => remove_policy(shared, name),
        Call::ApplyPolicies(body) => apply_policies(shared, body),
        Call::Override {
            dest,
            kind,
            lasting,
        } => set_override(dest, kind, lasting, shared),
        Call::Reset { dest, netns } => reset(dest, netns.as_ref(), shared),
        Call::Pause(paused) => pause(shared, paused),
        Call::Reload => reload(shared)
            .map(|n| json!({ "policies": n }))
            .map_err(bad),
        Call::Metrics => {
            return Response::text(
                200,
                super::metrics::CONTENT_TYPE,
                super::metrics::render(&lock(shared)),
            );
        }
        Call::Uninstall => {
            lock(shared).uninstall_requested = true;
            let _ = stop.send(true);
            Ok(json!({ "uninstalling": true }))
        }
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

/// `for` of the query: a duration (1s..=7 days) and its text, or none.
fn for_param(req: &Request) -> Result<Option<(Duration, &str)>, Reject> {
    let Some(text) = req.param("for") else {
        return Ok(None);
    };
    let d = config::parse_duration(text).map_err(|e| bad(format!("for: {e}")))?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(7 * 86_400) {
        return Err(bad(format!("for: `{text}` must be 1s..=7d")));
    }
    Ok(Some((d, text)))
}

/// `netns` of the query: the namespace it names, or none.
fn netns_param(req: &Request) -> Result<Option<Selector>, Reject> {
    req.param("netns")
        .map(|text| {
            text.parse()
                .map_err(|e: crate::netns::BadSelector| bad(e.to_string()))
        })
        .transpose()
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
    let cookies = registry
        .find_now(selector)
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

fn status(
    dest: Option<SocketAddr>,
    netns: Option<&Selector>,
    policy: Option<&str>,
    shared: &Shared,
) -> Result<serde_json::Value, Reject> {
    let netns = netns_cookies(netns, shared)?;
    let d = lock(shared);
    if let Some(p) = policy
        && !d.policies.iter().any(|s| s.name == p)
    {
        return Err((404, format!("policy: no policy named `{p}`")));
    }
    let filter = view::Filter {
        dest,
        netns,
        policy: policy.map(str::to_owned),
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
    d.config.check_set(&specs).map_err(|e| bad(e.to_string()))?;
    let n = specs.len();
    d.change_policies(specs).map_err(|e| match e {
        // A scope naming no cgroup, or more rules than the kernel's maps
        // hold, is the request's fault; apply checks both before writing
        // anything.
        super::apply::ApplyError::Cgroup { .. }
        | super::apply::ApplyError::Bpf(crate::bpf::BpfError::RulesCapacity { .. }) => {
            bad(e.to_string())
        }
        e => (500, format!("{e:#}")),
    })?;
    Ok(json!({ "policies": n }))
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
        .map_err(|e| bad(e.to_string()))?;
    // A `[[policy]]` header in the body would start another policy, which
    // would then be set in NAME's place under its own name.
    match (parsed.pop(), parsed.is_empty()) {
        (Some(spec), true) => Ok(spec),
        _ => Err(bad("body: the keys of one policy, without table headers")),
    }
}

fn set_policy(shared: &Shared, name: &str, body: &str) -> Result<serde_json::Value, Reject> {
    let mut d = lock(shared);
    let spec = put_policy(&d.config, name, body)?;
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

fn apply_policies(shared: &Shared, body: &str) -> Result<serde_json::Value, Reject> {
    let mut d = lock(shared);
    let specs = d
        .config
        .parse_policies(body, "policy file")
        .map_err(|e| bad(e.to_string()))?;
    replace_policies(&mut d, specs)
}

fn set_override(
    dest: SocketAddr,
    kind: u32,
    lasting: Option<(Duration, &str)>,
    shared: &Shared,
) -> Result<serde_json::Value, Reject> {
    let until_ns = lasting.map_or(0, |(d, _)| monotonic_ns() + d.as_nanos() as u64);
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
    let detail = lasting.map_or("until reset".to_owned(), |(_, f)| format!("for {f}"));
    d.publish(daemon_event(what, Some(&dest.to_string()), &detail));
    Ok(json!({ "dest": dest.to_string(), "override": what }))
}

/// Resets `dest` in the namespace the query names (its override, which
/// applies in every namespace, stays), or in every namespace (the override
/// goes too).
fn reset(
    dest: SocketAddr,
    selector: Option<&Selector>,
    shared: &Shared,
) -> Result<serde_json::Value, Reject> {
    let netns = netns_cookies(selector, shared)?;
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
        let place = match selector {
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

#[cfg(test)]
mod tests {
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
        let (status, message) = put_policy(&config, "db", smuggled).expect_err("two policies");
        assert_eq!(status, 400);
        assert!(message.starts_with("body:"), "{message}");
    }

    #[test]
    fn calls_are_parsed_from_path_query_and_body() {
        let request = |method: &str, path: &str, query: &[(&str, &str)], body: &str| Request {
            method: method.into(),
            path: path.into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            body: body.into(),
        };
        let trip = request(
            "POST",
            "/v1/trip",
            &[("dest", "10.0.0.5:5432"), ("for", "30s")],
            "",
        );
        assert_eq!(
            parse_call(&trip),
            Ok(Call::Override {
                dest: "10.0.0.5:5432".parse().unwrap(),
                kind: kind::FORCED_OPEN,
                lasting: Some((Duration::from_secs(30), "30s")),
            })
        );
        let put = request("PUT", "/v1/policies/db/", &[], "open = \"1s\"");
        assert_eq!(
            parse_call(&put),
            Ok(Call::SetPolicy {
                name: "db",
                body: "open = \"1s\""
            })
        );
        for (req, status) in [
            (
                request("POST", "/v1/trip", &[("dest", "10.0.0.5:0")], ""),
                400,
            ),
            (request("POST", "/v1/reset", &[], ""), 400),
            (
                request(
                    "POST",
                    "/v1/trip",
                    &[("dest", "10.0.0.5:1"), ("for", "8d")],
                    "",
                ),
                400,
            ),
            (request("GET", "/v1/status", &[("netns", "..")], ""), 400),
            (request("POST", "/v1/policies", &[], "\u{fffd}"), 200),
            (request("GET", "/v1/trip", &[], ""), 404),
            (request("GET", "/v2/status", &[], ""), 404),
        ] {
            assert_eq!(
                parse_call(&req).err().map_or(200, |(s, _)| s),
                status,
                "{req:?}"
            );
        }
        let not_utf8 = Request {
            body: vec![0xff],
            ..request("POST", "/v1/policies", &[], "")
        };
        assert_eq!(parse_call(&not_utf8).map_err(|(s, _)| s), Err(400));
    }
}
