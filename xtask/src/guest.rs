//! `xtask guest-tests`: what runs inside the test kernel ([`crate::kernel`]).
//! Runs each test binary one test at a time and records, in a directory the
//! host shares, the kernel's release, each binary's exit status and log, and a
//! last line saying it got to the end (a guest that dies leaves none).

use std::{
    fs::{self, File, OpenOptions},
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

/// What to run, one line each, written by the host: `enforcer PATH`,
/// `filter TEXT`, `test NAME=PATH[#TEST]`. (Not on the command line: the
/// guest's command travels on the kernel's, which holds 2 KiB at most.)
pub const PLAN: &str = "plan";
const UNAME: &str = "uname";
const SUMMARY: &str = "summary";
const DONE: &str = "done";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shared directory: the plan in, the results out.
    #[arg(long)]
    out: PathBuf,
}

/// What the host asks the guest to run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The daemon binary the tests drive.
    pub enforcer: PathBuf,
    /// Only the tests whose name contains this.
    pub filter: Option<String>,
    /// Test binaries: name, path, and the one test to run (else all).
    pub tests: Vec<(String, PathBuf, Option<String>)>,
}

impl Plan {
    pub fn to_text(&self) -> String {
        let mut text = format!("enforcer {}\n", self.enforcer.display());
        if let Some(filter) = &self.filter {
            text += &format!("filter {filter}\n");
        }
        for (name, path, only) in &self.tests {
            let only = only.as_ref().map(|t| format!("#{t}")).unwrap_or_default();
            text += &format!("test {name}={}{only}\n", path.display());
        }
        text
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut plan = Self::default();
        for line in text.lines() {
            let (key, value) = line
                .split_once(' ')
                .with_context(|| format!("plan line `{line}`"))?;
            match key {
                "enforcer" => plan.enforcer = value.into(),
                "filter" => plan.filter = Some(value.to_owned()),
                "test" => {
                    let (name, rest) = value
                        .split_once('=')
                        .with_context(|| format!("`{value}` is not NAME=PATH[#TEST]"))?;
                    let (path, only) = match rest.split_once('#') {
                        Some((path, only)) => (path, Some(only.to_owned())),
                        None => (rest, None),
                    };
                    plan.tests.push((name.to_owned(), path.into(), only));
                }
                _ => bail!("plan line `{line}`"),
            }
        }
        Ok(plan)
    }
}

pub fn execute(args: Args) -> anyhow::Result<()> {
    let plan = Plan::parse(&fs::read_to_string(args.out.join(PLAN))?)?;
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    fs::write(args.out.join(UNAME), release.trim())?;
    let mut summary = OpenOptions::new()
        .create(true)
        .append(true)
        .open(args.out.join(SUMMARY))?;
    for (name, path, only) in &plan.tests {
        let log = File::create(args.out.join(format!("{name}.log")))?;
        let started = Instant::now();
        let mut cmd = Command::new(path);
        cmd.env("ENFORCER_BIN", &plan.enforcer)
            .arg("--test-threads=1")
            .stdout(log.try_clone()?)
            .stderr(log);
        match (only, &plan.filter) {
            (Some(test), _) => {
                cmd.args(["--exact", test]);
            }
            (None, Some(filter)) => {
                cmd.arg(filter);
            }
            (None, None) => {}
        }
        let code = cmd.status().map_or(-1, |s| s.code().unwrap_or(-1));
        writeln!(summary, "{name} {code} {}", started.elapsed().as_secs())?;
    }
    fs::write(args.out.join(DONE), "")?;
    Ok(())
}

/// What the guest left in the results directory.
pub struct Results {
    pub uname: String,
    /// Name, exit code, seconds.
    runs: Vec<(String, i32, u64)>,
    done: bool,
}

impl Results {
    pub fn read(out: &Path) -> anyhow::Result<Self> {
        let uname = fs::read_to_string(out.join(UNAME))
            .context("the guest wrote no kernel release: did it boot?")?;
        let summary = fs::read_to_string(out.join(SUMMARY)).unwrap_or_default();
        Ok(Self {
            uname: uname.trim().to_owned(),
            runs: parse_summary(&summary),
            done: out.join(DONE).exists(),
        })
    }

    /// Prints each binary's result, the failures' logs; fails on any failure.
    pub fn report(&self, out: &Path) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for (name, code, secs) in &self.runs {
            let verdict = if *code == 0 { "ok" } else { "FAILED" };
            eprintln!("xtask: [{}] {name}: {verdict} ({secs} s)", self.uname);
            if *code != 0 {
                failed.push(name.as_str());
                let log = fs::read_to_string(out.join(format!("{name}.log"))).unwrap_or_default();
                eprintln!("{log}");
            }
        }
        if !self.done {
            bail!(
                "the guest stopped before the end (after {} binaries): see {}",
                self.runs.len(),
                out.display()
            );
        }
        if !failed.is_empty() {
            bail!(
                "on {}: {} failed (logs in {})",
                self.uname,
                failed.join(", "),
                out.display()
            );
        }
        Ok(())
    }
}

fn parse_summary(text: &str) -> Vec<(String, i32, u64)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((
                parts.next()?.to_owned(),
                parts.next()?.parse().ok()?,
                parts.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_back_as_written() {
        let plan = Plan {
            enforcer: "/t/enforcer".into(),
            filter: Some("trip".into()),
            tests: vec![
                ("modes".into(), "/t/modes-1".into(), None),
                (
                    "breaker".into(),
                    "/t/breaker-2".into(),
                    Some("a_test".into()),
                ),
            ],
        };
        assert_eq!(Plan::parse(&plan.to_text()).unwrap(), plan);
        assert!(Plan::parse("nonsense").is_err());
    }

    #[test]
    fn the_summary_reads_back_each_binary() {
        assert_eq!(
            parse_summary("modes 0 41\nbreaker 101 300\ntruncated"),
            vec![("modes".into(), 0, 41), ("breaker".into(), 101, 300)]
        );
    }
}
