//! Running the kernel's `control` program: `BPF_PROG_TEST_RUN` with the command
//! as the test packet. The daemon changes a destination's state only through
//! it, under the destination's lock, never by writing `DESTS` itself.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd},
};

use aya::{
    Ebpf,
    programs::{ProgramError, ProgramFd, ProgramInfo},
};
use enforcer_common::control::{Command, Reply};

use super::{BpfError, pins::PinDir, programs::CONTROL};

/// What a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Moot in the destination's state (e.g. resetting a CLOSED destination).
    NotApplicable,
    NotFound,
}

/// `union bpf_attr` for `BPF_PROG_TEST_RUN` (`test`), up to the fields we use.
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// A raw `bpf(2)` through libc: aya 0.14 does not run programs, and rustix and
/// nix do not cover `bpf(2)` at all.
const BPF_PROG_TEST_RUN: libc::c_long = 10;

/// What one `BPF_PROG_TEST_RUN` returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (of its last run).
    pub retval: u32,
    /// The packet as the program left it.
    pub data_out: Vec<u8>,
    /// Mean time per run, in nanoseconds, as the kernel measured it.
    pub duration_ns: u32,
}

/// Runs `program` on `data` `repeat` times (the kernel's own loop; `repeat` 0
/// counts as 1).
pub fn test_run(program: &ProgramFd, data: &[u8], repeat: u32) -> io::Result<TestRun> {
    let mut data_in = data.to_vec();
    // Room for what a program may grow the packet to.
    let mut data_out = vec![0u8; data.len() + 256];
    let mut attr = TestRunAttr {
        prog_fd: program.as_fd().as_raw_fd() as u32,
        data_size_in: data_in.len() as u32,
        data_in: data_in.as_mut_ptr() as u64,
        data_size_out: data_out.len() as u32,
        data_out: data_out.as_mut_ptr() as u64,
        repeat,
        ..TestRunAttr::default()
    };
    // SAFETY: bpf(2) with a correctly laid out attribute for this command and
    // buffers that outlive the call (`data_size_out` says how big the output is).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_TEST_RUN,
            &raw mut attr,
            size_of::<TestRunAttr>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    data_out.truncate(attr.data_size_out as usize);
    Ok(TestRun {
        retval: attr.retval,
        data_out,
        duration_ns: attr.duration,
    })
}

/// The control program, loaded by this process or adopted from its pin.
pub struct Control(ProgramFd);

impl Control {
    /// The control program of a loaded object: a descriptor of its own, which
    /// outlives `ebpf`'s borrow.
    pub(super) fn loaded(ebpf: &Ebpf) -> Result<Self, BpfError> {
        let name = CONTROL.name;
        let program = ebpf
            .program(name)
            .ok_or(BpfError::ProgramMissing { name })?;
        program
            .fd()
            .and_then(|fd| fd.try_clone().map_err(ProgramError::IOError))
            .map(Self)
            .map_err(|source| BpfError::Program { name, source })
    }

    /// The control program pinned in `pins`.
    pub(super) fn pinned(pins: &PinDir) -> Result<Self, BpfError> {
        let name = CONTROL.name;
        ProgramInfo::from_pin(pins.program(name))
            .and_then(|info| info.fd())
            .map(Self)
            .map_err(|source| BpfError::Program { name, source })
    }

    /// Runs `command` in the kernel: on one destination under its lock, on a
    /// flow, or on a policy's shared counts (see
    /// `enforcer_common::control::Command`'s constructors).
    pub fn run(&self, command: &Command) -> Result<Applied, BpfError> {
        let run_err = |source| BpfError::Run {
            name: CONTROL.name,
            source,
        };
        let retval = test_run(&self.0, &command.to_bytes(), 1)
            .map_err(run_err)?
            .retval;
        match Reply::from_raw(retval) {
            Some(Reply::Applied) => Ok(Applied::Applied),
            Some(Reply::NotApplicable) => Ok(Applied::NotApplicable),
            Some(Reply::NotFound) => Ok(Applied::NotFound),
            Some(Reply::Invalid) | None => Err(run_err(io::Error::other(format!(
                "control program returned {retval}"
            )))),
        }
    }
}
