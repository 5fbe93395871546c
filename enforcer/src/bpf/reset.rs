//! Resetting established TCP connections (the chaos `reset` fault): a TCP
//! socket iterator (`iter/tcp`) that calls the kernel's `bpf_sock_destroy`
//! kfunc (Linux ≥ 6.5) for every established socket whose destination is a
//! target. The socket is aborted with `ECONNABORTED` and its peer gets a RST.
//!
//! aya 0.14 cannot link a kfunc call, so the program is assembled here (a
//! few dozen instructions, the targets as immediates), with the kfunc's and
//! the iterator's BTF ids and `sock_common`'s field offsets read from the
//! running kernel's BTF, and loaded, linked and run with `bpf(2)`, as the
//! control path test-runs its program. A run iterates the sockets of the
//! daemon's network namespace; each socket it destroys writes one byte to
//! the iterator's output, which is how many were reset.

use std::{
    ffi::CString,
    io::{self, Read as _},
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
};

use aya_obj::{
    btf::{Btf, BtfKind},
    generated::bpf_func_id,
};
use enforcer_common::chaos::{self, Target};

use super::{
    btf::{Layout, VMLINUX},
    syscall::{bpf_attach_type, bpf_cmd, bpf_fd, bpf_prog_type, zeroed_attr},
};

/// `TCP_ESTABLISHED`, `AF_INET`, `AF_INET6`.
const ESTABLISHED: i32 = 1;
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;
/// `src_reg` of a call to a kernel function by BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;

/// What a reset needs of the running kernel, found once.
#[derive(Clone, Debug)]
pub struct Resetter {
    /// BTF ids: the iterator's attach point, the kfunc.
    iter_tcp: u32,
    sock_destroy: u32,
    offsets: Offsets,
}

/// Byte offsets in the iterator's context and in `struct sock_common`.
#[derive(Clone, Copy, Debug)]
struct Offsets {
    ctx_meta: i16,
    ctx_sk_common: i16,
    meta_seq: i16,
    family: i16,
    state: i16,
    dport: i16,
    daddr: i16,
    v6_daddr: i16,
    /// In `struct tcp_sock`.
    bytes_received: i16,
    bytes_acked: i16,
}

/// Why resets are not available on this kernel.
#[derive(Debug, thiserror::Error)]
#[error("resetting connections needs the kernel's bpf_sock_destroy (Linux ≥ 6.5) and BTF: {0}")]
pub struct Unavailable(String);

impl Resetter {
    /// What the running kernel offers, or why resets cannot be made here.
    pub fn of_running_kernel() -> Result<Self, Unavailable> {
        let btf = Btf::from_sys_fs().map_err(|e| Unavailable(e.to_string()))?;
        let func = |name: &str| {
            btf.id_by_type_name_kind(name, BtfKind::Func)
                .map_err(|_| Unavailable(format!("this kernel has no `{name}`")))
        };
        let (iter_tcp, sock_destroy) = (func("bpf_iter_tcp")?, func("bpf_sock_destroy")?);
        let layout = Layout::read(
            Path::new(VMLINUX),
            &["sock_common", "bpf_iter__tcp", "bpf_iter_meta", "tcp_sock"],
        )
        .map_err(|e| Unavailable(e.to_string()))?;
        let at = |s: &str, m: &str| {
            layout
                .member(s, m)
                .and_then(|m| i16::try_from(m.offset).ok())
                .ok_or_else(|| Unavailable(format!("this kernel's BTF has no `{s}.{m}`")))
        };
        Ok(Self {
            iter_tcp,
            sock_destroy,
            offsets: Offsets {
                ctx_meta: at("bpf_iter__tcp", "meta")?,
                ctx_sk_common: at("bpf_iter__tcp", "sk_common")?,
                meta_seq: at("bpf_iter_meta", "seq")?,
                family: at("sock_common", "skc_family")?,
                state: at("sock_common", "skc_state")?,
                dport: at("sock_common", "skc_dport")?,
                daddr: at("sock_common", "skc_daddr")?,
                v6_daddr: at("sock_common", "skc_v6_daddr")?,
                bytes_received: at("tcp_sock", "bytes_received")?,
                bytes_acked: at("tcp_sock", "bytes_acked")?,
            },
        })
    }

