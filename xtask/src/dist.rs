//! What `enforcer/dist` ships for operators, checked:
//! - every kustomize overlay (and the base) under `kubernetes/` rendered with
//!   `kubectl kustomize`, and what it renders validated with
//!   `kubernetes-validate --strict` against the Kubernetes version the README
//!   names (the validator comes from PyPI with the schemas of every version
//!   it knows, into a virtual environment under `target/tools`, made once);
//! - the alerting rules under `prometheus/`: `promtool check rules` and their
//!   unit tests, `promtool test rules`. `promtool` is taken out of Debian's
//!   `prometheus` package into `target/tools`, not installed: installing it
//!   would start a Prometheus server on the host.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{bench::target_dir, cmd, toolchain};

/// The Kubernetes version the manifests are validated against (the README's
/// "Kubernetes" section names it).
pub const KUBERNETES: &str = "1.33.0";

/// The validator's release (its schemas go up to Kubernetes 1.37).
const VALIDATOR: &str = "kubernetes-validate==1.37.0";

/// The Kubernetes manifests, then the alerting rules.
pub fn check() -> anyhow::Result<()> {
    kubernetes()?;
    alerting_rules()
}

/// Renders and validates every kustomization under the manifests' directory.
fn kubernetes() -> anyhow::Result<()> {
    toolchain::ensure_debian_packages(&["kubectl".to_owned()])?;
    let validate = validator()?;
    let root = cmd::workspace_root().join("enforcer/dist/kubernetes");
    let rendered_dir = target_dir().join("dist/kubernetes");
    fs::create_dir_all(&rendered_dir)?;
    let kustomizations = kustomizations(&root)?;
    if kustomizations.is_empty() {
        bail!("no kustomization under {}", root.display());
    }
    for dir in kustomizations {
        let name = dir
            .strip_prefix(&root)
            .unwrap_or(&dir)
            .to_string_lossy()
            .replace('/', "-");
        let out = cmd::capture(Command::new("kubectl").arg("kustomize").arg(&dir))
            .context("running kubectl")?;
        if !out.status.success() {
            bail!(
                "`kubectl kustomize {}` failed: {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let rendered = rendered_dir.join(format!("{name}.yaml"));
        fs::write(&rendered, &out.stdout)?;
        cmd::run(
            Command::new(&validate)
                .args(["--strict", "--quiet", "--kubernetes-version", KUBERNETES])
                .arg(&rendered),
        )?;
    }
    Ok(())
}

/// Every directory holding a `kustomization.yaml`, in a stable order.
fn kustomizations(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|n| n == "kustomization.yaml") {
                found.push(dir.clone());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The validator's command, installed into its own virtual environment if
/// it is not there yet.
fn validator() -> anyhow::Result<PathBuf> {
    let venv = target_dir().join("tools/kubernetes-validate");
    let bin = venv.join("bin/kubernetes-validate");
    let marker = venv.join(".installed");
    if fs::read_to_string(&marker).is_ok_and(|v| v == VALIDATOR) && bin.exists() {
        return Ok(bin);
    }
    eprintln!("xtask: installing {VALIDATOR} into {}", venv.display());
    cmd::run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    cmd::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(VALIDATOR),
    )?;
    fs::write(&marker, VALIDATOR)?;
    Ok(bin)
}

/// `promtool check rules` and `promtool test rules` on the rules file.
fn alerting_rules() -> anyhow::Result<()> {
    let promtool = promtool()?;
    let dir = cmd::workspace_root().join("enforcer/dist/prometheus");
    cmd::run(Command::new(&promtool).current_dir(&dir).args([
        "check",
        "rules",
        "enforcer-rules.yaml",
    ]))?;
    cmd::run(Command::new(&promtool).current_dir(&dir).args([
        "test",
        "rules",
        "enforcer-rules.test.yaml",
    ]))
}

/// `promtool`, unpacked from Debian's `prometheus` package if it is not yet.
fn promtool() -> anyhow::Result<PathBuf> {
    let tools = target_dir().join("tools/prometheus");
    let bin = tools.join("usr/bin/promtool");
    if bin.exists() {
        return Ok(bin);
    }
    let download = target_dir().join("tools/download");
    fs::create_dir_all(&download)?;
    let fetch = || {
        cmd::capture(Command::new("apt-get").current_dir(&download).args([
            "download",
            "-q",
            "prometheus",
        ]))
        .is_some_and(|o| o.status.success())
    };
    if !fetch() {
        cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
        if !fetch() {
            bail!("`apt-get download prometheus` failed (promtool comes from that package)");
        }
    }
    let deb = fs::read_dir(&download)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("prometheus_"))
        })
        .context("the downloaded prometheus package")?;
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tools))?;
    fs::remove_file(&deb)?;
    Ok(bin)
}
