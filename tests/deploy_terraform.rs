//! `terraform/`: every `.tf` file parses, follows `terraform fmt` layout, and the references the
//! examples rely on hold.
//!
//! Terraform itself cannot be installed here, so `tests/python/tf_dump.py` parses the files
//! with python-hcl2 in the project venv (`scripts/setup-venv.sh`) and dumps them as JSON; this
//! module checks, per Terraform directory: variables, locals and modules referenced are
//! declared, variables and outputs are documented and inputs validated, module calls pass
//! only declared and all required inputs; and across the tree: the example fleets carry
//! exactly the tags and group names the shipped policies select, the IAM module reads the
//! policy JSON `vmscaler iam-policy` generates, the ops host requires IMDSv2 and its user data
//! template gets every variable it uses, and the local example sends every AWS service to a
//! loopback endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vmscaler_engine::policy::PoolTarget;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn dump(dir: &Path) -> BTreeMap<String, Value> {
    let python = Path::new(ROOT).join(".venv/bin/python");
    assert!(python.exists(), "{} missing: run scripts/setup-venv.sh (make test does)", python.display());
    let out = Command::new(&python)
        .arg(Path::new(ROOT).join("tests/python/tf_dump.py"))
        .arg(dir)
        .output()
        .expect("run tf_dump.py");
    assert!(
        out.status.success(),
        "tf_dump.py failed (is python-hcl2 installed? run scripts/setup-venv.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["files"].as_object().unwrap().clone().into_iter().collect()
}

/// All parsed files of one Terraform directory, merged per block type.
#[derive(Default, Debug)]
struct TfDir {
    /// Block type -> list of `{label: body}` (or the body, for `locals`/`terraform`).
    blocks: BTreeMap<String, Vec<Value>>,
    /// Every string in the directory's files, where expressions live.
    strings: Vec<String>,
}

impl TfDir {
    fn named(&self, kind: &str) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for block in self.blocks.get(kind).into_iter().flatten() {
            for (name, body) in block.as_object().unwrap() {
                out.insert(name.clone(), body.clone());
            }
        }
        out
    }

    /// `resource "type" "name"` bodies by (type, name).
    fn resources(&self, kind: &str) -> BTreeMap<(String, String), Value> {
        let mut out = BTreeMap::new();
        for (ty, named) in self.named(kind) {
            for (name, body) in named.as_object().unwrap() {
                out.insert((ty.clone(), name.clone()), body.clone());
            }
        }
        out
    }

    fn locals(&self) -> BTreeSet<String> {
        self.blocks.get("locals").into_iter().flatten().flat_map(|b| b.as_object().unwrap().keys().cloned()).collect()
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_strings(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.push(k.clone());
            collect_strings(x, out);
        }),
        _ => {}
    }
}

fn tf_dirs(files: &BTreeMap<String, Value>) -> BTreeMap<String, TfDir> {
    let mut dirs: BTreeMap<String, TfDir> = BTreeMap::new();
    for (path, entry) in files {
        let dir = Path::new(path).parent().unwrap().display().to_string();
        let d = dirs.entry(dir).or_default();
        let body = entry["body"].as_object().unwrap();
        for (kind, blocks) in body {
            d.blocks.entry(kind.clone()).or_default().extend(blocks.as_array().unwrap().iter().cloned());
        }
        collect_strings(&entry["body"], &mut d.strings);
    }
    dirs
}

