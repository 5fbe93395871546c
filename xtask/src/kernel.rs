//! `cargo xtask test --kernel 6.1`: the privileged tests, built on this host,
//! run inside another kernel: Debian's own package of that LTS series, booted
//! under qemu by virtme-ng on this machine's filesystem.
//!
//! Nested KVM does not work on these machines, so qemu emulates (`tcg`): about
//! ten times slower than the host, which the runner's deadlines allow for.
//! virtme-ng's exit status does not carry the command's, so the guest writes
//! its results into a shared directory ([`crate::guest`]) and this reads them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{cmd, guest, toolchain};

/// Debian packages the guest needs: qemu; depmod and busybox, with which
/// virtme-ng builds the guest's initramfs; python's venv, for virtme-ng.
const PACKAGES: [&str; 4] = ["qemu-system-x86", "kmod", "busybox-static", "python3-venv"];

/// virtme-ng from PyPI, the version these runs were checked with.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// The kernel series `--kernel` accepts, and Debian's package name pattern.
const SERIES: [(&str, &str); 1] = [("6.1", "linux-image-6.1.0-")];

/// A kernel unpacked from its Debian package.
pub struct Kernel {
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// Installs what running a guest needs, and the newest Debian kernel package
/// of `series`, unpacked under `target/kernels/`.
pub fn ensure(series: &str) -> anyhow::Result<Kernel> {
    let Some((_, prefix)) = SERIES.iter().find(|(s, _)| *s == series) else {
        let known: Vec<&str> = SERIES.iter().map(|(s, _)| *s).collect();
        bail!(
            "--kernel {series}: no Debian kernel package is known for it (known: {})",
            known.join(", ")
        );
    };
    toolchain::ensure_debian_packages(&PACKAGES.map(String::from))?;
    ensure_virtme_ng()?;
    let package = match newest_package(prefix) {
        Some(p) => p,
        None => {
            cmd::run(Command::new("apt-get").args(["update", "-q"]))?;
            newest_package(prefix)
                .with_context(|| format!("no Debian package {prefix}N-amd64 in apt's lists"))?
        }
    };
    let dir = kernels_dir().join(&package);
    if vmlinuz_in(&dir).is_none() {
        unpack(&package, &dir)?;
    }
    let vmlinuz = vmlinuz_in(&dir).with_context(|| format!("no vmlinuz in {}", dir.display()))?;
    Ok(Kernel { package, vmlinuz })
}

fn kernels_dir() -> PathBuf {
    crate::bench::target_dir().join("kernels")
}

/// virtme-ng lives in a virtualenv of its own under `target/kernels/`:
/// Debian's python refuses packages installed beside its own, and a
/// non-login shell may not have pip's scripts on PATH.
fn venv() -> PathBuf {
    kernels_dir().join("venv")
}

fn ensure_virtme_ng() -> anyhow::Result<()> {
    if venv().join("bin/vng").is_file() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {VIRTME_NG} from PyPI into {}",
        venv().display()
    );
    cmd::run(Command::new("python3").args(["-m", "venv"]).arg(venv()))?;
    cmd::run(Command::new(venv().join("bin/pip")).args(["install", "-q", VIRTME_NG]))
}

/// `vng`, with its virtualenv first on PATH (it runs `virtme-run` from there).
fn vng() -> Command {
    let bin = venv().join("bin");
    let mut path = vec![bin.clone()];
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    let mut vng = Command::new(bin.join("vng"));
    vng.env(
        "PATH",
        std::env::join_paths(path).expect("PATH entries contain no separator"),
    );
    vng
}

/// The newest `<prefix>N-amd64` package apt knows (the generic flavour: not
/// cloud, rt, dbg or unsigned).
fn newest_package(prefix: &str) -> Option<String> {
    let pattern = format!("^{}[0-9]+-amd64$", prefix.replace('.', "\\."));
    let out = cmd::capture(Command::new("apt-cache").args(["search", "--names-only", &pattern]))?;
    newest_of(&String::from_utf8_lossy(&out.stdout), prefix)
}

/// From `apt-cache search` lines, the package with the highest ABI number.
fn newest_of(search: &str, prefix: &str) -> Option<String> {
    search
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|name| {
            let abi = name.strip_prefix(prefix)?.strip_suffix("-amd64")?;
            Some((abi.parse::<u32>().ok()?, name.to_owned()))
        })
        .max()
        .map(|(_, name)| name)
}

