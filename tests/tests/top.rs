//! `enforcer top` in a real terminal: tmux runs it against a running daemon,
//! the test reads the screen (`capture-pane`) and presses its keys
//! (`send-keys`).

use std::{
    path::Path,
    process::{Command, Output},
};

use enforcer_tests::{
    bpffs::PinDir,
    cgroup::ScratchCgroup,
    daemon::{Daemon, binary},
    exec::Place,
    fixtures::ECONNREFUSED,
    net::RefusingPort,
    wait,
};

/// A tmux server of the test's own (its own socket name), killed with it.
struct Tmux {
    server: String,
}

impl Tmux {
    /// Runs `command` in a detached session of a fresh server, in a
    /// terminal of `width` × `height`.
    fn start(command: &[&str], width: u16, height: u16) -> Self {
        let tmux = Self {
            server: format!("enforcer-top-{}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let mut args = vec!["new-session", "-d", "-s", "top", "-x", &w, "-y", &h, "--"];
        args.extend_from_slice(command);
        let out = tmux.run(&args);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.server])
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// The screen as text.
    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn press(&self, key: &str) {
        let out = self.run(&["send-keys", "-t", "top", key]);
        assert!(out.status.success(), "tmux send-keys {key}: {out:?}");
    }

    /// Waits until `dest`'s row shows it open under the policy `tripping`,
    /// counting down in minutes; the seconds left.
    fn countdown(&self, what: &str, dest: &str) -> u64 {
        wait::until(what, || {
            let screen = self.screen();
            screen
                .lines()
                .filter(|l| l.contains(dest) && l.contains("tripping"))
                .find_map(countdown_in)
                .ok_or(screen)
        })
    }

    /// Waits until a line of the screen holds every one of `parts`; that line.
    fn line_with(&self, what: &str, parts: &[&str]) -> String {
        wait::until(what, || {
            let screen = self.screen();
            screen
                .lines()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .map(str::to_owned)
                .ok_or(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

#[test]
fn top_shows_a_tripped_destination_counting_down_and_a_reset_from_it_closes_it() {
    let (cgroup, pins) = (ScratchCgroup::new(), PinDir::new());
    let refusing = RefusingPort::loopback_v4();
    let addr = refusing.addr;
    let policy = format!(
        "[[policy]]\nname = \"tripping\"\nmatch = [\"{addr}\"]\nfailure_threshold = 2\n\
         open = \"5m\"\nopen_max = \"10m\"\n"
    );
    let d = Daemon::start(&cgroup, &pins, &policy);
    let refused = Place::cgroup(&cgroup).connects(addr, 3);
    assert_eq!(
        refused,
        vec![Err(ECONNREFUSED as i32); 3],
        "two refused, then rejected by the open circuit (the policy's errno)"
    );
    assert_eq!(d.dest(addr)["state"], "open");

    let bin = binary();
    let socket = d.socket.to_string_lossy().into_owned();
    let tmux = Tmux::start(
        &[
            path(&bin),
            "top",
            "--socket",
            &socket,
            "--interval",
            "200ms",
        ],
        200,
        40,
    );
    let dest = addr.to_string();
    // Open, about five minutes (the policy's jitter spreads it) counting
    // down.
    let first = tmux.countdown("top shows the destination open", &dest);
    assert!(
        (4 * 60..=6 * 60).contains(&first),
        "{first} s left of a 5m opening"
    );
    wait::until("the countdown to move on", || {
        let now = tmux.countdown("the row again", &dest);
        (now < first)
            .then_some(())
            .ok_or(format!("{first} s left, then {now} s"))
    });

    // The only row is selected: reset it, confirmed.
    tmux.press("r");
    tmux.line_with("the confirmation", &["Reset", &dest, "y/n"]);
    tmux.press("y");
    wait::until("the daemon to close it", || {
        let state = d.dest(addr)["state"].clone();
        (state == "closed").then_some(()).ok_or(state.to_string())
    });
    tmux.line_with("top shows it closed", &[&dest, "closed"]);
    tmux.line_with("and what it did", &[&format!("{dest}: reset")]);

    tmux.press("q");
    wait::until("top to quit", || {
        let out = tmux.run(&["has-session", "-t", "top"]);
        (!out.status.success())
            .then_some(())
            .ok_or_else(|| tmux.screen())
    });
}

/// The seconds left in an open row's countdown: the `4m 59s` after its
/// state.
fn countdown_in(row: &str) -> Option<u64> {
    let mut words = row.split_whitespace().skip_while(|w| *w != "open").skip(1);
    let minutes = words.next()?.strip_suffix('m')?.parse::<u64>().ok()?;
    let seconds = words.next()?.strip_suffix('s')?.parse::<u64>().ok()?;
    Some(minutes * 60 + seconds)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}
