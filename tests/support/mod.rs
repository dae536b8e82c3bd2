//! Shared moto harness for the integration tests: a moto server per test on a free loopback
//! port, and helpers to build pools, groups and metric data in it.
//!
//! The server comes from `.venv` (`scripts/setup-venv.sh`); credentials are dummies and the
//! region is `us-east-1`, passed explicitly to clients ([`Moto::sdk_config`]) and to child
//! processes ([`Moto::env`]), never through this process's environment.
#![allow(dead_code)] // each test module uses a different part of the harness

pub mod faults;
pub mod policy;
pub mod prometheus;
pub mod systemd;
pub mod throttle;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::types::{InstanceType, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification};
use jiff::Timestamp;
use vmscaler::aws::Aws;

pub const REGION: &str = "us-east-1";
/// An image id moto accepts.
pub const AMI: &str = "ami-12c6146b";

/// A running moto server; killed when dropped.
pub struct Moto {
    pub endpoint: String,
    pub port: u16,
    child: Child,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the venv's `moto_server`, panicking with what to do when it is missing.
pub fn moto_server_bin() -> PathBuf {
    let bin = repo_root().join(".venv/bin/moto_server");
    assert!(
        bin.exists(),
        "moto server not found at {}: run scripts/setup-venv.sh once to create the test venv",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// Whether an HTTP server answers on `port` (moto's own API answers `GET /moto-api/data.json`).
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

impl Moto {
    /// Starts a fresh moto server on a free loopback port and waits until it answers.
    pub fn start() -> Moto {
        Moto::start_with_env(&[])
    }

    /// Like [`Moto::start`], with extra environment for the server (for example
    /// `INITIAL_NO_AUTH_ACTION_COUNT`, after which moto enforces IAM policies).
    pub fn start_with_env(env: &[(&str, &str)]) -> Moto {
        let bin = moto_server_bin();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("AWS_DEFAULT_REGION", REGION)
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}; run scripts/setup-venv.sh", bin.display()));
            // Up to 30 s: a cold moto import takes a few seconds on a busy machine.
            for _ in 0..600 {
                if answers(port) {
                    return Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break; // exited: most likely lost the port race; try another port
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto server did not start; try running {} by hand", bin.display());
    }

    /// Like [`Moto::start`], but the server handles one request at a time. moto's threaded
    /// server evaluates a conditional write and applies it without a lock, so two racing
    /// conditional writes can both succeed; DynamoDB never lets them. Lease tests need
    /// DynamoDB's semantics, so they serialise requests (still served on many connections).
    pub fn start_serialized() -> Moto {
        let script = r#"
import os, sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
host, port = sys.argv[1], int(sys.argv[2])
os.environ["MOTO_PORT"] = str(port)
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))
run_simple(host, port, serialized, threaded=True, request_handler=MotoRequestHandler)
"#;
        let python = repo_root().join(".venv/bin/python");
        moto_server_bin();
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&python)
                .args(["-c", script, "127.0.0.1", &port.to_string()])
                .env("AWS_DEFAULT_REGION", REGION)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot spawn {}: {e}; run scripts/setup-venv.sh", python.display()));
            for _ in 0..600 {
                if answers(port) {
                    return Moto { endpoint: format!("http://127.0.0.1:{port}"), port, child };
                }
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("serialized moto server did not start");
    }

    /// Starts `vmscaler run --config <config>` with this server's credentials and endpoint in
    /// the environment (the config may still point elsewhere, e.g. at a proxy), its log
    /// (stderr) appended to `log`.
    pub fn spawn_daemon(&self, config: &Path, log: &Path) -> Child {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        Command::new(env!("CARGO_BIN_EXE_vmscaler"))
            .args(["run", "--config"])
            .arg(config)
            .envs(self.env())
            .env_remove("RUST_LOG")
            .env_remove("VMSCALER_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn vmscaler run")
    }

    /// Environment for a child process (`vmscaler run`, the bench) talking to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_SESSION_TOKEN", "testing".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            ("AWS_CONFIG_FILE", "/dev/null".to_owned()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".to_owned()),
        ]
    }

