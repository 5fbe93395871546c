//! `bpf(2)` for the commands aya 0.14 does not expose: batch lookups, test runs
//! of a program by descriptor, and the programs attached to a cgroup. rustix
//! and nix do not cover `bpf(2)` at all; the attribute is aya-obj's binding of
//! the kernel's `union bpf_attr`, so no layout is kept by hand here.

use std::{
    io,
    os::fd::{FromRawFd, OwnedFd},
};

pub use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd, bpf_prog_type};

/// An all-zero attribute: every field the kernel reads and the command does not
/// set must be zero (the kernel refuses non-zero bytes past what it knows).
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a C union of integers; all-zero is a valid value of
    // every member.
    unsafe { std::mem::zeroed() }
}

/// Runs `cmd` with `attr`; the kernel's answer is written back into `attr`.
///
/// # Safety
/// `attr` must hold the fields `cmd` reads, and every pointer in it must be
/// valid, for the length the attribute gives, for what the kernel reads or
/// writes during the call.
pub unsafe fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<()> {
    // SAFETY: passed on from the caller.
    unsafe { raw(cmd, attr) }.map(drop)
}

/// As [`bpf`], for the commands that return a new descriptor (a program
/// load, a link).
///
/// # Safety
/// As [`bpf`]; `cmd` must be a command that returns a descriptor.
pub unsafe fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<OwnedFd> {
    // SAFETY: passed on from the caller.
    let fd = unsafe { raw(cmd, attr) }?;
    // SAFETY: the kernel returned a new descriptor, owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `bpf(2)`: the kernel's return value, or its error.
///
/// # Safety
/// As [`bpf`].
unsafe fn raw(cmd: bpf_cmd, attr: &mut bpf_attr) -> io::Result<libc::c_long> {
    // SAFETY: the caller vouches for the attribute's contents; its size is the
    // binding's, which the kernel accepts from any newer or older header.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            size_of::<bpf_attr>() as u32,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}
