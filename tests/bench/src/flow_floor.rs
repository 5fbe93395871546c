//! The floor of any program that follows flows, for scenario 9's data-segment
//! goal: a TC program of a dozen raw instructions that copies the frame's
//! first 192 bytes (as the packet programs do, into their scratch) and finds
//! the frame's flow in a hash by a 56-byte key (the size of theirs), and
//! nothing else: no parsing, no sequence numbers, no clock. A data segment of
//! a tracked flow cannot cost less than this with the flow in a hash.

use std::os::fd::{AsRawFd, OwnedFd};

use enforcer::bpf::syscall::{bpf, bpf_cmd, bpf_fd, bpf_prog_type, zeroed_attr};

/// Bytes copied, as the packet programs' scratch holds.
const COPIED: i32 = 192;
/// The key: that many bytes of the frame from its IP header on.
const KEY: usize = 56;
const ETHERNET: usize = 14;
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_F_NO_PREALLOC: u32 = 1;
const BPF_FUNC_MAP_LOOKUP_ELEM: u8 = 1;
const BPF_FUNC_SKB_LOAD_BYTES: u8 = 26;

/// One `struct bpf_insn`: opcode, dst | src << 4, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [code, dst | (src << 4), o[0], o[1], i[0], i[1], i[2], i[3]]
}

const MOV_REG: u8 = 0xbf;
const MOV_IMM: u8 = 0xb7;
const ADD_IMM: u8 = 0x07;
const CALL: u8 = 0x85;
const JNE_IMM: u8 = 0x55;
const LD_IMM64: u8 = 0x18;
const EXIT: u8 = 0x95;
const FP: u8 = 10;
/// `src` of an `LD_IMM64` whose immediate is a map's descriptor.
const PSEUDO_MAP_FD: u8 = 1;

/// The program, its flow table open as `map`.
fn program(map: i32) -> Vec<[u8; 8]> {
    let key_at = -COPIED + ETHERNET as i32;
    vec![
        insn(MOV_REG, 6, 1, 0, 0),
        // bpf_skb_load_bytes(ctx, 0, fp - 192, 192)
        insn(MOV_IMM, 2, 0, 0, 0),
        insn(MOV_REG, 3, FP, 0, 0),
        insn(ADD_IMM, 3, 0, 0, -COPIED),
        insn(MOV_IMM, 4, 0, 0, COPIED),
        insn(MOV_REG, 1, 6, 0, 0),
        insn(CALL, 0, 0, 0, BPF_FUNC_SKB_LOAD_BYTES as i32),
        insn(JNE_IMM, 0, 0, 5, 0),
        // bpf_map_lookup_elem(map, fp - 192 + 14)
        insn(LD_IMM64, 1, PSEUDO_MAP_FD, 0, map),
        insn(0, 0, 0, 0, 0),
        insn(MOV_REG, 2, FP, 0, 0),
        insn(ADD_IMM, 2, 0, 0, key_at),
        insn(CALL, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM as i32),
        // TC_ACT_OK
        insn(MOV_IMM, 0, 0, 0, 0),
        insn(EXIT, 0, 0, 0, 0),
    ]
}

/// The program loaded, with its flow table holding the flow of `frame`.
pub struct FlowFloor {
    program: OwnedFd,
    _map: OwnedFd,
}

impl FlowFloor {
    pub fn new(frame: &[u8]) -> Self {
        let mut create = zeroed_attr();
        create.__bindgen_anon_1.map_type = BPF_MAP_TYPE_HASH;
        create.__bindgen_anon_1.key_size = KEY as u32;
        create.__bindgen_anon_1.value_size = 8;
        create.__bindgen_anon_1.max_entries = 65_536;
        create.__bindgen_anon_1.map_flags = BPF_F_NO_PREALLOC;
        // SAFETY: a map creation attribute, no pointers.
        let map = unsafe { bpf_fd(bpf_cmd::BPF_MAP_CREATE, &mut create) }.expect("BPF_MAP_CREATE");
        let key = &frame[ETHERNET..ETHERNET + KEY];
        let value = [0u8; 8];
        let mut update = zeroed_attr();
        update.__bindgen_anon_2.map_fd = map.as_raw_fd() as u32;
        update.__bindgen_anon_2.key = key.as_ptr() as u64;
        update.__bindgen_anon_2.__bindgen_anon_1.value = value.as_ptr() as u64;
        // SAFETY: the key and value outlive the call.
        unsafe { bpf(bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut update) }.expect("BPF_MAP_UPDATE_ELEM");

        let insns = program(map.as_raw_fd());
        let mut load = zeroed_attr();
        load.__bindgen_anon_3.prog_type = bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32;
        load.__bindgen_anon_3.insn_cnt = insns.len() as u32;
        load.__bindgen_anon_3.insns = insns.as_ptr() as u64;
        load.__bindgen_anon_3.license = c"GPL".as_ptr() as u64;
        // SAFETY: the instructions and licence outlive the call.
        let program = unsafe { bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut load) }.expect("BPF_PROG_LOAD");
        Self { program, _map: map }
    }

    /// Mean ns per run over `repeat` runs of the kernel's loop on `frame`.
    pub fn cost(&self, frame: &[u8], repeat: u32) -> u32 {
        let mut data_in = frame.to_vec();
        let mut attr = zeroed_attr();
        attr.test.prog_fd = self.program.as_raw_fd() as u32;
        attr.test.data_size_in = data_in.len() as u32;
        attr.test.data_in = data_in.as_mut_ptr() as u64;
        attr.test.repeat = repeat;
        // SAFETY: the input outlives the call; no output is asked for.
        unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }.expect("BPF_PROG_TEST_RUN");
        // SAFETY: the kernel wrote its answer into the member set above.
        let test = unsafe { attr.test };
        assert_eq!(test.retval, 0, "the floor program returns TC_ACT_OK");
        test.duration
    }
}
