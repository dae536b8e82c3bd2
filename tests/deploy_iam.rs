//! `vmscaler iam-policy`: the document grants exactly the AWS operations the code calls.
//!
//! The list of operations is derived from the source, not written down here: every SDK
//! operation name (read from the `aws-sdk-*` crates' `src/operation/` modules that Cargo
//! resolved) that `src/` calls as a method becomes an IAM action, and it must equal the set
//! of actions in the document for the shipped policies with a lease table (the DynamoDB
//! actions are granted only then), and [`API_ACTIONS`] too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use vmscaler::cmd::iam_policy::{API_ACTIONS, IamPolicyError, LeaseGrant, document, document_with_lease, render};
use vmscaler_engine::Policy;
use vmscaler_engine::policy::parse_policy;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The SDK crates whose clients the daemon holds, with the IAM service prefix of each.
const SERVICES: [(&str, &str); 5] = [
    ("aws-sdk-ec2", "ec2"),
    ("aws-sdk-autoscaling", "autoscaling"),
    ("aws-sdk-cloudwatch", "cloudwatch"),
    ("aws-sdk-dynamodb", "dynamodb"),
    ("aws-sdk-elasticloadbalancingv2", "elasticloadbalancing"),
];

const LEASES: LeaseGrant<'static> = LeaseGrant { table: "vmscaler-leases", create_table: true };

/// Where Cargo unpacked `krate` at the version `Cargo.lock` pins.
fn sdk_source_dir(krate: &str) -> PathBuf {
    let lock = std::fs::read_to_string(Path::new(ROOT).join("Cargo.lock")).unwrap();
    let name_line = format!("name = \"{krate}\"");
    let version = lock
        .split("[[package]]")
        .find(|block| block.lines().any(|l| l.trim() == name_line))
        .and_then(|block| block.lines().find_map(|l| l.trim().strip_prefix("version = \"")?.strip_suffix('"')))
        .unwrap_or_else(|| panic!("{krate} not in Cargo.lock"));
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registries = cargo_home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("{}: {e}", registries.display()))
        .map(|e| e.unwrap().path().join(format!("{krate}-{version}")))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("{krate} {version} not unpacked under {}", registries.display()))
}

/// Operation method name (`describe_instances`) -> its API name (`DescribeInstances`), per
/// IAM service prefix, read from the SDK crates at the versions `Cargo.lock` pins.
fn sdk_operations() -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let mut ops = BTreeMap::new();
    for (krate, prefix) in SERVICES {
        let dir = sdk_source_dir(krate).join("src/operation");
        let mut service = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let method = path.file_stem().unwrap().to_str().unwrap().to_owned();
                // `pub struct DescribeInstances;` names the operation exactly as IAM does.
                let text = std::fs::read_to_string(&path).unwrap();
                let name = text
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("pub struct ").and_then(|r| r.strip_suffix(';')))
                    .unwrap_or_else(|| panic!("no operation struct in {}", path.display()))
                    .to_owned();
                service.insert(method, name);
            }
        }
        assert!(service.len() > 20, "{krate}: only {} operations found in {}", service.len(), dir.display());
        ops.insert(prefix, service);
    }
    ops
}

/// Source text without `//` comments (doc comments mention operations in prose).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `.ident(` method calls in `src`, with the identifier before the dot when there is one
/// (`aws.ec2.describe_instances()` -> (`ec2`, `describe_instances`)), whitespace and line
/// breaks between the parts allowed.
fn method_calls(src: &str) -> Vec<(String, String)> {
    let bytes = src.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut calls = Vec::new();
    for (i, _) in src.match_indices('.') {
        let mut j = i + 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let start = j;
        while j < bytes.len() && is_ident(bytes[j]) {
            j += 1;
        }
        let end_ident = j;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if start == end_ident || j >= bytes.len() || bytes[j] != b'(' {
            continue;
        }
        let method = src[start..end_ident].to_owned();
        let mut k = i;
        while k > 0 && bytes[k - 1].is_ascii_whitespace() {
            k -= 1;
        }
        let end = k;
        while k > 0 && is_ident(bytes[k - 1]) {
            k -= 1;
        }
        calls.push((src[k..end].to_owned(), method));
    }
    calls
}

