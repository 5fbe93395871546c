//! Minimal programs, `return 1` (allow) or `return 0` (reject), loaded from two
//! raw instructions ([`crate::raw_prog`]): what any program at the gate's hook costs on this
//! machine, what any programs at every hook an untracked connect runs cost
//! together, and what the cheapest rejection at the gate's hook costs.
//! Issue 5 sets the goal of scenario 1 against such a program ("a minimal
//! hand-written connect4 program costs about 100 ns here"), so the run measures
//! it next to ours instead of assuming that figure holds on this machine.

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
};

use enforcer::bpf::syscall::{bpf_attach_type, bpf_cmd, bpf_fd, bpf_prog_type, zeroed_attr};

use crate::raw_prog::{self, insn, op};

/// `r0 = verdict; exit`.
const fn program(verdict: i32) -> [[u8; 8]; 2] {
    [
        insn(op::MOV_IMM, 0, 0, 0, verdict),
        insn(op::EXIT, 0, 0, 0, 0),
    ]
}
const ALLOW: [[u8; 8]; 2] = program(1);
/// At a cgroup hook, `connect()` then fails with EPERM.
const REJECT: [[u8; 8]; 2] = program(0);

/// One hook a minimal program attaches to: its program type, attach type and
/// name.
#[derive(Clone, Copy)]
struct Hook {
    prog_type: bpf_prog_type,
    attach_type: bpf_attach_type,
    name: &'static str,
}

const CONNECT4: Hook = Hook {
    prog_type: bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
    attach_type: bpf_attach_type::BPF_CGROUP_INET4_CONNECT,
    name: MinimalPrograms::NAME,
};

/// The hooks every TCP connect in a cgroup runs whatever its destination:
/// the connect, each `sock_ops` op, the release.
const UNTRACKED: [Hook; 3] = [
    CONNECT4,
    Hook {
        prog_type: bpf_prog_type::BPF_PROG_TYPE_SOCK_OPS,
        attach_type: bpf_attach_type::BPF_CGROUP_SOCK_OPS,
        name: "bench_min_ops",
    },
    Hook {
        prog_type: bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK,
        attach_type: bpf_attach_type::BPF_CGROUP_INET_SOCK_RELEASE,
        name: "bench_min_rel",
    },
];

/// Minimal programs attached to a cgroup through links: closing a link (on
/// drop) detaches its program, and closing a program's last descriptor
/// unloads it.
pub struct MinimalPrograms {
    /// Each program's link and program descriptors.
    attached: Vec<(OwnedFd, OwnedFd)>,
}

impl MinimalPrograms {
    pub const NAME: &str = "bench_minimal";

    /// One at the connect4 hook: the gate's hook floor.
    pub fn connect4(cgroup: &Path) -> Self {
        Self::attach(cgroup, &[CONNECT4], &ALLOW)
    }

    /// One at the connect4 hook that rejects every connect (EPERM): the floor
    /// of a rejection by any program at the gate's hook.
    pub fn rejecting_connect4(cgroup: &Path) -> Self {
        Self::attach(cgroup, &[CONNECT4], &REJECT)
    }

    /// One at every hook an untracked connect runs: the floor of those runs,
    /// whatever a program does in them.
    pub fn untracked_hooks(cgroup: &Path) -> Self {
        Self::attach(cgroup, &UNTRACKED, &ALLOW)
    }

    /// How many are attached.
    pub fn count(&self) -> usize {
        self.attached.len()
    }

    fn attach(cgroup: &Path, hooks: &[Hook], program: &[[u8; 8]; 2]) -> Self {
        let dir = File::open(cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
        Self {
            attached: hooks
                .iter()
                .map(|hook| attach_one(&dir, *hook, program))
                .collect(),
        }
    }
}

/// Loads `program` for `hook` and links it to the cgroup open as `dir`.
fn attach_one(dir: &File, hook: Hook, program: &[[u8; 8]; 2]) -> (OwnedFd, OwnedFd) {
    let program = raw_prog::load(hook.prog_type, hook.attach_type as u32, hook.name, program);
    let mut create = zeroed_attr();
    create.link_create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
    create.link_create.__bindgen_anon_2.target_fd = dir.as_raw_fd() as u32;
    create.link_create.attach_type = hook.attach_type as u32;
    // SAFETY: a link attribute naming two descriptors open across the call.
    let link = unsafe { bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut create) }.expect("BPF_LINK_CREATE");
    (link, program)
}
