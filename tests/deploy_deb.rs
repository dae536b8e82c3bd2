//! The Debian package: `scripts/build-deb.sh --profile dev --no-build` packages the debug binary
//! this test run was built with, `dpkg-deb -x` installs it into a scratch root, and the
//! installed files are checked: binary, unit (hardening exposure <= 2.0 by `systemd-analyze
//! security --offline=yes`), the config as a conffile, example policies, completions, man
//! pages, and maintainer scripts that create the service user and drive systemd.
//!
//! The first run installs cargo-deb (pinned) into target/tools, which needs crates.io and a
//! few minutes; later runs reuse it. Maintainer scripts are checked by `sh -n` and content,
//! not executed: that needs a real system (see the README's install section).

// Helpers outside #[test] fns unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use vmscaler::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Installed {
    deb: PathBuf,
    root: PathBuf,
    control: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package once per test process (tests run in parallel and share it).
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        let bin = Path::new(env!("CARGO_BIN_EXE_vmscaler"));
        assert!(bin.ends_with("debug/vmscaler"), "this test packages the dev-profile binary, got {}", bin.display());
        let stdout =
            run(Command::new(Path::new(ROOT).join("scripts/build-deb.sh")).args(["--profile", "dev", "--no-build"]));
        let deb = PathBuf::from(stdout.lines().last().expect("build-deb.sh prints the package path").trim());
        assert!(deb.is_file(), "{} missing", deb.display());
        deb
    })
}

fn build_and_extract(name: &str) -> Installed {
    let deb = package().to_path_buf();
    let scratch = std::env::temp_dir().join(format!("vmscaler-deb-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let (root, control) = (scratch.join("root"), scratch.join("control"));
    std::fs::create_dir_all(&scratch).unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    Installed { deb, root, control }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn unit_path(root: &Path) -> PathBuf {
    ["usr/lib/systemd/system/vmscaler.service", "lib/systemd/system/vmscaler.service"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no vmscaler.service under {}", root.display()))
}

#[test]
fn deb_installs_binary_unit_config_policies_completions_and_man_pages() {
    let Installed { deb, root, control } = build_and_extract("files");

    // The binary runs from the scratch root and knows its revision.
    let bin = root.join("usr/bin/vmscaler");
    let version = run(Command::new(&bin).arg("--version"));
    assert!(version.starts_with(&format!("vmscaler {} (", env!("CARGO_PKG_VERSION"))), "{version}");

    // The config is a conffile, valid, and safe by default.
    let conffiles = read(&control.join("conffiles"));
    assert!(conffiles.lines().any(|l| l == "/etc/vmscaler/vmscaler.yaml"), "{conffiles}");
    let cfg = Config::load(&root.join("etc/vmscaler/vmscaler.yaml")).expect("installed config parses");
    assert!(cfg.dry_run, "a fresh install must not change fleets until the operator goes live");
    assert_eq!(cfg.policy_dir, PathBuf::from("/etc/vmscaler/policies"));

    // Example policies validate with the installed binary, and so does their IAM policy.
    let examples = root.join("usr/share/vmscaler/policies");
    let shipped = vmscaler::policies::load_dir(&Path::new(ROOT).join("policies"));
    let installed = vmscaler::policies::load_dir(&examples);
    assert_eq!(installed.error_count(), 0, "{:?}", installed.diagnostics);
    assert_eq!(installed.policies.len(), shipped.policies.len());
    run(Command::new(&bin).arg("validate").arg(&examples).arg("--deny-warnings"));
    let iam = run(Command::new(&bin).args(["iam-policy", "--policies"]).arg(&examples));
    assert_eq!(iam, read(&root.join("usr/share/doc/vmscaler/examples/vmscaler-iam-policy.json")));

    // The unit starts the installed binary.
    let unit = read(&unit_path(&root));
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    assert!(exec.starts_with("/usr/bin/vmscaler run --config /etc/vmscaler/vmscaler.yaml"), "{exec}");

    // Completions and man pages, generated from the CLI definition.
    let bash = read(&root.join("usr/share/bash-completion/completions/vmscaler"));
    assert!(bash.contains("iam-policy") && bash.contains("--dry-run"), "bash completion lacks subcommands");
    assert!(root.join("usr/share/zsh/vendor-completions/_vmscaler").is_file());
    assert!(read(&root.join("usr/share/fish/vendor_completions.d/vmscaler.fish")).contains("complete -c vmscaler"));
    for page in ["vmscaler", "vmscaler-run", "vmscaler-validate", "vmscaler-iam-policy"] {
        let gz = root.join(format!("usr/share/man/man1/{page}.1.gz"));
        let text = run(Command::new("zcat").arg(&gz));
        assert!(text.contains(&format!(".TH {page} 1")), "{}: no .TH header", gz.display());
    }
    assert!(!root.join("usr/share/man/man1/vmscaler-dist.1.gz").exists(), "hidden command has no page");

    // Maintainer scripts: valid shell, the service user, systemd enable/start and restart on upgrade.
    let control_text = read(&control.join("control"));
    assert!(control_text.lines().any(|l| l.starts_with("Depends:") && l.contains("adduser")), "{control_text}");
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        run(Command::new("sh").arg("-n").arg(&path));
        assert!(!read(&path).contains("#DEBHELPER#"), "{script}: #DEBHELPER# not substituted");
    }
    let postinst = read(&control.join("postinst"));
    assert!(postinst.contains("adduser --system") && postinst.contains(" vmscaler"), "postinst creates the user");
    assert!(postinst.contains("deb-systemd-helper") || postinst.contains("systemctl"), "postinst drives systemd");
    assert!(postinst.contains("enable"), "postinst enables the unit");
    // The user exists before systemd starts the unit, and the snippets are inserted once.
    let (user_at, start_at) = (postinst.find("adduser --system"), postinst.find("deb-systemd-invoke"));
    assert!(user_at.is_some() && start_at.is_some() && user_at < start_at, "user created after the unit starts");
    assert_eq!(postinst.matches("Automatically added by cargo-deb").count(), 2, "{postinst}");
    let postrm = read(&control.join("postrm"));
    assert!(postrm.contains("purge") && postrm.contains("deluser --system"), "postrm removes the user on purge");

    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!("{}: {} KiB", deb.display(), size / 1024);
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}

#[test]
fn installed_unit_exposure_is_at_most_2() {
    let Installed { root, .. } = build_and_extract("unit");
    let unit = unit_path(&root);
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (package systemd) is needed for this check");
    let text = String::from_utf8_lossy(&out.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for vmscaler.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{text}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert!(exposure <= 2.0, "installed unit exposure {exposure} > 2.0:\n{text}");
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}