/// IAM actions for every SDK operation called anywhere in `src/`, each with where it is called.
fn actions_called_in_src() -> BTreeMap<String, Vec<String>> {
    let ops = sdk_operations();
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    assert!(files.iter().any(|f| f.ends_with("aws/actuate.rs")), "src/aws/actuate.rs not found");
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let src = strip_comments(&std::fs::read_to_string(file).unwrap());
        for (receiver, method) in method_calls(&src) {
            let services: Vec<&str> = ops.iter().filter(|(_, s)| s.contains_key(&method)).map(|(p, _)| *p).collect();
            let service = match services.as_slice() {
                [] => continue,
                [only] => *only,
                // The same operation name in two SDKs: the client field names the service.
                several => match several.iter().find(|p| **p == receiver) {
                    Some(p) => *p,
                    None => panic!(
                        "{}: `.{method}(` exists in {several:?}; call it on a client field named after the service",
                        file.display()
                    ),
                },
            };
            let action = format!("{service}:{}", ops[service][&method]);
            found.entry(action).or_default().push(file.strip_prefix(ROOT).unwrap().display().to_string());
        }
    }
    found
}

fn shipped_policies() -> Vec<Policy> {
    let set = vmscaler::policies::load_dir(&Path::new(ROOT).join("policies"));
    assert_eq!(set.error_count(), 0, "{:?}", set.diagnostics);
    set.policies.into_iter().map(|(_, p)| p).collect()
}

fn statement_actions(st: &Value) -> Vec<String> {
    match &st["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        other => panic!("unexpected Action {other}"),
    }
}

fn actions_in(doc: &Value, effect: &str) -> BTreeSet<String> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["Effect"] == effect)
        .flat_map(statement_actions)
        .collect()
}

fn policy(yaml: &str) -> Policy {
    let report = parse_policy("test.yaml", yaml);
    report.policy.unwrap_or_else(|| panic!("{:?}", report.diagnostics))
}

fn tagged(name: &str, key: &str, value: &str, protect: Option<(&str, &str)>) -> Policy {
    let protect = protect
        .map_or_else(String::new, |(k, v)| format!("scale_in:\n  protect_tag: {{ key: \"{k}\", value: \"{v}\" }}\n"));
    policy(&format!(
        "name: {name}\npool:\n  tag: {{ key: \"{key}\", value: \"{value}\" }}\nmin: 1\nmax: 4\nmetrics:\n  - {{ id: cpu, namespace: AWS/EC2, name: CPUUtilization, per_instance: avg, target: 50, weight: 1 }}\n{protect}"
    ))
}

fn group(name: &str, asg: &str) -> Policy {
    policy(&format!(
        "name: {name}\npool:\n  auto_scaling_group: \"{asg}\"\nmin: 1\nmax: 4\nmetrics:\n  - {{ id: q, namespace: AWS/SQS, name: ApproximateNumberOfMessagesVisible, dimensions: {{ QueueName: q }}, target_per_instance: 10, weight: 1 }}\n"
    ))
}

fn statement<'a>(doc: &'a Value, sid: &str) -> &'a Value {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {doc:#}"))
}

#[test]
fn document_grants_exactly_the_operations_the_code_calls() {
    let called = actions_called_in_src();
    let called_set: BTreeSet<String> = called.keys().cloned().collect();
    // The scan must see the daemon's core calls, or it is scanning the wrong thing.
    for core in
        ["cloudwatch:GetMetricData", "ec2:StartInstances", "autoscaling:SetDesiredCapacity", "dynamodb:UpdateItem"]
    {
        assert!(called_set.contains(core), "scan of src/ found no {core}: {called:#?}");
    }
    let table: BTreeSet<String> = API_ACTIONS.iter().map(|a| a.action.to_owned()).collect();
    assert_eq!(table, called_set, "API_ACTIONS differs from the SDK calls in src/ (where: {called:#?})");

    // The shipped policies use both pool kinds, so their document for daemons that share
    // them through a lease table they create needs every action.
    let policies = shipped_policies();
    let refs: Vec<&Policy> = policies.iter().collect();
    let doc = document_with_lease(&refs, "aws", Some(LEASES)).unwrap();
    assert_eq!(actions_in(&doc, "Allow"), called_set, "{doc:#}");
    // A deny may only narrow an allowed action.
    assert!(actions_in(&doc, "Deny").is_subset(&called_set));
    // A single daemon gets no DynamoDB access at all.
    let single = document(&refs, "aws").unwrap();
    let no_lease: BTreeSet<String> = called_set.iter().filter(|a| !a.starts_with("dynamodb:")).cloned().collect();
    assert_eq!(actions_in(&single, "Allow"), no_lease, "{single:#}");
}

