//! A private bpffs instance per test, so pins never touch anything shared.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// A fresh bpffs mounted on a temporary directory; unmounted and removed on drop.
pub struct PinDir {
    mount: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        crate::require_root();
        let mount = std::env::temp_dir().join(crate::unique_name("enforcer-bpffs-"));
        fs::create_dir(&mount).unwrap_or_else(|e| panic!("mkdir {}: {e}", mount.display()));
        // Each bpffs mount is a new, private instance.
        if let Err(err) = enforcer::bpf::pins::mount_bpffs(&mount) {
            let _ = fs::remove_dir(&mount);
            panic!("mounting bpffs on {}: {err}", mount.display());
        }
        Self { mount }
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        // Lazy unmount: pins vanish once no one holds them.
        let _ = rustix::mount::unmount(&self.mount, rustix::mount::UnmountFlags::DETACH);
        let _ = fs::remove_dir(&self.mount);
    }
}
