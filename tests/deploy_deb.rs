//! The Debian package: `scripts/build-deb.sh --profile dev --no-build` packages the debug binary
//! this test run was built with, `dpkg-deb -x` installs it into a scratch root, and the
//! installed files are checked: binary, unit (hardening exposure <= 2.0 by `systemd-analyze
//! security --offline=yes`), the config as a conffile, example policies, completions, man
//! pages, and maintainer scripts that create the service user and drive systemd.
//!
//! The first run installs cargo-deb (pinned) into target/tools, which needs crates.io and a
//! few minutes; later runs reuse it. Maintainer scripts are checked by `sh -n` and content,
//! not executed: that needs a real system (see the README's install section). The last test
//! walks the README's operator steps with the installed files against moto.

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
    let rev = version
        .trim()
        .strip_prefix(&format!("vmscaler {} (", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version output {version:?}"));
    if Path::new(ROOT).join(".git").exists() {
        let hex = rev.strip_prefix("git ").unwrap_or_else(|| panic!("no git revision in {version:?}"));
        assert!(hex.len() == 12 && hex.chars().all(|c| c.is_ascii_hexdigit()), "{version:?}");
    }

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
    let exposure =
        crate::support::systemd::exposure(&unit).expect("systemd-analyze (package systemd) is needed for this check");
    assert!(exposure <= 2.0, "installed unit exposure {exposure} > 2.0");
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}

/// Reads the integer value of the first Prometheus sample line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The README's operator walkthrough with the installed files: the packaged config (dry run
/// by default) and the packaged example policies, run by the installed binary against moto
/// fleets shaped like terraform/examples (two tagged pools with stopped members, one
/// protected member, the `queue-workers` group). It validates, prints the IAM policy, runs,
/// serves /healthz, /metrics and `vmscaler status`, changes nothing, and stops on SIGTERM.
#[test]
fn installed_package_dry_runs_the_example_policies_against_moto() {
    use crate::support::Moto;
    use vmscaler::cmd::status::http_get;

    let Installed { root, .. } = build_and_extract("walk");
    let bin = root.join("usr/bin/vmscaler");
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // web-storefront serves behind a target group, created here like Terraform's example does.
    let target_group = rt.block_on(async {
        let web = moto
            .create_tagged_pool(("vmscaler:pool", "web-storefront"), 3, 4, 1, Some(("vmscaler:protect", "true")))
            .await;
        moto.create_tagged_pool(("vmscaler:pool", "gpu-transcode"), 2, 2, 0, None).await;
        moto.create_asg("queue-workers", 1, 40, 1).await;
        let arn = moto.create_target_group("web-storefront").await;
        moto.register_targets(&arn, &[web.running, web.protected].concat()).await;
        arn
    });
    let before = rt.block_on(moto.instance_states());

    // /etc/vmscaler as the operator sets it up: the examples copied in, the packaged config
    // with only paths, the port and the region changed.
    let etc = root.join("etc/vmscaler");
    let policies = etc.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    // The top-level pools only: the examples in sub-folders (Prometheus, composite rule) claim
    // pools of their own and are read by hand, not dropped into the daemon's directory.
    for entry in std::fs::read_dir(root.join("usr/share/vmscaler/policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    // The example target group's ARN replaced by the one that exists (the ops host's user data
    // does the same with the group Terraform created).
    let web = policies.join("web-storefront.yaml");
    let example_arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web-storefront/6d0ecf831eec9f09";
    let text = read(&web);
    assert!(text.contains(example_arn), "the shipped web policy lists its example target group");
    std::fs::write(&web, text.replace(example_arn, &target_group)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let packaged = read(&etc.join("vmscaler.yaml"));
    let config = packaged
        .replace("policy_dir: /etc/vmscaler/policies", &format!("policy_dir: {}", policies.display()))
        .replace("state_dir: /var/lib/vmscaler", &format!("state_dir: {}", root.join("var/lib/vmscaler").display()))
        .replace("listen: 127.0.0.1:9464", &format!("listen: 127.0.0.1:{port}"))
        .replace("# region: eu-west-1", &format!("region: {}", crate::support::REGION));
    assert_ne!(config, packaged);
    let config_path = root.join("vmscaler-test.yaml");
    std::fs::write(&config_path, &config).unwrap();

    run(Command::new(&bin).arg("validate").arg(&policies).arg("--deny-warnings"));
    let iam: serde_json::Value =
        serde_json::from_str(&run(Command::new(&bin).args(["iam-policy", "--policies"]).arg(&policies))).unwrap();
    assert_eq!(iam["Version"], "2012-10-17");

    let log = root.join("daemon.log");
    let mut child = Command::new(&bin)
        .args(["run", "--config"])
        .arg(&config_path)
        .envs(moto.env())
        .env_remove("RUST_LOG")
        .env_remove("VMSCALER_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut metrics = String::new();
    for _ in 0..300 {
        if let Ok(m) = http_get(&url, "/metrics") {
            let evaluated = ["web-storefront", "gpu-transcode", "queue-workers"]
                .iter()
                .all(|p| metric(&m, &format!("vmscaler_evaluations_total{{policy=\"{p}\"")).is_some_and(|n| n >= 1.0));
            if evaluated {
                metrics = m;
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!metrics.is_empty(), "no evaluation of all three policies; log:\n{}", log_text());
    let health = http_get(&url, "/healthz").unwrap();
    // Healthy but for the metrics moto has no data for (issue 10: `/healthz` says so).
    let healthy = health.contains("\"status\":\"ok\"")
        || (health.contains("no datapoint within max_age") && health.contains("\"invalid_files\":{}"));
    assert!(healthy, "{health}\nlog:\n{}", log_text());
    assert_eq!(metric(&metrics, "vmscaler_pool_current_capacity{policy=\"web-storefront\"}"), Some(4.0), "{metrics}");
    assert_eq!(metric(&metrics, "vmscaler_pool_current_capacity{policy=\"gpu-transcode\"}"), Some(2.0), "{metrics}");
    let status = run(Command::new(&bin).args(["status", "--url", &url]));
    assert!(status.contains("web-storefront") && status.contains("queue-workers"), "{status}");

    assert_eq!(metric(&metrics, "vmscaler_pool_dry_run{policy=\"queue-workers\"}"), Some(1.0), "{metrics}");
    // queue-workers has no queue metrics and `missing_data: scale_up`: it plans more workers...
    let desired = metric(&metrics, "vmscaler_pool_desired_capacity{policy=\"queue-workers\"}");
    assert!(desired.is_some_and(|d| d > 1.0), "{metrics}");
    // ...and, in dry run (the packaged default), nothing changes.
    assert_eq!(rt.block_on(moto.instance_states()), before, "log:\n{}", log_text());
    assert_eq!(rt.block_on(moto.asg_desired("queue-workers")), 1);

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let mut exited = None;
    for _ in 0..200 {
        if let Some(st) = child.try_wait().unwrap() {
            exited = Some(st);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    assert_eq!(exited.and_then(|s| s.code()), Some(0), "SIGTERM exits 0; log:\n{}", log_text());
    std::fs::remove_dir_all(root.parent().unwrap()).unwrap();
}
