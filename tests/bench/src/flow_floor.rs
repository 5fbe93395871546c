//! The floor of any program that follows flows, for scenario 9's data-segment
//! goal: a TC program of a dozen raw instructions that copies the frame's
//! first 192 bytes (as the packet programs do, into their scratch) and finds
//! the frame's flow in a hash by a 56-byte key (the size of theirs), and
//! nothing else: no parsing, no sequence numbers, no clock. A data segment of
//! a tracked flow cannot cost less than this with the flow in a hash.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use enforcer::bpf::{syscall::bpf_prog_type, test_run};

use crate::{
    raw_map,
    raw_prog::{self, insn, op},
};

/// Bytes copied, as the packet programs' scratch holds.
const COPIED: i32 = 192;
/// The key: that many bytes of the frame from its IP header on.
const KEY: usize = 56;
const ETHERNET: usize = 14;
const BPF_FUNC_MAP_LOOKUP_ELEM: u8 = 1;
const BPF_FUNC_SKB_LOAD_BYTES: u8 = 26;

/// The program's instructions, its flow table open as `map`.
fn instructions(map: i32) -> Vec<[u8; 8]> {
    let key_at = -COPIED + ETHERNET as i32;
    vec![
        insn(op::MOV_REG, 6, 1, 0, 0),
        // bpf_skb_load_bytes(ctx, 0, fp - 192, 192)
        insn(op::MOV_IMM, 2, 0, 0, 0),
        insn(op::MOV_REG, 3, op::FP, 0, 0),
        insn(op::ADD_IMM, 3, 0, 0, -COPIED),
        insn(op::MOV_IMM, 4, 0, 0, COPIED),
        insn(op::MOV_REG, 1, 6, 0, 0),
        insn(op::CALL, 0, 0, 0, BPF_FUNC_SKB_LOAD_BYTES as i32),
        insn(op::JNE_IMM, 0, 0, 5, 0),
        // bpf_map_lookup_elem(map, fp - 192 + 14)
        insn(op::LD_IMM64, 1, op::PSEUDO_MAP_FD, 0, map),
        // (the upper half of the 64-bit immediate)
        insn(0, 0, 0, 0, 0),
        insn(op::MOV_REG, 2, op::FP, 0, 0),
        insn(op::ADD_IMM, 2, 0, 0, key_at),
        insn(op::CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM as i32),
        // TC_ACT_OK
        insn(op::MOV_IMM, 0, 0, 0, 0),
        insn(op::EXIT, 0, 0, 0, 0),
    ]
}

/// The program loaded, with its flow table holding the flow of `frame`.
pub struct FlowFloor {
    program: OwnedFd,
    _map: OwnedFd,
}

impl FlowFloor {
    pub fn new(frame: &[u8]) -> Self {
        let map = raw_map::hash(KEY as u32, 8, 65_536);
        raw_map::insert(&map, &frame[ETHERNET..ETHERNET + KEY], &[0u8; 8]);
        let program = raw_prog::load(
            bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS,
            0,
            "bench_flows",
            &instructions(map.as_raw_fd()),
        );
        Self { program, _map: map }
    }

    /// Mean ns per run over `repeat` runs of the kernel's loop on `frame`.
    pub fn cost(&self, frame: &[u8], repeat: u32) -> u32 {
        let run = test_run(self.program.as_fd(), frame, repeat).expect("BPF_PROG_TEST_RUN");
        assert_eq!(run.retval, 0, "the floor program returns TC_ACT_OK");
        run.duration_ns
    }
}