fn vmlinuz_in(dir: &Path) -> Option<PathBuf> {
    fs::read_dir(dir.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
}

/// Downloads the package and unpacks it (kernel and modules) into `dir`,
/// without installing it: the host's own boot is left alone.
fn unpack(package: &str, dir: &Path) -> anyhow::Result<()> {
    let downloads = kernels_dir().join("downloads");
    fs::create_dir_all(&downloads).context("creating target/kernels")?;
    eprintln!("xtask: downloading {package} (Debian's kernel package, about 70 MB)");
    cmd::run(
        Command::new("apt-get")
            .current_dir(&downloads)
            .args(["download", "-q", package]),
    )?;
    let deb = fs::read_dir(&downloads)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    let partial = dir.with_extension("partial");
    let _ = fs::remove_dir_all(&partial);
    cmd::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&partial))?;
    fs::rename(&partial, dir).context("moving the unpacked kernel into place")?;
    fs::remove_file(&deb).context("removing the downloaded package")
}

/// Boots `kernel` and runs `tests` in it, one binary at a time: each binary's
/// name, path and the one test to run (else every test, or those matching
/// `filter`). Fails unless every one ran
/// and passed; prints the guest's `uname -r` and each binary's result.
pub fn run_tests(
    kernel: &Kernel,
    tests: &[(String, PathBuf, Option<String>)],
    filter: Option<&str>,
    deadline: Duration,
) -> anyhow::Result<()> {
    let out = kernels_dir().join(format!("run-{}", kernel.package));
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out).context("creating the results directory")?;
    // The guest runs what was built now, whatever cargo rebuilds meanwhile.
    let bin = out.join("bin");
    fs::create_dir_all(&bin)?;
    let snapshot = |path: &Path, name: &str| -> anyhow::Result<PathBuf> {
        let to = bin.join(name);
        fs::hard_link(path, &to)
            .or_else(|_| fs::copy(path, &to).map(drop))
            .with_context(|| format!("keeping {}", path.display()))?;
        Ok(to)
    };
    let plan = guest::Plan {
        enforcer: snapshot(
            &crate::bench::target_dir().join("debug/enforcer"),
            "enforcer",
        )?,
        filter: filter.map(str::to_owned),
        tests: tests
            .iter()
            .map(|(name, path, only)| Ok((name.clone(), snapshot(path, name)?, only.clone())))
            .collect::<anyhow::Result<_>>()?,
    };
    fs::write(out.join(guest::PLAN), plan.to_text()).context("writing the guest's plan")?;
    let xtask = snapshot(
        &std::env::current_exe().context("the xtask binary")?,
        "xtask",
    )?;
    let mut vng = vng();
    vng.args(["--run"])
        .arg(&kernel.vmlinuz)
        // No nested KVM here: full emulation. 9p: the guest's root is this
        // host's filesystem, so it runs the binaries built here.
        .args([
            "--disable-kvm",
            "--force-9p",
            "--memory",
            "4G",
            "--cpus",
            "2",
        ])
        .arg("--rwdir")
        .arg(&out)
        .arg("--")
        .arg(&xtask)
        .arg("guest-tests")
        .arg("--out")
        .arg(&out);
    eprintln!(
        "xtask: booting {} under qemu (emulated) to run {} test binaries",
        kernel.package,
        tests.len()
    );
    // The guest's console (boot messages, and a terminal's worth of blank
    // output) goes to a file of its own; the results are read from files.
    let console = out.join("console.log");
    let file = fs::File::create(&console).context("creating the console log")?;
    vng.stdout(file.try_clone()?).stderr(file);
    let started = Instant::now();
    run_bounded(&mut vng, deadline).with_context(|| format!("console: {}", console.display()))?;
    let results = guest::Results::read(&out)?;
    eprintln!(
        "xtask: guest kernel {} ({}), {:.0} s",
        results.uname,
        kernel.package,
        started.elapsed().as_secs_f64()
    );
    results.report(&out)
}

/// Runs `cmd` (output inherited), killing it at `deadline`.
fn run_bounded(cmd: &mut Command, deadline: Duration) -> anyhow::Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .context("starting vng (virtme-ng)")?;
    let end = Instant::now() + deadline;
    loop {
        if child.try_wait()?.is_some() {
            // Its status is not the guest command's: the results tell.
            return Ok(());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the guest ran past {} s: stopped", deadline.as_secs());
        }
        thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_generic_package_is_chosen() {
        let search = "linux-image-6.1.0-47-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-57-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-9-amd64 - Linux 6.1 for 64-bit PCs (signed)\n\
                      linux-image-6.1.0-60-cloud-amd64 - Linux 6.1 for x86-64 cloud\n";
        assert_eq!(
            newest_of(search, "linux-image-6.1.0-").as_deref(),
            Some("linux-image-6.1.0-57-amd64")
        );
        assert_eq!(newest_of("", "linux-image-6.1.0-"), None);
    }
}