/// Names following `prefix.` in Terraform expressions (`var.region` -> `region`).
fn references(strings: &[String], prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let pat = format!("{prefix}.");
    for s in strings {
        for (i, _) in s.match_indices(&pat) {
            let before = s[..i].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                continue;
            }
            let name: String = s[i + pat.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// Resolves `${path.module}/x` in `dir`.
fn module_path(dir: &Path, expr: &str) -> PathBuf {
    dir.join(expr.trim_start_matches("${path.module}/"))
}

/// (tag key, tag value) pools, group names and protect tags of the shipped policies.
type ShippedPools = (BTreeSet<(String, String)>, BTreeSet<String>, BTreeSet<(String, String)>, BTreeSet<String>);

fn shipped_pools() -> ShippedPools {
    let set = vmscaler::policies::load_dir(&Path::new(ROOT).join("policies"));
    assert_eq!(set.error_count(), 0, "{:?}", set.diagnostics);
    let (mut tags, mut groups, mut protect, mut names) =
        (BTreeSet::new(), BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (_, p) in &set.policies {
        names.insert(p.name.clone());
        match &p.pool {
            PoolTarget::Tagged(t) => {
                tags.insert((t.key.clone(), t.value.clone()));
                if let Some(pt) = &p.scale_in.protect_tag {
                    protect.insert((pt.key.clone(), pt.value.clone()));
                }
            }
            PoolTarget::AutoScalingGroup(g) => {
                groups.insert(g.clone());
            }
        }
    }
    (tags, groups, protect, names)
}

fn terraform() -> (PathBuf, BTreeMap<String, Value>, BTreeMap<String, TfDir>) {
    let root = Path::new(ROOT).join("terraform");
    let files = dump(&root);
    let dirs = tf_dirs(&files.iter().filter(|(_, e)| e["ok"] == true).map(|(k, v)| (k.clone(), v.clone())).collect());
    (root, files, dirs)
}

#[test]
fn every_tf_file_parses_and_is_fmt_clean() {
    let (_, files, dirs) = terraform();
    assert!(files.len() >= 12, "expected the modules and examples, found {:?}", files.keys());
    let mut problems = Vec::new();
    for (path, entry) in &files {
        if entry["ok"] != true {
            problems.push(format!("{path}: does not parse: {}", entry["error"]));
        }
        for issue in entry["fmt"].as_array().unwrap() {
            problems.push(format!("{path}: {}", issue.as_str().unwrap()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    for want in ["modules/vmscaler-iam", "modules/example-pools", "examples/ops-host", "examples/local-dry-run"] {
        assert!(dirs.contains_key(want), "terraform/{want} missing");
    }
}

#[test]
fn fmt_check_catches_misaligned_and_misindented_lines() {
    let dir = std::env::temp_dir().join(format!("vmscaler-tf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("bad.tf"),
        "variable \"x\" {\n  description = \"a\"\n  type = string\n}\n\nresource \"a\" \"b\" {\n   name = \"x\"\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("broken.tf"), "resource \"a\" {\n").unwrap();
    let files = dump(&dir);
    let bad: Vec<&str> = files["bad.tf"]["fmt"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(bad.iter().any(|i| i.starts_with("line 3: '='")), "{bad:?}");
    assert!(bad.iter().any(|i| i.starts_with("line 7: indented 3")), "{bad:?}");
    assert_eq!(files["broken.tf"]["ok"], false);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn references_are_declared_and_inputs_documented() {
    let (root, _, dirs) = terraform();
    let mut problems = Vec::new();
    for (name, d) in &dirs {
        let vars = d.named("variable");
        for used in references(&d.strings, "var") {
            if !vars.contains_key(&used) {
                problems.push(format!("{name}: var.{used} is not declared"));
            }
        }
        let locals = d.locals();
        for used in references(&d.strings, "local") {
            if !locals.contains(&used) {
                problems.push(format!("{name}: local.{used} is not declared"));
            }
        }
        let modules = d.named("module");
        for used in references(&d.strings, "module") {
            if !modules.contains_key(&used) {
                problems.push(format!("{name}: module.{used} is not declared"));
            }
        }
        for (var, body) in &vars {
            if body["description"].as_str().is_none_or(|s| s.len() < 10) {
                problems.push(format!("{name}: variable {var} has no description"));
            }
            if body.get("type").is_none() {
                problems.push(format!("{name}: variable {var} has no type"));
            }
            let is_bool = body["type"] == "bool" || body["type"] == "${bool}";
            if !is_bool && var != "tags" && body.get("validation").is_none() {
                problems.push(format!("{name}: variable {var} has no validation"));
            }
        }
        for (out, body) in d.named("output") {
            if body["description"].as_str().is_none_or(|s| s.len() < 10) {
                problems.push(format!("{name}: output {out} has no description"));
            }
        }
        // Module calls: the source exists and gets only declared, and all required, inputs.
        for (call, body) in &modules {
            let source = str_of(&body["source"], "module source");
            let target = root.join(name).join(source);
            let Ok(target) = target.canonicalize() else {
                problems.push(format!("{name}: module {call}: source {source} does not exist"));
                continue;
            };
            let rel = target.strip_prefix(root.canonicalize().unwrap()).unwrap().display().to_string();
            let Some(callee) = dirs.get(&rel) else {
                problems.push(format!("{name}: module {call}: {rel} has no .tf files"));
                continue;
            };
            let inputs = callee.named("variable");
            let meta = ["source", "version", "providers", "count", "for_each", "depends_on"];
            for arg in body.as_object().unwrap().keys().filter(|k| !meta.contains(&k.as_str())) {
                if !inputs.contains_key(arg) {
                    problems.push(format!("{name}: module {call} passes {arg}, which {rel} does not declare"));
                }
            }
            for (input, decl) in &inputs {
                if decl.get("default").is_none() && body.get(input).is_none() {
                    problems.push(format!("{name}: module {call} does not pass required input {input}"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn example_fleets_carry_the_tags_the_shipped_policies_select() {
    let (_, _, dirs) = terraform();
    let (policy_tags, policy_groups, policy_protect, _) = shipped_pools();
    assert!(!policy_tags.is_empty() && !policy_groups.is_empty(), "policies/ should have both pool kinds");
    let mut calls = 0;
    for (name, d) in &dirs {
        for (call, body) in d.named("module") {
            if !str_of(&body["source"], "source").ends_with("modules/example-pools") {
                continue;
            }
            calls += 1;
            let key = str_of(&body["pool_tag_key"], "pool_tag_key");
            let tags: BTreeSet<(String, String)> =
                body["pools"].as_object().unwrap().keys().map(|pool| (key.to_owned(), pool.clone())).collect();
            assert_eq!(tags, policy_tags, "{name}: module {call}: pool tags differ from policies/");
            let protect = &body["protect_tag"];
            let protect =
                (str_of(&protect["key"], "protect key").to_owned(), str_of(&protect["value"], "value").to_owned());
            assert_eq!(BTreeSet::from([protect]), policy_protect, "{name}: module {call}: protect tag");
            // `auto_scaling_group` is an object, or a conditional expression around one.
            let group = match &body["auto_scaling_group"] {
                Value::Object(o) => str_of(&o["name"], "group name").to_owned(),
                Value::String(expr) => {
                    let at = expr.find("name = \"").unwrap_or_else(|| panic!("{name}: no group name in {expr}"));
                    expr[at + 8..].split('"').next().unwrap().to_owned()
                }
                other => panic!("{name}: module {call}: unexpected auto_scaling_group {other}"),
            };
            assert_eq!(BTreeSet::from([group]), policy_groups, "{name}: module {call}: group name");
            // Every pool gets a warm pool of stopped members and some running capacity.
            for (pool, spec) in body["pools"].as_object().unwrap() {
                assert!(
                    spec["running"].as_u64().unwrap() > 0 && spec["stopped"].as_u64().unwrap() > 0,
                    "{name}: {pool}"
                );
            }
        }
    }
    assert_eq!(calls, 2, "both examples create the example fleets");

    // The module's defaults agree with the policies too, and stopped members exist.
    let pools = &dirs["modules/example-pools"];
    let vars = pools.named("variable");
    let key = str_of(&vars["pool_tag_key"]["default"], "default");
    assert!(policy_tags.iter().all(|(k, _)| k == key));
    let protect = &vars["protect_tag"]["default"];
    assert!(
        policy_protect.contains(&(str_of(&protect["key"], "k").to_owned(), str_of(&protect["value"], "v").to_owned()))
    );
    let state = &pools.resources("resource")[&("aws_ec2_instance_state".to_owned(), "member".to_owned())];
    assert!(str_of(&state["state"], "state").contains("\"stopped\""), "{state}");
}

#[test]
fn iam_module_reads_the_generated_policy_document() {
    let (root, _, dirs) = terraform();
    let iam = &dirs["modules/vmscaler-iam"];
    let module_dir = root.join("modules/vmscaler-iam");
    let local = iam.blocks["locals"].iter().find_map(|b| b.get("policy_json_path")).expect("local.policy_json_path");
    let default = str_of(local, "policy_json_path")
        .split('"')
        .find(|s| s.starts_with("${path.module}"))
        .expect("a ${path.module} default in local.policy_json_path")
        .to_owned();
    let path = module_path(&module_dir, &default);
    assert!(path.is_file(), "{} (the module's default policy document) missing", path.display());
    assert_eq!(path.canonicalize().unwrap(), root.join("generated/vmscaler-iam-policy.json").canonicalize().unwrap());
    assert!(iam.strings.iter().any(|s| s.contains("file(local.policy_json_path)")), "the policy is read with file()");
    let policies = iam.resources("resource");
    let policy = &policies[&("aws_iam_policy".to_owned(), "vmscaler".to_owned())];
    assert_eq!(policy["policy"], "${local.policy_json}");
    assert!(policies.contains_key(&("aws_iam_instance_profile".to_owned(), "vmscaler".to_owned())));
    // The examples pass a path that exists from their own directory.
    for ex in ["examples/ops-host", "examples/local-dry-run"] {
        let modules = dirs[ex].named("module");
        let call = &modules["vmscaler_iam"];
        let p = module_path(&root.join(ex), str_of(&call["policy_json_path"], "policy_json_path"));
        assert!(p.is_file(), "{ex}: {} missing", p.display());
    }
}

#[test]
fn ops_host_requires_imdsv2_and_installs_the_package() {
    let (root, _, dirs) = terraform();
    let (_, _, _, policy_names) = shipped_pools();
    let ops = &dirs["examples/ops-host"];
    let host = &ops.resources("resource")[&("aws_instance".to_owned(), "ops".to_owned())];
    assert_eq!(host["metadata_options"][0]["http_tokens"], "required", "IMDSv2 only");
    assert_eq!(host["metadata_options"][0]["http_put_response_hop_limit"], 1);
    assert_eq!(host["iam_instance_profile"], "${module.vmscaler_iam.instance_profile_name}");

    let user_data = str_of(&host["user_data"], "user_data");
    let file = user_data.split('"').find(|s| s.ends_with(".tftpl")).expect("templatefile(...tftpl)");
    let template_path = module_path(&root.join("examples/ops-host"), file);
    let template = std::fs::read_to_string(&template_path).unwrap();
    // Every template variable is passed by the templatefile() call.
    let passed: BTreeSet<String> = user_data
        .split(['{', ','])
        .filter_map(|part| part.split_once(" = ").map(|(k, _)| k.trim().to_owned()))
        .collect();
    let mut used = BTreeSet::new();
    for (i, _) in template.match_indices("${") {
        let name: String = template[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        used.insert(name);
    }
    for (i, _) in template.match_indices("%{ for ") {
        let rest = &template[i + 7..];
        let iter_var: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        used.remove(&iter_var);
        let list = rest.split(" in ").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
        used.insert(list);
    }
    let missing: Vec<&String> = used.difference(&passed).collect();
    assert!(missing.is_empty(), "template variables not passed: {missing:?} (passed {passed:?})");
    for step in
        ["sha256sum --check", "apt-get install", "systemctl enable --now vmscaler", "/usr/share/vmscaler/policies/"]
    {
        assert!(template.contains(step), "user data lacks `{step}`");
    }
    // The policies it enables by default exist in the package's example directory.
    let vars = ops.named("variable");
    let enabled = &vars["enabled_policies"]["default"];
    for p in enabled.as_array().unwrap() {
        assert!(policy_names.contains(p.as_str().unwrap()), "{p} is not a shipped policy");
    }
}

#[test]
fn local_example_sends_every_service_to_the_loopback_endpoint() {
    let (_, _, dirs) = terraform();
    let local = &dirs["examples/local-dry-run"];
    let provider = &local.named("provider")["aws"];
    let endpoints = provider["endpoints"][0].as_object().unwrap();
    for service in ["ec2", "autoscaling", "cloudwatch", "iam", "sts"] {
        assert_eq!(endpoints.get(service), Some(&Value::from("${var.endpoint_url}")), "{service}");
    }
    assert_eq!(provider["skip_credentials_validation"], true);
    assert_eq!(provider["skip_requesting_account_id"], true);
    let vars = local.named("variable");
    let default = str_of(&vars["endpoint_url"]["default"], "endpoint default");
    assert!(default.starts_with("http://127.0.0.1:"), "{default}");
    let outputs = local.named("output");
    let cfg = &outputs["dry_run_config"]["value"];
    assert!(str_of(cfg, "dry_run_config").contains("dry_run = true"), "{cfg}");
}

#[test]
fn target_groups_are_passed_through_to_the_iam_grant_and_the_policies() {
    let (root, _, dirs) = terraform();
    // The shipped policies that list target groups, by pool (tag value).
    let set = vmscaler::policies::load_dir(&Path::new(ROOT).join("policies"));
    let behind_lb: BTreeSet<String> = set
        .policies
        .iter()
        .filter(|(_, p)| !p.target_groups.is_empty())
        .filter_map(|(_, p)| if let PoolTarget::Tagged(t) = &p.pool { Some(t.value.clone()) } else { None })
        .collect();
    assert!(behind_lb.contains("web-storefront"), "the shipped web policy lists its target group");

    // The example fleet creates a target group for exactly those pools and outputs their ARNs.
    let pools = &dirs["modules/example-pools"];
    assert!(pools.resources("resource").contains_key(&("aws_lb_target_group".to_owned(), "pool".to_owned())));
    assert!(pools.named("output").contains_key("target_group_arns"));
    let ops = &dirs["examples/ops-host"];
    let call = &ops.named("module")["example_pools"];
    let created: BTreeSet<String> =
        call["target_groups"].as_object().expect("target_groups map").keys().cloned().collect();
    assert_eq!(created, behind_lb);

    // The IAM module scopes Register/DeregisterTargets to the created ARNs: it rewrites the
    // statement `vmscaler iam-policy` generates under this Sid.
    let iam_call = &ops.named("module")["vmscaler_iam"];
    assert_eq!(iam_call["target_group_arns"], "${values(module.example_pools.target_group_arns)}");
    let iam = &dirs["modules/vmscaler-iam"];
    assert!(iam.named("variable").contains_key("target_group_arns"));
    let generated = std::fs::read_to_string(root.join("generated/vmscaler-iam-policy.json")).unwrap();
    let sid = "RegisterInListedTargetGroups";
    assert!(generated.contains(&format!("\"Sid\": \"{sid}\"")), "the generated document has no {sid} statement");
    assert!(iam.strings.iter().any(|s| s.contains(&format!("\"{sid}\""))), "the IAM module does not rewrite {sid}");

    // The ops host puts the created ARN into each enabled policy in place of the example's.
    let user_data = std::fs::read_to_string(root.join("examples/ops-host/user-data.sh.tftpl")).unwrap();
    assert!(
        user_data.contains("%{ for tg in target_groups ~}") && user_data.contains("targetgroup/${tg.pool}/"),
        "{user_data}"
    );
}
