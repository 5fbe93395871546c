//! Named crash points, for the tests that kill the daemon at every step of
//! install, adopt, apply, interface attach and uninstall.
//!
//! Built with the `crash-points` feature, `FAILPOINTS=<name>=return` kills the
//! daemon with SIGKILL when it reaches `<name>`, as a power cut or the OOM
//! killer would: no destructor, no cleanup. `<name>=1*off->return` lets the
//! first pass go (the start's apply) and kills at the second (a reload's).
//! Without the feature a point is nothing at all.

/// A step the daemon may die at.
#[inline]
pub fn point(name: &str) {
    let _ = name;
    fail::fail_point!(name, |_| die());
}

#[cfg_attr(not(feature = "crash-points"), allow(dead_code))]
fn die() {
    use rustix::process::{Signal, getpid, kill_process};
    let _ = kill_process(getpid(), Signal::KILL);
}

/// The armed points, for the process's lifetime.
pub struct Armed {
    #[cfg(feature = "crash-points")]
    _scenario: fail::FailScenario<'static>,
}

/// Arms the points named in `FAILPOINTS`. Without the feature, `FAILPOINTS`
/// is not even read: a production daemon ignores it.
pub fn arm() -> Armed {
    Armed {
        #[cfg(feature = "crash-points")]
        _scenario: fail::FailScenario::setup(),
    }
}