    /// Resets the established connections of this network namespace to any
    /// of `targets` that carried at least `min_bytes` (received and acked
    /// sent; 0: every one), each with `chance` (of 2^32, [`chaos::ALWAYS`]:
    /// every one); how many were reset.
    pub fn reset(&self, targets: &[Target], chance: u32, min_bytes: u64) -> io::Result<u64> {
        let program = self.program(targets, chance, min_bytes);
        let prog = self.load(&program)?;
        let mut attr = zeroed_attr();
        attr.link_create.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
        attr.link_create.attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
        // SAFETY: a link of a loaded iterator program; returns a descriptor.
        let link = unsafe { bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr) }?;
        let mut attr = zeroed_attr();
        attr.iter_create.link_fd = link.as_raw_fd() as u32;
        // SAFETY: an iterator of that link; returns a descriptor.
        let iter = unsafe { bpf_fd(bpf_cmd::BPF_ITER_CREATE, &mut attr) }?;
        let mut out = Vec::new();
        std::fs::File::from(iter).read_to_end(&mut out)?;
        Ok(out.len() as u64)
    }

    fn load(&self, program: &[Insn]) -> io::Result<OwnedFd> {
        let license = CString::new("GPL").expect("no NUL");
        let mut log = vec![0u8; 64 * 1024];
        let mut attr = zeroed_attr();
        // SAFETY: the program-load member of the union; the pointers are to
        // buffers that outlive the call, with their lengths.
        let loaded = unsafe {
            let a = &mut attr.__bindgen_anon_3;
            a.prog_type = bpf_prog_type::BPF_PROG_TYPE_TRACING as u32;
            a.expected_attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
            a.attach_btf_id = self.iter_tcp;
            a.insns = program.as_ptr() as u64;
            a.insn_cnt = program.len() as u32;
            a.license = license.as_ptr() as u64;
            a.log_level = 1;
            a.log_buf = log.as_mut_ptr() as u64;
            a.log_size = log.len() as u32;
            bpf_fd(bpf_cmd::BPF_PROG_LOAD, &mut attr)
        };
        loaded.map_err(|e| {
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let tail = String::from_utf8_lossy(&log[end.saturating_sub(600)..end]).into_owned();
            io::Error::new(e.kind(), format!("loading the reset iterator: {e}: {tail}"))
        })
    }

    /// The iterator program: for an established socket whose destination
    /// (and port) is one of `targets`, that carried `min_bytes`, drawn with
    /// `chance`, destroy it and write one byte.
    fn program(&self, targets: &[Target], chance: u32, min_bytes: u64) -> Vec<Insn> {
        let o = self.offsets;
        let mut a = Asm::default();
        a.push(Insn::mov_reg(6, 1));
        a.push(Insn::load(Size::DW, 7, 6, o.ctx_sk_common));
        a.jump_imm(JEQ, 7, 0, OUT);
        a.push(Insn::load(Size::B, 2, 7, o.state));
        a.jump32_imm(JNE, 2, ESTABLISHED, OUT);
        a.push(Insn::load(Size::H, 2, 7, o.family));
        a.push(Insn::load(Size::H, 3, 7, o.dport));
        for (i, t) in targets.iter().enumerate() {
            let next = NEXT + i as u32;
            if t.port_mask != 0 {
                a.jump32_imm(JNE, 3, i32::from(t.port.to_be()), next);
            }
            // An IPv6 socket: the four words of its address (a v4-mapped
            // target matches v4-mapped addresses of dual-stack sockets).
            let v4 = NEXT + 1000 + i as u32;
            a.jump32_imm(JNE, 2, AF_INET6, v4);
            for w in 0..4 {
                a.push(Insn::load(Size::W, 4, 7, o.v6_daddr + 4 * w as i16));
                a.push(Insn::and32_imm(4, t.mask[w] as i32));
                a.jump32_imm(JNE, 4, t.addr[w] as i32, next);
            }
            a.jump(HIT);
            a.label(v4);
            // An IPv4 socket: only a target inside the v4-mapped space.
            let mapped = t.addr[..2] == [0, 0]
                && t.addr[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff])
                && t.mask[..3] == [u32::MAX; 3];
            if mapped {
                a.jump32_imm(JNE, 2, AF_INET, next);
                a.push(Insn::load(Size::W, 4, 7, o.daddr));
                a.push(Insn::and32_imm(4, t.mask[3] as i32));
                a.jump32_imm(JNE, 4, t.addr[3] as i32, next);
                a.jump(HIT);
            }
            a.label(next);
        }
        a.jump(OUT);
        a.label(HIT);
        if min_bytes != 0 {
            // The byte counts are the TCP socket's: through the cast helper
            // (a pointer the program may read, not pass on).
            a.push(Insn::mov_reg(1, 7));
            a.push(Insn::call(bpf_func_id::BPF_FUNC_skc_to_tcp_sock as i32));
            a.jump_imm(JEQ, 0, 0, OUT);
            a.push(Insn::load(Size::DW, 2, 0, o.bytes_received));
            a.push(Insn::load(Size::DW, 3, 0, o.bytes_acked));
            a.push(Insn::add_reg(2, 3));
            a.push_all(Insn::load_imm64(3, min_bytes));
            a.jump_reg(JLT, 2, 3, OUT);
        }
        if chance != chaos::ALWAYS {
            a.push(Insn::call(bpf_func_id::BPF_FUNC_get_prandom_u32 as i32));
            a.jump32_imm(JGE, 0, chance as i32, OUT);
        }
        // The iterator's socket is a trusted pointer (the kfunc takes no
        // other), locked by the iterator when it is a full socket; only an
        // established one gets here, and the kfunc refuses what is not TCP.
        a.push(Insn::mov_reg(1, 7));
        a.push(Insn::call_kfunc(self.sock_destroy as i32));
        a.jump_imm(JNE, 0, 0, OUT);
        a.push(Insn::load(Size::DW, 1, 6, o.ctx_meta));
        a.push(Insn::load(Size::DW, 1, 1, o.meta_seq));
        a.push(Insn::store_imm(Size::B, 10, -8, 1));
        a.push(Insn::mov_reg(2, 10));
        a.push(Insn::add_imm(2, -8));
        a.push(Insn::mov_imm(3, 1));
        a.push(Insn::call(bpf_func_id::BPF_FUNC_seq_write as i32));
        a.label(OUT);
        a.push(Insn::mov_imm(0, 0));
        a.push(Insn::exit());
        a.finish()
    }
}

