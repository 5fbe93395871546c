//! Programs written as raw instructions, for the benchmarks' controls
//! ([`crate::minimal_prog`], [`crate::flow_floor`]): what any program at a
//! hook, or any program doing only a given few things, costs on this machine.

use std::os::fd::OwnedFd;

use enforcer::bpf::syscall::{bpf_cmd, bpf_fd, bpf_prog_type, zeroed_attr};

/// One `struct bpf_insn`: opcode, `dst | src << 4`, offset, immediate.
pub const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [code, dst | (src << 4), o[0], o[1], i[0], i[1], i[2], i[3]]
}

/// Opcodes and registers the controls use.
pub mod op {
    /// `BPF_ALU64 | BPF_MOV | BPF_X`.
    pub const MOV_REG: u8 = 0xbf;
    /// `BPF_ALU64 | BPF_MOV | BPF_K`.
    pub const MOV_IMM: u8 = 0xb7;
    /// `BPF_ALU64 | BPF_ADD | BPF_K`.
    pub const ADD_IMM: u8 = 0x07;
    /// `BPF_JMP | BPF_CALL`: the immediate is a helper's number.
    pub const CALL: u8 = 0x85;
    /// `BPF_JMP | BPF_JNE | BPF_K`.
    pub const JNE_IMM: u8 = 0x55;
    /// `BPF_LD | BPF_IMM | BPF_DW`: two instructions.
    pub const LD_IMM64: u8 = 0x18;
    /// `BPF_JMP | BPF_EXIT`.
    pub const EXIT: u8 = 0x95;
    /// The frame pointer.
    pub const FP: u8 = 10;
    /// `src` of an `LD_IMM64` whose immediate is a map's descriptor.
    pub const PSEUDO_MAP_FD: u8 = 1;
}

/// Loads `insns` as a program of `prog_type` named `name` (at most 15 bytes)
/// for `expected_attach_type` (0 where the type needs none).
pub fn load(
    prog_type: bpf_prog_type,
    expected_attach_type: u32,
    name: &str,
    insns: &[[u8; 8]],
) -> OwnedFd {
    let mut prog_name = [0; 16];
    assert!(name.len() < prog_name.len(), "{name}: 15 bytes at most");
    for (to, from) in prog_name.iter_mut().zip(name.bytes()) {
        *to = from as std::ffi::c_char;
    }
    let mut load = zeroed_attr();
    load.__bindgen_anon_3.prog_type = prog_type as u32;
    load.__bindgen_anon_3.insn_cnt = insns.len() as u32;
    load.__bindgen_anon_3.insns = insns.as_ptr() as u64;
    load.__bindgen_anon_3.license = c"GPL".as_ptr() as u64;
    load.__bindgen_anon_3.prog_name = prog_name;
    load.__bindgen_anon_3.expected_attach_type = expected_attach_type;
    // SAFETY: a load attribute whose instructions and licence outlive the
    // call.
    unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut load) }
        .unwrap_or_else(|e| panic!("BPF_PROG_LOAD of {name}: {e}"))
}
