//! Notices changes in the policy directory by polling: names, sizes and modification times of
//! its entries. Polling every few seconds is cheap for a directory of policy files, works on
//! every filesystem (including bind mounts and config-management symlink swaps), and needs no
//! extra crate.
//!
//! Not here: reading or validating the files (the daemon reloads them when this says so).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One entry as last seen.
type Entry = (PathBuf, u64, Option<SystemTime>);

/// Fingerprint of a directory's entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirFingerprint(Option<Vec<Entry>>);

impl DirFingerprint {
    /// Reads the fingerprint now; an unreadable directory has a fingerprint of its own, so it
    /// disappearing or coming back counts as a change.
    pub fn of(dir: &Path) -> DirFingerprint {
        let Ok(rd) = fs::read_dir(dir) else { return DirFingerprint(None) };
        let mut entries: Vec<Entry> = rd
            .filter_map(Result::ok)
            .map(|e| {
                let path = e.path();
                // Follow symlinks: a config tool swapping a link target is a change.
                let meta = fs::metadata(&path).ok();
                let len = meta.as_ref().map_or(0, fs::Metadata::len);
                let mtime = meta.and_then(|m| m.modified().ok());
                (path, len, mtime)
            })
            .collect();
        entries.sort();
        DirFingerprint(Some(entries))
    }
}

/// Polls one directory.
#[derive(Debug)]
pub struct DirWatcher {
    dir: PathBuf,
    last: DirFingerprint,
}

impl DirWatcher {
    pub fn new(dir: &Path) -> DirWatcher {
        DirWatcher { dir: dir.to_owned(), last: DirFingerprint::of(dir) }
    }

    /// Whether anything changed since the last call (or since creation).
    pub fn changed(&mut self) -> bool {
        let now = DirFingerprint::of(&self.dir);
        if now == self.last {
            false
        } else {
            self.last = now;
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_new_changed_and_removed_files() {
        let d = std::env::temp_dir().join(format!("vmscaler-watch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir");
        let mut w = DirWatcher::new(&d);
        assert!(!w.changed());
        fs::write(d.join("a.yaml"), "x").expect("write");
        assert!(w.changed());
        assert!(!w.changed());
        fs::write(d.join("a.yaml"), "xy").expect("write");
        assert!(w.changed(), "size change");
        fs::remove_file(d.join("a.yaml")).expect("rm");
        assert!(w.changed());
        fs::remove_dir_all(&d).expect("rmdir");
        assert!(w.changed(), "directory gone");
    }
}
