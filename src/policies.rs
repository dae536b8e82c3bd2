//! Loading policy files from disk: the I/O half of validation.
//!
//! Reads `*.yaml`/`*.yml` files (a directory's direct children, sorted by name), hands each
//! text to the engine's pure `parse_policy`, then checks the set as a whole (unique names, no
//! pool claimed twice). An unreadable file or directory becomes a diagnostic naming it, never
//! a panic. Not here: deciding what to do with a bad file (the daemon keeps the last good
//! version; `validate` exits 78).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use vmscaler_engine::Policy;
use vmscaler_engine::policy::{Diagnostic, PolicyReport, Severity, check_policy_set, parse_policy_at};

/// Policies that validated, and every diagnostic of every file.
#[derive(Debug, Default)]
pub struct LoadedSet {
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Each valid policy with its file. A file with errors contributes none.
    pub policies: Vec<(PathBuf, Policy)>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedSet {
    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error).count()
    }

    pub fn warning_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning).count()
    }
}

fn io_diag(path: &Path, what: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: path.display().to_string(),
        line: 1,
        column: 1,
        field: String::new(),
        message: format!("cannot {what}: {e}"),
    }
}

fn is_policy_file(p: &Path) -> bool {
    p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Reads and validates one file.
pub fn load_file(path: &Path) -> PolicyReport {
    load_file_at(path, None)
}

/// [`load_file`], also judging its windows against `now` (see `parse_policy_at`).
pub fn load_file_at(path: &Path, now: Option<Timestamp>) -> PolicyReport {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_policy_at(&path.display().to_string(), &text, now),
        Err(e) => PolicyReport { policy: None, diagnostics: vec![io_diag(path, "read policy file", &e)] },
    }
}

/// The policy files a path stands for: itself, or a directory's `*.yaml`/`*.yml` children.
pub fn policy_files(path: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| io_diag(path, "read policy directory", &e))?;
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_policy_file(p)).collect();
        files.sort();
        Ok(files)
    } else {
        match std::fs::metadata(path) {
            Ok(_) => Ok(vec![path.to_path_buf()]),
            Err(e) => Err(io_diag(path, "read", &e)),
        }
    }
}

/// Loads every policy file under `paths` (files or directories) and checks them as one set.
pub fn load_paths(paths: &[PathBuf]) -> LoadedSet {
    load_paths_at(paths, None, &[])
}

/// Like [`load_paths`], also warning about windows already over and crons that do not fire
/// within a year of `now` (when given). Of two files that collide (same name, overlapping
/// pools), one of `incumbents` (the files the daemon is running) keeps its place and the other
/// is rejected, whatever their names: a new file never takes a running pool.
pub fn load_paths_at(paths: &[PathBuf], now: Option<Timestamp>, incumbents: &[PathBuf]) -> LoadedSet {
    let mut set = LoadedSet::default();
    for path in paths {
        match policy_files(path) {
            Ok(files) => set.files.extend(files),
            Err(d) => set.diagnostics.push(d),
        }
    }
    for file in &set.files {
        let report = load_file_at(file, now);
        set.diagnostics.extend(report.diagnostics);
        if let Some(p) = report.policy {
            set.policies.push((file.clone(), p));
        }
    }
    let names: Vec<String> = set.policies.iter().map(|(f, _)| f.display().to_string()).collect();
    let mut pairs: Vec<(&str, &Policy)> =
        names.iter().map(String::as_str).zip(set.policies.iter().map(|(_, p)| p)).collect();
    // Incumbents first (stable: otherwise in file order), so a collision names the newcomer.
    pairs.sort_by_key(|(f, _)| !incumbents.iter().any(|i| i.as_os_str() == std::ffi::OsStr::new(f)));
    let cross = check_policy_set(&pairs);
    // A policy that collides with an earlier one is dropped from the runnable set.
    let bad: Vec<String> = cross.iter().map(|d| d.file.clone()).collect();
    set.diagnostics.extend(cross);
    set.policies.retain(|(f, _)| !bad.contains(&f.display().to_string()));
    set
}

/// Loads one directory (the daemon's `policy_dir`).
pub fn load_dir(dir: &Path) -> LoadedSet {
    load_paths(&[dir.to_path_buf()])
}

/// Loads one directory, `incumbents` winning collisions (see [`load_paths_at`]).
pub fn load_dir_preferring(dir: &Path, incumbents: &[PathBuf]) -> LoadedSet {
    load_paths_at(&[dir.to_path_buf()], None, incumbents)
}
