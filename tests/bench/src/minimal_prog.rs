//! A minimal `cgroup/connect4` program, `return 1` (allow), loaded from two raw
//! instructions: what any program at the gate's hook costs on this machine.
//! Issue 5 sets the goal of scenario 1 against such a program ("a minimal
//! hand-written connect4 program costs about 100 ns here"), so the run measures
//! it next to ours instead of assuming that figure holds on this machine.

use std::{
    fs::File,
    os::fd::{AsRawFd, OwnedFd},
    path::Path,
};

use enforcer::bpf::syscall::{bpf_attach_type, bpf_cmd, bpf_fd, bpf_prog_type, zeroed_attr};

/// `r0 = 1; exit` as `struct bpf_insn`s: opcode, registers, offset, immediate.
const PROGRAM: [[u8; 8]; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, dst r0, imm 1
    [0xb7, 0, 0, 0, 1, 0, 0, 0],
    // BPF_JMP | BPF_EXIT
    [0x95, 0, 0, 0, 0, 0, 0, 0],
];

/// The program attached to a cgroup through a link: closing the link (on drop)
/// detaches it, and closing the program's last descriptor unloads it.
pub struct MinimalConnect4 {
    _link: OwnedFd,
    _program: OwnedFd,
}

impl MinimalConnect4 {
    pub const NAME: &str = "bench_minimal";

    pub fn attach(cgroup: &Path) -> Self {
        let mut name = [0; 16];
        for (to, from) in name.iter_mut().zip(Self::NAME.bytes()) {
            *to = from as std::ffi::c_char;
        }
        let mut load = zeroed_attr();
        load.__bindgen_anon_3.prog_type = bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR as u32;
        load.__bindgen_anon_3.insn_cnt = PROGRAM.len() as u32;
        load.__bindgen_anon_3.insns = PROGRAM.as_ptr() as u64;
        load.__bindgen_anon_3.license = c"GPL".as_ptr() as u64;
        load.__bindgen_anon_3.prog_name = name;
        load.__bindgen_anon_3.expected_attach_type =
            bpf_attach_type::BPF_CGROUP_INET4_CONNECT as u32;
        // SAFETY: a load attribute whose instructions and licence outlive the
        // call.
        let program = unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut load) }.expect("BPF_PROG_LOAD");
        let dir = File::open(cgroup).unwrap_or_else(|e| panic!("{}: {e}", cgroup.display()));
        let mut create = zeroed_attr();
        create.link_create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
        create.link_create.__bindgen_anon_2.target_fd = dir.as_raw_fd() as u32;
        create.link_create.attach_type = bpf_attach_type::BPF_CGROUP_INET4_CONNECT as u32;
        // SAFETY: a link attribute naming two descriptors open across the call.
        let link =
            unsafe { bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut create) }.expect("BPF_LINK_CREATE");
        Self {
            _link: link,
            _program: program,
        }
    }
}