#[test]
fn target_groups_are_registered_in_and_deregistered_from_only_where_listed() {
    let tg =
        |name: &str| format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/0123456789abcdef");
    let with_tg = |name: &str, value: &str, arns: &[String]| {
        policy(&format!(
            "name: {name}\npool:\n  tag: {{ key: pool, value: {value} }}\n  target_groups: [{}]\nmin: 1\nmax: 4\nmetrics:\n  - {{ id: cpu, namespace: AWS/EC2, name: CPUUtilization, per_instance: avg, target: 50 }}\n",
            arns.join(", ")
        ))
    };
    let set = [
        with_tg("web", "web", &[tg("web-a"), tg("web-b")]),
        with_tg("api", "api", &[tg("api")]),
        tagged("batch", "pool", "batch", None),
    ];
    let refs: Vec<&Policy> = set.iter().collect();
    let doc = document(&refs, "aws").unwrap();
    let st = statement(&doc, "RegisterInListedTargetGroups");
    assert_eq!(
        statement_actions(st),
        ["elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"]
    );
    assert_eq!(st["Resource"], serde_json::json!([tg("api"), tg("web-a"), tg("web-b")]));
    let reads = statement_actions(statement(&doc, "ReadMetricsAndFleets"));
    for read in [
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetHealth",
    ] {
        assert!(reads.iter().any(|r| r == read), "{read} not granted: {reads:?}");
    }
    // No target group, no load balancer access at all.
    let plain = [tagged("batch", "pool", "batch", None)];
    let doc = document(&plain.iter().collect::<Vec<_>>(), "aws").unwrap();
    assert!(actions_in(&doc, "Allow").iter().all(|a| !a.starts_with("elasticloadbalancing:")), "{doc:#}");
}