    /// SDK configuration for this server: dummy static credentials, `us-east-1`.
    pub async fn sdk_config(&self) -> SdkConfig {
        self.sdk_config_as("testing", "testing").await
    }

    /// SDK configuration for this server with the given access key.
    pub async fn sdk_config_as(&self, key: &str, secret: &str) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(key, secret, None, None, "moto-harness"))
            .load()
            .await
    }

    /// Creates an IAM user allowed only `actions` (e.g. `ec2:Describe*`) and returns its
    /// access key and secret. Takes three IAM calls (moto counts them against
    /// `INITIAL_NO_AUTH_ACTION_COUNT`). Uses the venv's boto3: the project has no IAM client.
    pub fn create_user(&self, name: &str, actions: &[&str]) -> (String, String) {
        let python = repo_root().join(".venv/bin/python");
        let script = r#"
import boto3, json, sys
endpoint, name, actions = sys.argv[1], sys.argv[2], sys.argv[3:]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=name)
key = iam.create_access_key(UserName=name)["AccessKey"]
doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps(doc))
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;
        let out = Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(&self.endpoint)
            .arg(name)
            .args(actions)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; run scripts/setup-venv.sh", python.display()));
        assert!(out.status.success(), "create_user failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(k), Some(s)) => (k.to_owned(), s.to_owned()),
            _ => panic!("create_user printed {text:?}"),
        }
    }

    /// vmscaler's adapters pointed at this server, with fresh [`vmscaler::aws::ApiStats`].
    pub async fn aws(&self) -> Aws {
        Aws::from_sdk_config(&self.sdk_config().await)
    }

    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.sdk_config().await)
    }

    pub async fn autoscaling(&self) -> aws_sdk_autoscaling::Client {
        aws_sdk_autoscaling::Client::new(&self.sdk_config().await)
    }

    /// A CloudWatch client that speaks moto's protocol (AWS JSON 1.0, see
    /// `vmscaler::aws::json_protocol`); the SDK's own CBOR is not understood by moto.
    pub async fn cloudwatch(&self) -> aws_sdk_cloudwatch::Client {
        self.aws().await.cloudwatch().clone()
    }

    /// Creates a tagged pool: `running` running members, `stopped` stopped ones, and
    /// `protected` running members that also carry `protect_tag` (if given).
    pub async fn create_tagged_pool(
        &self,
        tag: (&str, &str),
        running: usize,
        stopped: usize,
        protected: usize,
        protect_tag: Option<(&str, &str)>,
    ) -> TaggedPool {
        let ec2 = self.ec2().await;
        let mut protect_tags = vec![tag];
        protect_tags.extend(protect_tag);
        let pool = TaggedPool {
            running: launch(&ec2, running, &[tag]).await,
            protected: launch(&ec2, protected, &protect_tags).await,
            stopped: launch(&ec2, stopped, &[tag]).await,
        };
        if !pool.stopped.is_empty() {
            ec2.stop_instances().set_instance_ids(Some(pool.stopped.clone())).send().await.expect("stop instances");
        }
        pool
    }

    /// Creates an instance target group in moto's default VPC; its ARN.
    pub async fn create_target_group(&self, name: &str) -> String {
        self.create_target_group_of(name, aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum::Instance).await
    }

    /// Creates a target group of the given target type in moto's default VPC; its ARN.
    pub async fn create_target_group_of(
        &self,
        name: &str,
        target_type: aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum,
    ) -> String {
        use aws_sdk_elasticloadbalancingv2::types::ProtocolEnum;
        let ec2 = self.ec2().await;
        let vpcs = ec2.describe_vpcs().send().await.expect("describe vpcs");
        let vpc = vpcs.vpcs().first().and_then(|v| v.vpc_id()).expect("moto's default vpc").to_owned();
        let resp = self
            .aws()
            .await
            .elb()
            .create_target_group()
            .name(name)
            .protocol(ProtocolEnum::Http)
            .port(80)
            .vpc_id(vpc)
            .target_type(target_type)
            .send()
            .await
            .expect("create target group");
        resp.target_groups()[0].target_group_arn().expect("arn").to_owned()
    }

    /// Registers instances in a target group.
    pub async fn register_targets(&self, arn: &str, ids: &[String]) {
        use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
        let targets = ids.iter().map(|id| TargetDescription::builder().id(id).build()).collect();
        let elb = self.aws().await.elb().clone();
        elb.register_targets().target_group_arn(arn).set_targets(Some(targets)).send().await.expect("register");
    }

    /// Instance states by id, as DescribeInstances shows them (all instances of the server).
    pub async fn instance_states(&self) -> BTreeMap<String, String> {
        let ec2 = self.ec2().await;
        let resp = ec2.describe_instances().send().await.expect("describe instances");
        resp.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| Some((i.instance_id()?.to_owned(), i.state()?.name()?.as_str().to_owned())))
            .collect()
    }

    /// Creates a launch template and an Auto Scaling group using it.
    pub async fn create_asg(&self, name: &str, min: i32, max: i32, desired: i32) {
        let ec2 = self.ec2().await;
        let template = format!("{name}-template");
        ec2.create_launch_template()
            .launch_template_name(&template)
            .launch_template_data(
                RequestLaunchTemplateData::builder().image_id(AMI).instance_type(InstanceType::T3Micro).build(),
            )
            .send()
            .await
            .expect("create launch template");
        self.autoscaling()
            .await
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(LaunchTemplateSpecification::builder().launch_template_name(&template).build())
            .min_size(min)
            .max_size(max)
            .desired_capacity(desired)
            .availability_zones(format!("{REGION}a"))
            .send()
            .await
            .expect("create auto scaling group");
    }

    /// The group's desired capacity.
    pub async fn asg_desired(&self, name: &str) -> i32 {
        let resp = self
            .autoscaling()
            .await
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describe auto scaling groups");
        resp.auto_scaling_groups().first().and_then(|g| g.desired_capacity()).expect("group exists")
    }

    /// PutMetricData of `points` for one series, in calls of at most 500 datapoints.
    pub async fn put_metric(&self, namespace: &str, name: &str, dims: &[(&str, &str)], points: &[(Timestamp, f64)]) {
        let cw = self.cloudwatch().await;
        let dimensions: Vec<Dimension> =
            dims.iter().map(|(k, v)| Dimension::builder().name(*k).value(*v).build()).collect();
        let data: Vec<MetricDatum> = points
            .iter()
            .map(|(at, v)| {
                MetricDatum::builder()
                    .metric_name(name)
                    .set_dimensions(Some(dimensions.clone()))
                    .timestamp(aws_smithy_types::DateTime::from_secs(at.as_second()))
                    .value(*v)
                    .build()
            })
            .collect();
        for chunk in data.chunks(500) {
            cw.put_metric_data()
                .namespace(namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .expect("put metric data");
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Instance ids of a pool made by [`Moto::create_tagged_pool`].
#[derive(Debug, Default, Clone)]
pub struct TaggedPool {
    pub running: Vec<String>,
    pub stopped: Vec<String>,
    pub protected: Vec<String>,
}

async fn launch(ec2: &aws_sdk_ec2::Client, n: usize, tags: &[(&str, &str)]) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let n = i32::try_from(n).expect("instance count");
    let spec = TagSpecification::builder()
        .resource_type(ResourceType::Instance)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect()))
        .build();
    let resp = ec2
        .run_instances()
        .image_id(AMI)
        .instance_type(InstanceType::T3Micro)
        .min_count(n)
        .max_count(n)
        .tag_specifications(spec)
        .send()
        .await
        .expect("run instances");
    let mut ids: Vec<String> = resp.instances().iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
    ids.sort();
    ids
}

/// A repository path, for tests that read fixtures.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}
