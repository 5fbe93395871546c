//! The directories the daemon keeps files in (`daemon.state_dir`, the control
//! socket's) must be its own. In a directory another user owns or may write
//! to, that user could swap the daemon's files for links to anywhere (and
//! root would write through them) or put a socket of their own where the CLI
//! connects. Such a directory is refused at start, before anything changes;
//! files in it are written 0600, through no link, and replaced whole.

use std::{
    fs::{self, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

/// What is wrong with a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    NotADirectory,
    /// Owned by another user than the daemon's effective one.
    ForeignOwned {
        uid: u32,
    },
    /// Every user may create, replace and remove entries in it.
    WorldWritable {
        mode: u32,
    },
}

/// What [`judge`] looks at: the path itself (a link is not followed) and,
/// for a link, what it leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub is_dir: bool,
    pub uid: u32,
    pub mode: u32,
    /// The owner of the link, when the path is one.
    pub link_uid: Option<u32>,
}

/// Whether a directory with `facts` is the daemon's own (`euid`'s).
pub fn judge(facts: Facts, euid: u32) -> Result<(), Problem> {
    if let Some(uid) = facts.link_uid.filter(|uid| *uid != euid) {
        // Whoever owns the link decides where it leads.
        return Err(Problem::ForeignOwned { uid });
    }
    if !facts.is_dir {
        return Err(Problem::NotADirectory);
    }
    if facts.uid != euid {
        return Err(Problem::ForeignOwned { uid: facts.uid });
    }
    if facts.mode & 0o002 != 0 {
        return Err(Problem::WorldWritable {
            mode: facts.mode & 0o7777,
        });
    }
    Ok(())
}

/// A directory the daemon refuses, naming the configuration field.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{field}: {}: {}", path.display(), explain(*problem, *euid))]
    Refused {
        field: &'static str,
        path: PathBuf,
        problem: Problem,
        euid: u32,
    },
    #[error("{field}: {}: {source}", path.display())]
    Io {
        field: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn explain(problem: Problem, euid: u32) -> String {
    let why =
        "the daemon keeps its files only in a directory of its own that no other user can write to";
    match problem {
        Problem::NotADirectory => "not a directory".to_owned(),
        Problem::ForeignOwned { uid } => {
            format!("owned by uid {uid}, not by the daemon (uid {euid}): {why}")
        }
        Problem::WorldWritable { mode } => {
            format!("writable by every user (mode {mode:04o}): {why}")
        }
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses `dir` unless it is the daemon's own; a directory that does not
/// exist yet is fine (the daemon creates it 0700 when it needs it).
pub fn check(dir: &Path, field: &'static str) -> Result<(), DirError> {
    let io = |source| DirError::Io {
        field,
        path: dir.to_owned(),
        source,
    };
    let link = match fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let target = if link.file_type().is_symlink() {
        fs::metadata(dir).map_err(io)?
    } else {
        link.clone()
    };
    let facts = Facts {
        is_dir: target.is_dir(),
        uid: target.uid(),
        mode: target.mode(),
        link_uid: link.file_type().is_symlink().then(|| link.uid()),
    };
    let euid = euid();
    judge(facts, euid).map_err(|problem| DirError::Refused {
        field,
        path: dir.to_owned(),
        problem,
        euid,
    })
}

/// Creates `dir` (and what is missing above it) 0700 unless it exists, then
/// checks it: it may have appeared since the start.
pub fn create(dir: &Path, field: &'static str) -> Result<(), DirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| DirError::Io {
            field,
            path: dir.to_owned(),
            source,
        })?;
    check(dir, field)
}

/// Replaces `path` with `bytes`, mode 0600: written to a new temporary file
/// beside it (`O_CREAT|O_EXCL|O_NOFOLLOW`: never through a link, never into a
/// file someone else opened) and renamed over it, so that a reader sees the
/// old file or the new one, never half of one, and a link at `path` is
/// replaced, not followed.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // One left by a crash, or put there: unlinking removes a link, never
    // what it leads to.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

/// Reads `path`, refusing a link (`O_NOFOLLOW`).
pub fn read_file(path: &Path) -> io::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    const DIR: Facts = Facts {
        is_dir: true,
        uid: 0,
        mode: 0o040_755,
        link_uid: None,
    };

    #[test]
    fn only_a_directory_of_the_daemons_own_that_others_cannot_write_passes() {
        assert_eq!(judge(DIR, 0), Ok(()));
        assert_eq!(
            judge(
                Facts {
                    mode: 0o040_700,
                    ..DIR
                },
                0
            ),
            Ok(())
        );
        assert_eq!(
            judge(
                Facts {
                    mode: 0o041_777,
                    ..DIR
                },
                0
            ),
            Err(Problem::WorldWritable { mode: 0o1777 }),
            "sticky /tmp too: anyone may create what the daemon would open"
        );
        assert_eq!(
            judge(Facts { uid: 65534, ..DIR }, 0),
            Err(Problem::ForeignOwned { uid: 65534 })
        );
        assert_eq!(
            judge(
                Facts {
                    is_dir: false,
                    ..DIR
                },
                0
            ),
            Err(Problem::NotADirectory)
        );
        assert_eq!(
            judge(
                Facts {
                    link_uid: Some(1000),
                    ..DIR
                },
                0
            ),
            Err(Problem::ForeignOwned { uid: 1000 }),
            "a link another user owns"
        );
        assert_eq!(
            judge(
                Facts {
                    link_uid: Some(0),
                    ..DIR
                },
                0
            ),
            Ok(())
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("enforcer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        dir
    }

    #[test]
    fn a_refusal_names_the_field_the_path_and_the_mode() {
        let dir = scratch("open-dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check(&dir, "daemon.state_dir").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "daemon.state_dir: {}: writable by every user (mode 0777)",
                dir.display()
            )),
            "{e}"
        );
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        check(&dir, "daemon.state_dir").unwrap();
        check(&dir.join("not-yet"), "daemon.state_dir").unwrap();
        create(&dir.join("a/b"), "daemon.state_dir").unwrap();
        // Nothing for group or others, whatever umask another test set.
        let mode = fs::metadata(dir.join("a/b")).unwrap().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_are_replaced_0600_and_never_written_through_a_link() {
        let dir = scratch("replace");
        let victim = dir.join("victim");
        fs::write(&victim, "untouched").unwrap();
        let file = dir.join("policies.toml");
        // A link where the temporary file goes, and one where the file goes.
        symlink(&victim, dir.join("policies.toml.tmp")).unwrap();
        symlink(&victim, &file).unwrap();
        replace_file(&file, b"new").unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "untouched");
        let meta = fs::symlink_metadata(&file).unwrap();
        assert!(meta.file_type().is_file(), "the link was replaced");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(read_file(&file).unwrap(), "new");
        assert!(!dir.join("policies.toml.tmp").exists());
        // Reading refuses a link.
        let linked = dir.join("linked.toml");
        symlink(&victim, &linked).unwrap();
        assert_eq!(
            read_file(&linked).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
