//! A minimal `cgroup/connect4` program, `return 1` (allow), loaded from two raw
//! instructions: what any program at the gate's hook costs on this machine.
//! Issue 5 sets the goal of scenario 1 against such a program ("a minimal
//! hand-written connect4 program costs about 100 ns here"), so the run measures
//! it next to ours instead of assuming that figure holds on this machine.

use std::{
    fs::File,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
};

/// UAPI `enum bpf_cmd`, `enum bpf_prog_type`, `enum bpf_attach_type`.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
const BPF_CGROUP_INET4_CONNECT: u32 = 10;

/// `r0 = 1; exit` as `struct bpf_insn`s: opcode, registers, offset, immediate.
const PROGRAM: [[u8; 8]; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1
    [0xb7, 0, 0, 0, 1, 0, 0, 0],
    // BPF_JMP | BPF_EXIT
    [0x95, 0, 0, 0, 0, 0, 0, 0],
];

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (UAPI), up to
/// `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_LINK_CREATE` part of `union bpf_attr` (UAPI), its first fields.
#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// The program attached to a cgroup through a link: closing the link (on drop)
/// detaches it, and closing the program's last descriptor unloads it.
pub struct MinimalConnect4 {
    _link: OwnedFd,
    _program: OwnedFd,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> OwnedFd {
    // libc: rustix has no bpf(2), and aya loads programs only from an object
    // file, not from two raw instructions.
    // SAFETY: `attr` is a valid attr of the size given for `cmd`.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    assert!(fd >= 0, "bpf({cmd}): {}", std::io::Error::last_os_error());
    // SAFETY: the kernel returned a new descriptor, owned from here on.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

impl MinimalConnect4 {
    pub const NAME: &str = "bench_minimal";

    pub fn attach(cgroup: &Path) -> Self {
        let mut name = [0u8; 16];
        name[..Self::NAME.len()].copy_from_slice(Self::NAME.as_bytes());
        let mut load = ProgLoad {
            prog_type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            insn_cnt: PROGRAM.len() as u32,
            insns: PROGRAM.as_ptr() as u64,
            license: c"GPL".as_ptr() as u64,
            prog_name: name,
            expected_attach_type: BPF_CGROUP_INET4_CONNECT,
            ..ProgLoad::default()
        };
        let program = bpf(BPF_PROG_LOAD, &mut load);
        let dir = File::open(cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
        let mut create = LinkCreate {
            prog_fd: program.as_raw_fd() as u32,
            target_fd: dir.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_INET4_CONNECT,
            flags: 0,
        };
        let link = bpf(BPF_LINK_CREATE, &mut create);
        Self {
            _link: link,
            _program: program,
        }
    }
}
