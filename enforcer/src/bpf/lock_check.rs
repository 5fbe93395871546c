//! Proof, from the emitted object, that no program calls anything while it holds
//! a destination's spin lock.
//!
//! Linux 6.1's verifier rejects a program with any call between `bpf_spin_lock`
//! and `bpf_spin_unlock` ("function calls are not allowed while holding a
//! lock"); later kernels allow some. LLVM turns a struct initialisation or copy
//! into a `memset`/`memcpy` call on its own, so the source cannot show it: only
//! the instructions can. This walks every path from each lock to its unlock.

use std::collections::BTreeSet;

/// `bpf_spin_lock` and `bpf_spin_unlock` (include/uapi/linux/bpf.h).
const HELPER_SPIN_LOCK: i32 = 93;
const HELPER_SPIN_UNLOCK: i32 = 94;

const INSN: usize = 8;
const CLASS_JMP: u8 = 0x05;
const CLASS_JMP32: u8 = 0x06;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
/// `BPF_LD | BPF_IMM | BPF_DW`: the one instruction that takes two slots.
const LD_IMM64: u8 = 0x18;

/// One instruction of a BPF program, as the object stores it (little endian).
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u8,
    src: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn decode(bytes: &[u8]) -> Self {
        Self {
            code: bytes[0],
            src: bytes[1] >> 4,
            off: i16::from_le_bytes([bytes[2], bytes[3]]),
            imm: i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    fn is_jump_class(self) -> bool {
        matches!(self.code & 0x07, CLASS_JMP | CLASS_JMP32)
    }

    fn is_helper_call(self, helper: i32) -> bool {
        self.code == CLASS_JMP | OP_CALL && self.src == 0 && self.imm == helper
    }
}

/// What a path from a lock reached before its unlock.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// A call (helper, BPF-to-BPF or kfunc) at instruction `at`, lock taken at `lock`.
    Call { lock: usize, at: usize, imm: i32 },
    /// The program can end with the lock held.
    Exit { lock: usize, at: usize },
}

/// Every call or exit reachable from a `bpf_spin_lock` before `bpf_spin_unlock`,
/// over all branches of `code` (one program's instructions).
pub fn calls_under_lock(code: &[u8]) -> Vec<Violation> {
    let insns: Vec<Insn> = code.chunks_exact(INSN).map(Insn::decode).collect();
    let mut found = BTreeSet::new();
    for (lock, insn) in insns.iter().enumerate() {
        if insn.is_helper_call(HELPER_SPIN_LOCK) {
            walk_from_lock(&insns, lock, &mut found);
        }
    }
    found.into_iter().collect()
}

fn walk_from_lock(insns: &[Insn], lock: usize, found: &mut BTreeSet<Violation>) {
    let mut seen = BTreeSet::new();
    let mut todo = vec![lock + 1];
    while let Some(pc) = todo.pop() {
        if !seen.insert(pc) {
            continue;
        }
        let Some(&insn) = insns.get(pc) else {
            continue;
        };
        if insn.is_helper_call(HELPER_SPIN_UNLOCK) {
            continue;
        }
        if insn.code == LD_IMM64 {
            todo.push(pc + 2);
            continue;
        }
        if !insn.is_jump_class() {
            todo.push(pc + 1);
            continue;
        }
        let target = (pc as isize + 1 + insn.off as isize) as usize;
        match insn.code & 0xf0 {
            OP_CALL => {
                found.insert(Violation::Call {
                    lock,
                    at: pc,
                    imm: insn.imm,
                });
            }
            OP_EXIT => {
                found.insert(Violation::Exit { lock, at: pc });
            }
            // `gotol` (JMP32 | JA) jumps by imm, not off; LLVM emits it only
            // for ranges this object never has, so treat it as the plain jump.
            OP_JA => todo.push(target),
            _ => todo.extend([pc + 1, target]),
        }
    }
}

#[cfg(test)]
mod tests {
    use object::{Object as _, ObjectSection as _, SectionKind};

    use super::*;

    fn insn(code: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
        let mut b = [0; 8];
        b[0] = code;
        b[1] = src << 4;
        b[2..4].copy_from_slice(&off.to_le_bytes());
        b[4..8].copy_from_slice(&imm.to_le_bytes());
        b
    }
    const CALL: u8 = CLASS_JMP | OP_CALL;
    const EXIT: u8 = CLASS_JMP | OP_EXIT;
    const JEQ: u8 = CLASS_JMP | 0x10;
    const MOV: u8 = 0xb7;

    fn program(insns: &[[u8; 8]]) -> Vec<u8> {
        insns.concat()
    }

    #[test]
    fn straight_line_code_between_lock_and_unlock_passes() {
        let code = program(&[
            insn(CALL, 0, 0, HELPER_SPIN_LOCK),
            insn(MOV, 0, 0, 1),
            insn(CALL, 0, 0, HELPER_SPIN_UNLOCK),
            insn(CALL, 0, 0, 5), // after the unlock: allowed
            insn(EXIT, 0, 0, 0),
        ]);
        assert_eq!(calls_under_lock(&code), vec![]);
    }

    #[test]
    fn a_call_on_one_branch_only_is_found() {
        let code = program(&[
            insn(CALL, 0, 0, HELPER_SPIN_LOCK),
            insn(JEQ, 0, 2, 0),                   // 1: to 4 when r0 == 0
            insn(CALL, 0, 0, HELPER_SPIN_UNLOCK), // 2
            insn(EXIT, 0, 0, 0),                  // 3
            insn(CALL, 1, 5, -1),                 // 4: a BPF-to-BPF call (memset)
            insn(CALL, 0, 0, HELPER_SPIN_UNLOCK),
            insn(EXIT, 0, 0, 0),
        ]);
        assert_eq!(
            calls_under_lock(&code),
            vec![Violation::Call {
                lock: 0,
                at: 4,
                imm: -1
            }]
        );
    }

    #[test]
    fn an_exit_with_the_lock_held_and_a_two_slot_load_are_followed() {
        let code = program(&[
            insn(CALL, 0, 0, HELPER_SPIN_LOCK),
            insn(LD_IMM64, 0, 0, 0x85), // its second slot looks like a call
            insn(0, 0, 0, 0x85),
            insn(EXIT, 0, 0, 0),
        ]);
        assert_eq!(
            calls_under_lock(&code),
            vec![Violation::Exit { lock: 0, at: 3 }]
        );
    }

    /// The real object: every program section, every lock.
    #[cfg(not(enforcer_no_ebpf))]
    #[test]
    fn no_program_calls_anything_while_holding_a_lock() {
        let bytes = crate::bpf::object::bytes().expect("built with the eBPF object");
        let file = object::File::parse(bytes).expect("an ELF object");
        let mut locks = 0;
        for section in file.sections() {
            if section.kind() != SectionKind::Text {
                continue;
            }
            let code = section.data().expect("section data");
            let name = section.name().unwrap_or("?");
            locks += code
                .chunks_exact(INSN)
                .filter(|b| Insn::decode(b).is_helper_call(HELPER_SPIN_LOCK))
                .count();
            let violations = calls_under_lock(code);
            assert!(
                violations.is_empty(),
                "section {name}: {violations:?} (Linux 6.1 refuses the program)"
            );
        }
        // The admission, the outcome paths and the control program each lock.
        assert!(locks >= 4, "only {locks} locks found: is this the object?");
    }
}
