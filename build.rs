//! Build script: stamps `vmscaler --version` with the git revision the binary was built from.
//!
//! Sets `VMSCALER_VERSION` to `<crate version> (<rev>)`. The revision comes from
//! `VMSCALER_GIT_REV` when set (a packager building from a tarball can pass it), else from
//! `git rev-parse` when the source is a git checkout, else it reads `unknown revision`: a
//! packaged source without `.git` or a machine without git still builds. Reruns only when
//! HEAD or the branch it points to moves, never on index changes, so an ordinary edit-build
//! cycle does not rebuild the crate for it. It deliberately does not mark a dirty tree.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Files whose change means HEAD moved: HEAD itself, the ref it names, and packed-refs.
fn watch_git_files() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]) else {
        return;
    };
    let git_dir = PathBuf::from(git_dir);
    let mut files = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Some(head_ref) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|r| r.starts_with("refs/")) {
        // A linked worktree keeps branch refs in the common directory.
        let common = git(&["rev-parse", "--git-common-dir"]).map_or_else(|| git_dir.clone(), PathBuf::from);
        files.push(common.join(head_ref));
    }
    for f in files.iter().filter(|f| Path::new(f).exists()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=VMSCALER_GIT_REV");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| "0.0.0".to_owned());
    let rev = match std::env::var("VMSCALER_GIT_REV") {
        Ok(rev) if !rev.trim().is_empty() => Some(rev.trim().to_owned()),
        _ => {
            watch_git_files();
            git(&["rev-parse", "--short=12", "HEAD"])
        }
    };
    let rev = rev.map_or_else(|| "unknown revision".to_owned(), |r| format!("git {r}"));
    println!("cargo:rustc-env=VMSCALER_VERSION={version} ({rev})");
}
