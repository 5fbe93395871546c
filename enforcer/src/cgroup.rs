//! Finding the cgroup v2 hierarchy.
//!
//! Hybrid hosts mount cgroup v2 at `/sys/fs/cgroup/unified`, unified hosts at
//! `/sys/fs/cgroup`; the mount table is the only reliable source.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

/// Where the cgroup v2 hierarchy is mounted, read from `/proc/mounts`.
pub fn v2_mount() -> io::Result<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts")?;
    v2_mount_in(&mounts).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup2 file system in /proc/mounts (enforcer needs cgroup v2)",
        )
    })
}

/// The first `cgroup2` mount point in a `/proc/mounts`-formatted text.
pub fn v2_mount_in(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_ascii_whitespace();
        let (_dev, dir, fstype) = (fields.next()?, fields.next()?, fields.next()?);
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mount_path(dir)))
    })
}

/// `/proc/mounts` escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The id (the directory's inode) and level (its depth below the cgroup v2
/// mount) of the cgroup at `path`, as `bpf_get_current_ancestor_cgroup_id`
/// compares them; `None` when `path` is not a cgroup v2 directory.
pub fn scope(path: &Path) -> Option<(u64, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    let root = v2_mount().ok()?;
    if !is_v2_dir(path) {
        return None;
    }
    let level = path.strip_prefix(&root).ok()?.components().count() as u32;
    let id = std::fs::metadata(path).ok()?.ino();
    Some((id, level))
}

/// Whether `path` is a directory of a cgroup v2 hierarchy.
pub fn is_v2_dir(path: &Path) -> bool {
    path.join("cgroup.procs").is_file() && path.join("cgroup.controllers").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_host() {
        let mounts = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
        assert_eq!(
            v2_mount_in(mounts),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn unified_host() {
        let mounts = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec 0 0\n";
        assert_eq!(v2_mount_in(mounts), Some(PathBuf::from("/sys/fs/cgroup")));
    }

    #[test]
    fn v1_only_host() {
        let mounts = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n";
        assert_eq!(v2_mount_in(mounts), None);
    }

    #[test]
    fn escaped_mount_point() {
        let mounts = "cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n";
        assert_eq!(v2_mount_in(mounts), Some(PathBuf::from("/mnt/my cgroups")));
    }
}
