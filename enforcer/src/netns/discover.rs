//! Finding the network namespaces of the host — every process's
//! (`/proc/PID/ns/net`) and every named one (`/run/netns/NAME`), one per inode
//! — and learning their cookies.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::{NAMED_DIR, enter, own_cookie};

/// A namespace found on the host: a file that leads to it, and its names.
#[derive(Debug)]
pub struct Found {
    pub path: PathBuf,
    pub names: Vec<String>,
}

/// The namespace files of the host by inode. `nsfs_dev` is the device of
/// namespace files: a file in /run/netns that is not a bind mount of one (a
/// half-done `ip netns add`) is left out.
pub fn namespace_files(nsfs_dev: u64) -> BTreeMap<u64, Found> {
    let mut found: BTreeMap<u64, Found> = BTreeMap::new();
    let inode_of = |path: &Path| {
        fs::metadata(path)
            .ok()
            .filter(|m| m.dev() == nsfs_dev)
            .map(|m| m.ino())
    };
    // Named ones first, so a named namespace is opened through its name
    // (which, unlike a pid, cannot come to mean another namespace).
    let mut named: Vec<(String, PathBuf)> = entries(Path::new(NAMED_DIR))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    named.sort();
    for (name, path) in named {
        if let Some(inode) = inode_of(&path) {
            found
                .entry(inode)
                .or_insert_with(|| Found {
                    path,
                    names: Vec::new(),
                })
                .names
                .push(name);
        }
    }
    for entry in entries(Path::new("/proc")) {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if !is_pid {
            continue;
        }
        let path = entry.path().join("ns/net");
        // Processes come and go (and kernel threads have no namespace to
        // show): whatever cannot be read is simply not there.
        if let Some(inode) = inode_of(&path) {
            found.entry(inode).or_insert_with(|| Found {
                path,
                names: Vec::new(),
            });
        }
    }
    found
}

fn entries(dir: &Path) -> impl Iterator<Item = fs::DirEntry> {
    fs::read_dir(dir).into_iter().flatten().flatten()
}

/// Opens the namespace file `path`, if it still leads to the namespace with
/// `inode` (a process may have exited, and its pid been taken, since).
pub fn open(path: &Path, inode: u64) -> Option<File> {
    let file = File::open(path).ok()?;
    (file.metadata().ok()?.ino() == inode).then_some(file)
}

/// What entering a namespace taught: its cookie, or why not.
pub type Learned = (u64, File, io::Result<u64>);

/// Learns the cookie of each namespace `(inode, handle)` on a thread of its
/// own that enters them in turn and ends after the last.
pub fn learn_cookies(handles: Vec<(u64, File)>) -> io::Result<Vec<Learned>> {
    if handles.is_empty() {
        return Ok(Vec::new());
    }
    std::thread::Builder::new()
        .name("enforcer-netns".into())
        .spawn(move || {
            handles
                .into_iter()
                .map(|(inode, handle)| {
                    let cookie = enter(&handle).and_then(|()| own_cookie());
                    (inode, handle, cookie)
                })
                .collect()
        })?
        .join()
        .map_err(|_| io::Error::other("the thread learning namespace cookies panicked"))
}
