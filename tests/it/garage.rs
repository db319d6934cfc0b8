//! Garage, a real distributed S3 server, for the S3 tests: one shared single-node server per
//! test run, or a 3-node cluster with replication factor 3. Each server dies with the test
//! process (it is started behind a shell that kills it when our pipe closes), and its folder
//! goes with it: the shared node's temp folder is never dropped, and every run that pushed
//! 1 GiB to it used to leave that on disk.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use marina_store::s3::{S3Config, S3Store};

use crate::common::free_port;

pub const ACCESS_KEY: &str = "GK31c2f218a2e44f485b94239e";
pub const SECRET_KEY: &str = "b892c0665f0ada8a4755dae98baa3b133590e11dae3bcc1f9d769d67f16c3835";
pub const BUCKET: &str = "marina";
const RPC_SECRET: &str = "4425f5c26c5e11581d3223904324dcb5b5d5dfb14e5e7f35e38c595424f5f1e6";

/// One Garage node.
pub struct Node {
    /// The folder holding this node's own folder, removed once the test process is gone.
    home: PathBuf,
    pub config: PathBuf,
    pub s3_port: u16,
    process: Mutex<Option<(Child, ChildStdin)>>,
}

fn garage_binary() -> String {
    let found = Command::new("sh")
        .args(["-c", "command -v garage"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "garage not found: run scripts/setup.sh (it installs garage with cargo install)"
    );
    "garage".to_owned()
}

impl Node {
    fn new(dir: &Path, name: &str, replication: u8) -> Self {
        let (s3_port, rpc_port) = (free_port(), free_port());
        let root = dir.join(name);
        std::fs::create_dir_all(&root).expect("node dir");
        let config = root.join("garage.toml");
        let text = format!(
            "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"lmdb\"\n\
             replication_factor = {replication}\nrpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{RPC_SECRET}\"\n\n\
             [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\nroot_domain = \".s3.garage.localhost\"\n",
            root = root.display()
        );
        std::fs::write(&config, text).expect("garage config");
        Self {
            home: dir.to_owned(),
            config,
            s3_port,
            process: Mutex::new(None),
        }
    }

    /// A started single-node server of its own (for tests that stop it).
    pub fn new_single(dir: &Path) -> Self {
        let node = Self::new(dir, "single", 1);
        node.start(true);
        node
    }

    /// Starts the server; `single` adds `--single-node --default-bucket`.
    pub fn start(&self, single: bool) {
        let flags = if single {
            "--single-node --default-bucket"
        } else {
            ""
        };
        let script = format!(
            "{} -c \"$1\" server {flags} >\"$1.log\" 2>&1 & g=$!; \
             if read _; then kill -9 $g; wait $g; else kill -9 $g; wait $g; rm -rf \"$2\"; fi",
            garage_binary()
        );
        let mut child = Command::new("sh")
            .args([
                "-c",
                &script,
                "sh",
                self.config.to_str().expect("utf-8 path"),
                self.home.to_str().expect("utf-8 path"),
            ])
            .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_KEY)
            .env("GARAGE_DEFAULT_BUCKET", BUCKET)
            .stdin(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start garage");
        let stdin = child.stdin.take().expect("stdin");
        *self.process.lock().expect("node lock") = Some((child, stdin));
        wait_for_port(self.s3_port);
    }

    /// `kill -9` the node.
    pub fn kill(&self) {
        if let Some((mut child, mut stdin)) = self.process.lock().expect("node lock").take() {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }

    /// Runs a `garage` admin command against this node; returns its stdout.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(garage_binary())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .expect("garage admin");
        assert!(
            output.status.success(),
            "garage {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }
}

fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("garage did not open port {port}");
}

/// The S3 settings marina needs to use a node, under `prefix`.
pub fn s3_config(endpoint: &str, prefix: &str) -> S3Config {
    S3Config {
        bucket: BUCKET.into(),
        region: "garage".into(),
        endpoint: Some(endpoint.into()),
        prefix: prefix.into(),
        force_path_style: true,
        insecure_skip_verify: false,
        copy_limit: None,
        upload_memory: None,
    }
}

/// Environment for a marina process using `endpoint`.
pub fn s3_env(endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("STORAGE_DRIVER", "s3"),
        ("S3_BUCKET", BUCKET),
        ("S3_REGION", "garage"),
        ("S3_ENDPOINT", endpoint),
        ("S3_PREFIX", prefix),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A store on `endpoint` under `prefix`, once the bucket answers.
pub async fn store(endpoint: &str, prefix: &str) -> S3Store {
    let store = S3Store::with_credentials(&s3_config(endpoint, prefix), ACCESS_KEY, SECRET_KEY)
        .expect("s3 store");
    for _ in 0..200 {
        if store.check().await.is_ok() {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("garage at {endpoint} did not answer");
}

/// The single-node Garage shared by every S3 test of this run.
pub fn shared() -> &'static Node {
    static NODE: OnceLock<(tempfile::TempDir, Node)> = OnceLock::new();
    let (_, node) = NODE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("garage dir");
        let node = Node::new_single(dir.path());
        (dir, node)
    });
    node
}

/// A unique key prefix, so tests sharing a bucket never see each other's keys.
pub fn unique_prefix(label: &str) -> String {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).expect("random");
    format!("{label}-{}", hex::encode(b))
}

/// Three nodes in three zones, replication factor 3, one bucket and key.
pub struct Cluster {
    pub nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("cluster dir");
        let nodes: Vec<Node> = (0..3)
            .map(|i| Node::new(dir.path(), &format!("n{i}"), 3))
            .collect();
        for node in &nodes {
            node.start(false);
        }
        let ids: Vec<String> = nodes
            .iter()
            .map(|n| n.admin(&["node", "id", "-q"]).trim().to_owned())
            .collect();
        for id in &ids[1..] {
            nodes[0].admin(&["node", "connect", id]);
        }
        for (i, id) in ids.iter().enumerate() {
            let short = id.split('@').next().expect("node id");
            nodes[0].admin(&[
                "layout",
                "assign",
                "-z",
                &format!("z{i}"),
                "-c",
                "1G",
                short,
            ]);
        }
        nodes[0].admin(&["layout", "apply", "--version", "1"]);
        nodes[0].admin(&[
            "key", "import", "-n", "marina", "--yes", ACCESS_KEY, SECRET_KEY,
        ]);
        nodes[0].admin(&["bucket", "create", BUCKET]);
        nodes[0].admin(&[
            "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", ACCESS_KEY,
        ]);
        Self { nodes, _dir: dir }
    }
}