#[test]
fn lease_table_access_is_granted_on_that_table_only_when_asked() {
    let set = [group("q", "workers")];
    let refs: Vec<&Policy> = set.iter().collect();
    let doc =
        document_with_lease(&refs, "aws-cn", Some(LeaseGrant { table: "ops.leases", create_table: false })).unwrap();
    let lease = statement(&doc, "LeaseTable");
    assert_eq!(lease["Resource"], "arn:aws-cn:dynamodb:*:*:table/ops.leases");
    assert_eq!(lease["Action"], serde_json::json!(["dynamodb:UpdateItem", "dynamodb:Scan"]));
    let doc = document_with_lease(&refs, "aws", Some(LEASES)).unwrap();
    assert_eq!(
        statement(&doc, "LeaseTable")["Action"],
        serde_json::json!([
            "dynamodb:UpdateItem",
            "dynamodb:Scan",
            "dynamodb:CreateTable",
            "dynamodb:DescribeTable",
            "dynamodb:UpdateTimeToLive"
        ])
    );
    for bad in ["x", "a*b", "leases/other"] {
        assert_eq!(
            document_with_lease(&refs, "aws", Some(LeaseGrant { table: bad, create_table: false })),
            Err(IamPolicyError::LeaseTableName(bad.to_owned()))
        );
    }

    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["iam-policy", "--policies", "policies", "--lease-table", "vmscaler-leases"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(statement(&doc, "LeaseTable")["Resource"], "arn:aws:dynamodb:*:*:table/vmscaler-leases");
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["iam-policy", "--policies", "policies", "--create-lease-table"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--create-lease-table needs --lease-table");
}

#[test]
fn shipped_document_restricts_mutations_to_the_pools() {
    let policies = shipped_policies();
    let refs: Vec<&Policy> = policies.iter().collect();
    let doc = document(&refs, "aws").unwrap();
    assert_eq!(doc["Version"], "2012-10-17");
    for st in doc["Statement"].as_array().unwrap() {
        let mutating = statement_actions(st).iter().any(|a| !a.contains(":Describe") && !a.contains(":Get"));
        if mutating && st["Effect"] == "Allow" {
            assert_ne!(st["Resource"], "*", "unrestricted mutation: {st:#}");
        }
    }
    let start_stop = statement(&doc, "StartStopTaggedPoolsVmscalerPool");
    assert_eq!(start_stop["Resource"], "arn:aws:ec2:*:*:instance/*");
    assert_eq!(
        start_stop["Condition"]["StringEquals"]["aws:ResourceTag/vmscaler:pool"],
        serde_json::json!(["gpu-transcode", "web-storefront"])
    );
    let deny = statement(&doc, "NeverStopProtectedVmscalerPoolVmscalerProtect");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Action"], "ec2:StopInstances");
    assert_eq!(deny["Condition"]["StringEquals"]["aws:ResourceTag/vmscaler:protect"], "true");
    let resize = statement(&doc, "ResizeNamedGroups");
    assert_eq!(
        resize["Resource"],
        serde_json::json!(["arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/queue-workers"])
    );
    assert_eq!(resize["Action"], serde_json::json!(["autoscaling:SetDesiredCapacity"]));
}

#[test]
fn only_the_pool_kinds_in_use_get_permissions() {
    let only_tagged = [tagged("web", "team:pool", "web", None)];
    let doc = document(&only_tagged.iter().collect::<Vec<_>>(), "aws").unwrap();
    let allowed = actions_in(&doc, "Allow");
    assert!(allowed.iter().all(|a| !a.starts_with("autoscaling:")), "{allowed:?}");
    assert!(allowed.contains("ec2:StopInstances") && allowed.contains("cloudwatch:GetMetricData"));
    // No protect tag: the only deny is the one on Auto Scaling groups' instances.
    let denies: Vec<&Value> = doc["Statement"].as_array().unwrap().iter().filter(|s| s["Effect"] == "Deny").collect();
    assert_eq!(denies.len(), 1, "{doc:#}");
    assert_eq!(denies[0]["Sid"], "NeverTouchAutoScalingInstances");

    let only_groups = [group("q", "workers-b"), group("p", "workers-a")];
    let doc = document(&only_groups.iter().collect::<Vec<_>>(), "aws-cn").unwrap();
    let allowed = actions_in(&doc, "Allow");
    assert!(allowed.iter().all(|a| !a.starts_with("ec2:")), "{allowed:?}");
    assert_eq!(
        statement(&doc, "ResizeNamedGroups")["Resource"],
        serde_json::json!([
            "arn:aws-cn:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/workers-a",
            "arn:aws-cn:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/workers-b"
        ])
    );
}

#[test]
fn each_tag_key_gets_its_own_condition() {
    // Two keys in one StringEquals block would be ANDed: no instance carries both.
    let set = [
        tagged("a", "team:pool", "a", Some(("keep", "yes"))),
        tagged("b", "vmscaler:pool", "b", Some(("vmscaler:protect", "true"))),
        tagged("c", "vmscaler:pool", "c", None),
    ];
    let doc = document(&set.iter().collect::<Vec<_>>(), "aws").unwrap();
    let a = statement(&doc, "StartStopTaggedPoolsTeamPool");
    assert_eq!(a["Condition"]["StringEquals"].as_object().unwrap().len(), 1);
    assert_eq!(a["Condition"]["StringEquals"]["aws:ResourceTag/team:pool"], serde_json::json!(["a"]));
    let b = statement(&doc, "StartStopTaggedPoolsVmscalerPool");
    assert_eq!(b["Condition"]["StringEquals"]["aws:ResourceTag/vmscaler:pool"], serde_json::json!(["b", "c"]));
    // Protection is per pool: pool c has none, so its members may be stopped whatever their tags.
    let deny = statement(&doc, "NeverStopProtectedVmscalerPoolVmscalerProtect");
    assert_eq!(deny["Condition"]["StringEquals"]["aws:ResourceTag/vmscaler:pool"], serde_json::json!(["b"]));
    let deny_a = statement(&doc, "NeverStopProtectedTeamPoolKeep");
    assert_eq!(deny_a["Condition"]["StringEquals"]["aws:ResourceTag/keep"], "yes");
}

/// Finding 1 (IAM half): start and stop are denied on any instance of an Auto Scaling group,
/// and finding 11: a tag value `${aws:username}` is matched literally (IAM's `${$}` escape), not
/// read as the caller's name.
#[test]
fn group_instances_are_denied_and_tag_values_are_escaped() {
    let set = [tagged("a", "team", "${aws:username}", Some(("keep", "$x")))];
    let doc = document(&set.iter().collect::<Vec<_>>(), "aws").unwrap();
    let allow = statement(&doc, "StartStopTaggedPoolsTeam");
    assert_eq!(allow["Condition"]["StringEquals"]["aws:ResourceTag/team"], serde_json::json!(["${$}{aws:username}"]));
    let protect = statement(&doc, "NeverStopProtectedTeamKeep");
    assert_eq!(protect["Condition"]["StringEquals"]["aws:ResourceTag/keep"], "${$}x");
    assert_eq!(protect["Condition"]["StringEquals"]["aws:ResourceTag/team"], serde_json::json!(["${$}{aws:username}"]));
    let deny = statement(&doc, "NeverTouchAutoScalingInstances");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(deny["Action"], serde_json::json!(["ec2:StartInstances", "ec2:StopInstances"]));
    assert_eq!(deny["Resource"], "arn:aws:ec2:*:*:instance/*");
    assert_eq!(
        deny["Condition"],
        serde_json::json!({ "Null": { "aws:ResourceTag/aws:autoscaling:groupName": "false" } })
    );
    // Only groups: no EC2 statement at all.
    let groups = [group("q", "workers")];
    let doc = document(&groups.iter().collect::<Vec<_>>(), "aws").unwrap();
    assert!(!doc.to_string().contains("NeverTouchAutoScalingInstances"));
}

#[test]
fn wildcards_in_group_names_and_bad_input_are_refused() {
    let set = [group("q", "workers-*")];
    assert!(matches!(
        document(&set.iter().collect::<Vec<_>>(), "aws"),
        Err(IamPolicyError::GroupNameNotLiteral { .. })
    ));
    assert_eq!(document(&[], "aws"), Err(IamPolicyError::Empty));
    let ok = [group("q", "workers")];
    assert!(matches!(document(&ok.iter().collect::<Vec<_>>(), "aws:*"), Err(IamPolicyError::Partition(_))));
}

#[test]
fn cli_prints_the_document_and_refuses_an_invalid_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["iam-policy", "--policies", "policies"])
        .current_dir(ROOT)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let policies = shipped_policies();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), render(&policies.iter().collect::<Vec<_>>(), "aws").unwrap());

    let dir = std::env::temp_dir().join(format!("vmscaler-iam-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("bad.yaml"), "name: bad\npool: {tag: {key: k, value: v}}\nmin: 5\nmax: 1\n").unwrap();
    let out =
        Command::new(env!("CARGO_BIN_EXE_vmscaler")).args(["iam-policy", "--policies"]).arg(&dir).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(out.stdout.is_empty(), "no document for an invalid set");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn committed_terraform_policy_is_current() {
    let path = Path::new(ROOT).join("terraform/generated/vmscaler-iam-policy.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let policies = shipped_policies();
    let current = render(&policies.iter().collect::<Vec<_>>(), "aws").unwrap();
    assert!(
        committed == current,
        "{} is stale: regenerate it with `cargo run -- iam-policy --policies policies --out {}`",
        path.display(),
        "terraform/generated/vmscaler-iam-policy.json"
    );
}

#[test]
fn scanner_sees_calls_split_over_lines_and_ignores_comments() {
    let src = "let r = aws\n    .ec2\n    .start_instances()\n// aws.ec2.terminate_instances()\nlet s = \"// not a comment\"; x.cloudwatch . get_metric_data ()";
    let stripped = strip_comments(src);
    let calls = method_calls(&stripped);
    assert!(calls.contains(&("ec2".to_owned(), "start_instances".to_owned())), "{calls:?}");
    assert!(calls.contains(&("cloudwatch".to_owned(), "get_metric_data".to_owned())), "{calls:?}");
    assert!(!calls.iter().any(|(_, m)| m == "terminate_instances"), "{calls:?}");
}