/// Labels of [`Resetter::program`]: the end, a match, and per target the
/// next target (`NEXT + i`) and its IPv4 check (`NEXT + 1000 + i`).
const OUT: u32 = 0;
const HIT: u32 = 1;
const NEXT: u32 = 10;

/// Jump operations (`BPF_OP`).
const JEQ: u8 = 0x10;
const JGE: u8 = 0x30;
const JNE: u8 = 0x50;
const JLT: u8 = 0xa0;

#[derive(Clone, Copy)]
enum Size {
    W = 0x00,
    H = 0x08,
    B = 0x10,
    DW = 0x18,
}

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    /// `dst = *(size *)(src + off)` (`BPF_LDX | BPF_MEM`).
    const fn load(size: Size, dst: u8, src: u8, off: i16) -> Self {
        Self::new(0x61 | size as u8, dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm` (`BPF_ST | BPF_MEM`).
    const fn store_imm(size: Size, dst: u8, off: i16, imm: i32) -> Self {
        Self::new(0x62 | size as u8, dst, 0, off, imm)
    }

    const fn mov_reg(dst: u8, src: u8) -> Self {
        Self::new(0xbf, dst, src, 0, 0)
    }

    const fn mov_imm(dst: u8, imm: i32) -> Self {
        Self::new(0xb7, dst, 0, 0, imm)
    }

    const fn add_imm(dst: u8, imm: i32) -> Self {
        Self::new(0x07, dst, 0, 0, imm)
    }

    const fn add_reg(dst: u8, src: u8) -> Self {
        Self::new(0x0f, dst, src, 0, 0)
    }

    /// `dst = imm` on 64 bits: two instruction slots (`BPF_LD | BPF_IMM |
    /// BPF_DW`).
    const fn load_imm64(dst: u8, imm: u64) -> [Self; 2] {
        [
            Self::new(0x18, dst, 0, 0, imm as u32 as i32),
            Self::new(0, 0, 0, 0, (imm >> 32) as u32 as i32),
        ]
    }

    /// `w(dst) &= imm` (`BPF_ALU | BPF_AND | BPF_K`).
    const fn and32_imm(dst: u8, imm: i32) -> Self {
        Self::new(0x54, dst, 0, 0, imm)
    }

    const fn call(helper: i32) -> Self {
        Self::new(0x85, 0, 0, 0, helper)
    }

    /// A call of the kernel function with BTF id `id` (in vmlinux).
    const fn call_kfunc(id: i32) -> Self {
        Self::new(0x85, 0, PSEUDO_KFUNC_CALL, 0, id)
    }

    const fn exit() -> Self {
        Self::new(0x95, 0, 0, 0, 0)
    }
}

/// A straight-line assembler with forward jumps to labels.
#[derive(Default)]
struct Asm {
    insns: Vec<Insn>,
    /// Jumps to patch: (instruction index, label).
    jumps: Vec<(usize, u32)>,
    labels: std::collections::HashMap<u32, usize>,
}

impl Asm {
    fn push(&mut self, insn: Insn) {
        self.insns.push(insn);
    }

    fn push_all(&mut self, insns: impl IntoIterator<Item = Insn>) {
        self.insns.extend(insns);
    }

    /// `if dst <op> src goto label` on 64 bits (`BPF_JMP | op | BPF_X`).
    fn jump_reg(&mut self, op: u8, dst: u8, src: u8, label: u32) {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(Insn::new(0x0d | op, dst, src, 0, 0));
    }

    /// `if dst <op> imm goto label` on 64 bits (`BPF_JMP | op | BPF_K`).
    fn jump_imm(&mut self, op: u8, dst: u8, imm: i32, label: u32) {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(Insn::new(0x05 | op, dst, 0, 0, imm));
    }

    /// The same on the low 32 bits (`BPF_JMP32`), so that `imm` is compared
    /// unsigned as the 32-bit value it is.
    fn jump32_imm(&mut self, op: u8, dst: u8, imm: i32, label: u32) {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(Insn::new(0x06 | op, dst, 0, 0, imm));
    }

    fn jump(&mut self, label: u32) {
        self.jumps.push((self.insns.len(), label));
        self.insns.push(Insn::new(0x05, 0, 0, 0, 0));
    }

    fn label(&mut self, label: u32) {
        self.labels.insert(label, self.insns.len());
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in self.jumps {
            let to = self.labels[&label];
            self.insns[at].off = (to as i64 - at as i64 - 1) as i16;
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use enforcer_common::dest::DestKey;

    use super::*;

    fn resetter() -> Resetter {
        Resetter {
            iter_tcp: 1,
            sock_destroy: 2,
            offsets: Offsets {
                ctx_meta: 0,
                ctx_sk_common: 8,
                meta_seq: 0,
                family: 16,
                state: 18,
                dport: 12,
                daddr: 0,
                v6_daddr: 56,
                bytes_received: 100,
                bytes_acked: 108,
            },
        }
    }

    fn target(s: &str, bits: u32) -> Target {
        Target::prefix(&DestKey::from(s.parse::<SocketAddr>().unwrap()), bits)
    }

    #[test]
    fn every_jump_lands_inside_the_program_and_it_ends_with_exit() {
        let program = resetter().program(
            &[target("127.0.0.1:6379", 128), target("[fd00::]:0", 64)],
            chaos::chance(50.0),
            1 << 40,
        );
        assert_eq!(program.last().unwrap().code, 0x95);
        for (i, insn) in program.iter().enumerate() {
            if matches!(insn.code & 0x07, 0x05 | 0x06) && insn.code != 0x85 && insn.code != 0x95 {
                let to = i as i64 + 1 + i64::from(insn.off);
                assert!(
                    (0..program.len() as i64).contains(&to),
                    "jump at {i} to {to}"
                );
                assert!(to > i as i64, "only forward jumps: {i}");
            }
        }
        let kfunc = program
            .iter()
            .filter(|i| i.code == 0x85 && i.regs >> 4 == 2);
        assert_eq!(kfunc.map(|i| i.imm).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_port_target_compares_the_port_in_network_order_an_ipv6_one_no_ipv4() {
        let program = resetter().program(&[target("127.0.0.1:6379", 128)], chaos::ALWAYS, 0);
        let port = i32::from(6379u16.to_be());
        assert!(program.iter().any(|i| i.code == 0x56 && i.imm == port));
        assert!(
            !program.iter().any(|i| i.code == 0x85 && i.imm == 7),
            "no draw"
        );
        let v6 = resetter().program(&[target("[fd00::]:0", 64)], chaos::chance(10.0), 0);
        assert!(
            !v6.iter().any(|i| i.code == 0x56 && i.imm == AF_INET),
            "an IPv6 prefix matches no IPv4 socket"
        );
        assert!(v6.iter().any(|i| i.code == 0x85 && i.imm == 7), "a draw");
    }
}
