//! Scratch cgroups under the host's cgroup v2 mount.

use std::{
    fs,
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use rustix::process::{Pid, Signal, kill_process};

/// A cgroup created for one test, removed (with any process left in it) on drop.
pub struct ScratchCgroup {
    path: PathBuf,
}

impl ScratchCgroup {
    /// Creates `<cgroup v2 mount>/enforcer-test-<unique>`.
    pub fn new() -> Self {
        crate::require_root();
        let root = enforcer::cgroup::v2_mount().expect("cgroup v2 mount");
        let path = root.join(crate::unique_name("enforcer-test-"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// Creates a cgroup below this one (drop it first: a cgroup with children
    /// cannot be removed).
    pub fn child(&self) -> Self {
        let path = self.path.join(crate::unique_name("child-"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    /// Creates the cgroup `name` below this one (a kubelet-like layout's
    /// slices and scopes); drop it before this one, as [`Self::child`].
    pub fn child_named(&self, name: &str) -> Self {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup's id, as the kernel's helpers return it: its directory's
    /// inode.
    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt as _;
        fs::metadata(&self.path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", self.path.display()))
            .ino()
    }

    /// What the kernel says is attached to this cgroup (`bpftool cgroup
    /// show`; empty: nothing), one program per line.
    pub fn attached_programs(&self) -> String {
        let out = std::process::Command::new("bpftool")
            .args(["cgroup", "show"])
            .arg(&self.path)
            .output()
            .expect("bpftool");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The names of the programs attached to this cgroup, asked of the
    /// kernel in this process: no child, so a thread may poll it while
    /// others fork.
    pub fn attached_program_names(&self) -> Vec<String> {
        enforcer::bpf::attached_program_names(&self.path).expect("querying the cgroup")
    }

    /// Moves the calling process into this cgroup. Async-signal-safe, for use
    /// between fork and exec: writing "0" to cgroup.procs moves the writer, and
    /// rustix passes `procs` to the kernel as it is (no allocation).
    pub fn join_raw(procs: &std::ffi::CStr) -> std::io::Result<()> {
        use rustix::fs::{Mode, OFlags};
        let fd = rustix::fs::open(procs, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
        let written = rustix::io::write(&fd, b"0")?;
        if written != 1 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        Ok(())
    }

    /// `cgroup.procs` of this cgroup as a C string, for [`Self::join_raw`].
    pub fn procs_path(&self) -> std::ffi::CString {
        let procs = self.path.join("cgroup.procs");
        std::ffi::CString::new(procs.into_os_string().into_encoded_bytes()).expect("no NUL")
    }

    /// PIDs currently in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Default for ScratchCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for ScratchCgroup {
    fn drop(&mut self) {
        // Only processes this test started can be in a cgroup it created.
        for _ in 0..100 {
            let pids = self.pids();
            if pids.is_empty() && fs::remove_dir(&self.path).is_ok() {
                return;
            }
            for pid in pids.into_iter().filter_map(Pid::from_raw) {
                let _ = kill_process(pid, Signal::KILL);
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("warning: could not remove {}", self.path.display());
    }
}
