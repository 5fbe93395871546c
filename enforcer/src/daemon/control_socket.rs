//! Binding the control socket so that no other user can connect to it, not
//! even for an instant: its directory is the daemon's own (created 0700 when
//! missing, refused when another user owns it or every user may write to it),
//! and the socket is born 0600 — bound under a umask that leaves nothing to
//! group or others, instead of being bound and then narrowed.

use std::{io, os::unix::net::UnixListener, path::Path};

use rustix::{fs::Mode, process::umask};

use super::private_dir;

/// The permission bits no new socket or file of the daemon's gets while the
/// socket is bound: group and others nothing, the owner no execute.
const BIND_UMASK: Mode = Mode::from_bits_truncate(0o177);

/// Binds the control socket at `path` (blocking; turned non-blocking for
/// the runtime). A stale socket file (nobody listening) is replaced; a live
/// one means another daemon. Call it before any other thread runs: the umask
/// is the process's.
pub fn bind(path: &Path) -> io::Result<(UnixListener, SocketFile)> {
    if let Some(parent) = path.parent() {
        private_dir::create(parent, "daemon.socket")
            .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e))?;
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another enforcer daemon answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = with_umask(BIND_UMASK, || UnixListener::bind(path))?;
    let file = SocketFile(path.to_owned());
    listener.set_nonblocking(true)?;
    Ok((listener, file))
}

/// The bound socket's file, removed when dropped: a start that fails after
/// binding, and every exit, leave no socket file behind.
#[derive(Debug)]
pub struct SocketFile(std::path::PathBuf);

impl SocketFile {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `f` with the process's umask set to `mask`, then puts it back.
fn with_umask<T>(mask: Mode, f: impl FnOnce() -> T) -> T {
    let old = umask(mask);
    let result = f();
    umask(old);
    result
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn the_socket_is_born_0600_whatever_the_umask() {
        let dir = std::env::temp_dir().join(format!("enforcer-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("run/enforcer.sock");
        // The most permissive umask there is: without the bind's own, the
        // socket would be born 0777.
        let bound = with_umask(Mode::empty(), || bind(&path)).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700, "created 0700");
        // Rebinding over a live socket is refused; over a stale one it works.
        let e = bind(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        drop(bound.0);
        let rebound = bind(&path).unwrap();
        drop(rebound);
        assert!(!path.exists(), "removed with its SocketFile");
        std::mem::forget(bound.1);
        // A directory every user may write to is refused, naming the field.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let open = dir.join("x.sock");
        let e = bind(&open).unwrap_err().to_string();
        assert!(
            e.starts_with("daemon.socket: ") && e.contains("writable by every user"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
