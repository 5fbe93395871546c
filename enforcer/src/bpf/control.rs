//! Running the kernel's `control` program: `BPF_PROG_TEST_RUN` with the command
//! as the test packet. The daemon changes a destination's state only through
//! it, under the destination's lock, never by writing `DESTS` itself. aya 0.14
//! does not run programs.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd, BorrowedFd},
};

use aya::{
    Ebpf,
    programs::{ProgramError, ProgramFd, ProgramInfo},
};
use enforcer_common::control::{Command, Reply};

use super::{
    BpfError,
    pins::PinDir,
    programs::CONTROL,
    syscall::{bpf, bpf_cmd, zeroed_attr},
};

/// What a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Moot in the destination's state (e.g. resetting a CLOSED destination).
    NotApplicable,
    NotFound,
}

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
pub fn test_run(program: BorrowedFd<'_>, data: &[u8], repeat: u32) -> io::Result<TestRun> {
    let mut data_in = data.to_vec();
    // Room for what a program may grow the packet to.
    let mut data_out = vec![0u8; data.len() + 256];
    let mut attr = zeroed_attr();
    attr.test.prog_fd = program.as_raw_fd() as u32;
    attr.test.data_size_in = data_in.len() as u32;
    attr.test.data_in = data_in.as_mut_ptr() as u64;
    attr.test.data_size_out = data_out.len() as u32;
    attr.test.data_out = data_out.as_mut_ptr() as u64;
    attr.test.repeat = repeat;
    // SAFETY: the input and output buffers outlive the call, and
    // `data_size_out` says how much the kernel may write.
    unsafe { bpf(bpf_cmd::BPF_PROG_TEST_RUN, &mut attr) }?;
    // SAFETY: the kernel wrote its answer into the member set above.
    let test = unsafe { attr.test };
    data_out.truncate(test.data_size_out as usize);
    Ok(TestRun {
        retval: test.retval,
        data_out,
        duration_ns: test.duration,
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
        let retval = test_run(self.0.as_fd(), &command.to_bytes(), 1)
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
