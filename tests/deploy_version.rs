//! `build.rs`, which stamps `vmscaler --version` with the git revision, compiled on its own and
//! run where a packager would run it: outside any git checkout (a source tarball), with
//! `VMSCALER_GIT_REV` given, and inside this checkout.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Compiles build.rs into `dir` and returns the executable.
fn compile_build_script(dir: &Path) -> PathBuf {
    let exe = dir.join("build-script");
    let out = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned()))
        .args(["--edition", "2024", "-o"])
        .arg(&exe)
        .arg(Path::new(ROOT).join("build.rs"))
        .output()
        .expect("run rustc");
    assert!(out.status.success(), "rustc build.rs: {}", String::from_utf8_lossy(&out.stderr));
    exe
}

/// Runs the build script in `cwd` and returns the VMSCALER_VERSION it sets.
fn version_from(exe: &Path, cwd: &Path, git_rev: Option<&str>) -> String {
    let mut cmd = Command::new(exe);
    cmd.current_dir(cwd).env("CARGO_PKG_VERSION", "9.8.7").env_remove("VMSCALER_GIT_REV");
    // Outside the checkout git must not find this repository through the environment.
    cmd.env_remove("GIT_DIR").env_remove("GIT_WORK_TREE").env("GIT_CEILING_DIRECTORIES", cwd.parent().unwrap());
    if let Some(rev) = git_rev {
        cmd.env("VMSCALER_GIT_REV", rev);
    }
    let out = cmd.output().expect("run build script");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("cargo:rustc-env=VMSCALER_VERSION="))
        .unwrap_or_else(|| panic!("no VMSCALER_VERSION in {stdout}"))
        .to_owned()
}

#[test]
fn version_falls_back_gracefully_without_git_and_honours_an_explicit_revision() {
    let dir = std::env::temp_dir().join(format!("vmscaler-buildrs-{}", std::process::id()));
    let tarball = dir.join("vmscaler-9.8.7");
    std::fs::create_dir_all(&tarball).unwrap();
    let exe = compile_build_script(&dir);

    assert_eq!(version_from(&exe, &tarball, None), "9.8.7 (unknown revision)");
    assert_eq!(version_from(&exe, &tarball, Some("deadbeef1234")), "9.8.7 (git deadbeef1234)");
    if Path::new(ROOT).join(".git").exists() {
        let v = version_from(&exe, Path::new(ROOT), None);
        let rev = v.strip_prefix("9.8.7 (git ").and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| panic!("{v}"));
        assert!(rev.len() == 12 && rev.chars().all(|c| c.is_ascii_hexdigit()), "{v}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
