//! Helpers for the end-to-end tests: real `attrib-coordinator`, `attrib-worker` and `attrib`
//! processes on 127.0.0.1, and a gRPC client. The binaries come from the same target
//! directory as the test (`scripts/test.sh` builds them first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use attrib_proto::auth::AttachToken;
use attrib_proto::v1;
use attrib_proto::v1::attrib_client::AttribClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Client = AttribClient<InterceptedService<Channel, AttachToken>>;

/// A built binary of this workspace.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --release --workspace --bins)",
        p.display()
    );
    p
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The small GPT-2 trained on IOI, the quickstart's default (`assets/ioi-2l4h64`).
pub fn ioi_model() -> PathBuf {
    repo().join("assets/ioi-2l4h64")
}

/// The golden tiny GPT-2 (2 layers, 4 heads, d_model 32).
pub fn tiny_model() -> PathBuf {
    repo().join("tests/fixtures/golden-tiny")
}

pub fn ioi() -> PathBuf {
    repo().join("datasets/ioi/ioi_vanilla_template_prompts.json")
}

/// `n` different IOI prompt files, in name order (the database stores each distinct file
/// once, so only different files fill it).
pub fn distinct_ioi_files(n: usize) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("datasets/ioi"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files.truncate(n);
    files
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Everything it wrote to its piped stderr (after it exited).
    pub fn stderr(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }

    /// Waits for the process to exit (at most `limit`) and returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A coordinator process with its URL.
pub struct Coordinator {
    pub proc: Proc,
    pub url: String,
    pub port: u16,
}

/// Starts `attrib-coordinator` on the tiny model; `listen` `None` = a free port. Its log
/// goes to the test's output.
pub fn coordinator(db: &Path, port: Option<u16>, extra: &[&str]) -> Coordinator {
    coordinator_on(&tiny_model(), db, port, extra)
}

/// `coordinator` on another model folder.
pub fn coordinator_on(model: &Path, db: &Path, port: Option<u16>, extra: &[&str]) -> Coordinator {
    spawn_coordinator(model, db, port, extra, Stdio::inherit())
}

/// `coordinator_on` with its log written to `log` (to read what it said).
pub fn coordinator_logged(
    model: &Path,
    db: &Path,
    port: Option<u16>,
    extra: &[&str],
    log: &Path,
) -> Coordinator {
    let file = std::fs::File::create(log).expect("create the coordinator's log");
    spawn_coordinator(model, db, port, extra, Stdio::from(file))
}

fn spawn_coordinator(
    model: &Path,
    db: &Path,
    port: Option<u16>,
    extra: &[&str],
    stderr: Stdio,
) -> Coordinator {
    let (child, url, port) = attrib_sim::cluster::spawn_coordinator(
        &bin("attrib-coordinator"),
        model,
        db,
        port.unwrap_or(0),
        extra,
        stderr,
    )
    .expect("start attrib-coordinator");
    let proc = Proc {
        child,
        name: "coordinator".into(),
    };
    Coordinator { proc, url, port }
}

/// Starts `attrib-coordinator` on the tiny model and `db` where it must refuse to start:
/// its stderr once it exited non-zero. Fails if it is still running after 30 s (it started
/// instead of refusing) or exits 0.
pub fn coordinator_refusal(db: &Path) -> String {
    let child = Command::new(bin("attrib-coordinator"))
        .arg("--model")
        .arg(tiny_model())
        .arg("--db")
        .arg(db)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start attrib-coordinator");
    let mut proc = Proc {
        child,
        name: "a coordinator that should refuse to start".into(),
    };
    let status = proc.wait_exit(Duration::from_secs(30));
    let err = proc.stderr();
    assert!(!status.success(), "it started: {err}");
    err
}

/// Starts `attrib-worker serve` for `url` on the CPU.
pub fn worker(url: &str, name: &str, model: &Path, extra: &[&str]) -> Proc {
    worker_on(url, name, model, "cpu", extra)
}

/// Starts `attrib-worker serve` for `url` on `devices` (one, or a node group's: "cpu,cpu").
pub fn worker_on(url: &str, name: &str, model: &Path, devices: &str, extra: &[&str]) -> Proc {
    let child = Command::new(bin("attrib-worker"))
        .arg("serve")
        .arg("--model")
        .arg(model)
        .args(["--coordinator", url, "--devices", devices, "--name", name])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start attrib-worker");
    Proc {
        child,
        name: name.to_string(),
    }
}

/// Runs the `attrib` client CLI to completion.
pub fn cli(url: &str, args: &[&str]) -> Output {
    Command::new(bin("attrib"))
        .args(["--coordinator", url])
        .args(args)
        .output()
        .expect("run attrib")
}

pub async fn client(url: &str, token: Option<&str>) -> Client {
    let ch = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .expect("connect to the coordinator");
    AttribClient::with_interceptor(ch, AttachToken::new(token).unwrap())
        .max_decoding_message_size(64 << 20)
}

/// The quickstart settings on `files` as one dataset each, with `train` train prompts.
pub fn request(files: &[PathBuf], batch_size: u32, train: u32, seed: u64) -> v1::SubmitJobRequest {
    v1::SubmitJobRequest {
        datasets: files
            .iter()
            .map(|f| v1::DatasetSpec {
                name: String::new(),
                files: vec![v1::PromptFileText {
                    name: f.display().to_string(),
                    json: std::fs::read_to_string(f).unwrap(),
                }],
            })
            .collect(),
        data: Some(v1::DataOptions {
            batch_size,
            train_size: train,
            test_size: 128,
            prepend_bos: true,
            seed,
            batches_per_unit: 1,
            edges_per_unit: 0,
        }),
        settings: Some((&attrib_proto::AttributionSettings::default()).into()),
        label: String::new(),
        faithfulness: None,
        device_class: String::new(),
    }
}

/// `req` with K batches per unit.
pub fn with_k(mut req: v1::SubmitJobRequest, k: u32) -> v1::SubmitJobRequest {
    req.data.as_mut().expect("data options").batches_per_unit = k;
    req
}

pub async fn submit(c: &mut Client, req: v1::SubmitJobRequest) -> String {
    c.submit_job(req).await.expect("submit").into_inner().job_id
}

/// Follows the job with `WatchJob` (its status now and after every change) until `pred`
/// holds, and returns that status. Fails if the job ends first, naming its last status, or
/// if `limit` passes.
async fn follow(
    c: &mut Client,
    job: &str,
    limit: Duration,
    pred: impl Fn(&v1::JobStatus) -> bool,
) -> v1::JobStatus {
    let mut last = None;
    let fut = async {
        let mut s = c
            .watch_job(v1::WatchJobRequest {
                job_id: job.to_string(),
            })
            .await
            .expect("watch")
            .into_inner();
        while let Some(m) = s.message().await.expect("watch stream") {
            let status = m.job.expect("a status");
            if pred(&status) {
                return Some(status);
            }
            last = Some(status);
        }
        None
    };
    let outcome = tokio::time::timeout(limit, fut).await;
    match outcome {
        Ok(Some(status)) => status,
        Ok(None) => panic!("job {job} ended before the condition held: {last:?}"),
        Err(_) => panic!("job {job}: condition not reached within {limit:?}: {last:?}"),
    }
}

/// Follows the job to its end and returns the final status.
pub async fn wait_end(c: &mut Client, job: &str) -> v1::JobStatus {
    follow(c, job, Duration::from_secs(300), |s| {
        s.state().is_terminal()
    })
    .await
}

/// Follows the job until `pred` holds (for waiting on progress mid-job): every change the
/// coordinator makes to the job's status reaches `pred`, with no polling.
pub async fn wait_for(
    c: &mut Client,
    job: &str,
    pred: impl Fn(&v1::JobStatus) -> bool,
) -> v1::JobStatus {
    follow(c, job, Duration::from_secs(120), pred).await
}

/// The job's status now (one `GetJob`).
pub async fn job_status(c: &mut Client, job: &str) -> v1::JobStatus {
    c.get_job(v1::GetJobRequest {
        job_id: job.to_string(),
    })
    .await
    .expect("get job")
    .into_inner()
    .job
    .expect("a status")
}

/// A done job's scores: (header, values).
pub async fn scores(
    c: &mut Client,
    job: &str,
    dataset: Option<u32>,
) -> (v1::ScoresHeader, Vec<f64>) {
    let mut s = c
        .get_scores(v1::GetScoresRequest {
            job_id: job.to_string(),
            dataset,
            chunk_size: 1000,
        })
        .await
        .expect("get scores")
        .into_inner();
    let mut header = None;
    let mut values = Vec::new();
    while let Some(m) = s.message().await.unwrap() {
        match m.part.unwrap() {
            v1::get_scores_response::Part::Header(h) => header = Some(h),
            v1::get_scores_response::Part::Chunk(c) => {
                assert_eq!(c.offset as usize, values.len());
                values.extend(c.scores)
            }
        }
    }
    (header.expect("header"), values)
}

/// The scores of a scores.json file exactly as written (shortest round-trip text per f64),
/// so two files or a file and received values compare bit for bit without parsing floats.
pub fn score_texts(json: &str) -> Vec<String> {
    json.split("\"score\":")
        .skip(1)
        .map(|rest| rest.split(['}', ',']).next().unwrap().to_string())
        .collect()
}

/// Received scores as scores.json writes them (see `score_texts`; ACDC's +∞ is the string
/// `"Infinity"`, through the scores file's own encoder).
pub fn as_texts(v: &[f64]) -> Vec<String> {
    #[derive(serde::Serialize)]
    struct Score(#[serde(with = "attrib_proto::scores::score_json")] f64);
    v.iter()
        .map(|&x| serde_json::to_string(&Score(x)).unwrap())
        .collect()
}

/// `attrib-worker attribute` on the tiny model, the in-process reference: its scores as
/// written (`score_texts`) and the parsed file.
pub fn attribute_in_process(
    files: &[PathBuf],
    out: &Path,
    batch_size: u32,
    train: u32,
    seed: u64,
) -> (Vec<String>, attrib_proto::ScoresFile) {
    attribute_in_process_with(files, out, batch_size, train, seed, &[])
}

/// `attribute_in_process` with more `attrib-worker attribute` flags.
pub fn attribute_in_process_with(
    files: &[PathBuf],
    out: &Path,
    batch_size: u32,
    train: u32,
    seed: u64,
    extra: &[&str],
) -> (Vec<String>, attrib_proto::ScoresFile) {
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let st = Command::new(bin("attrib-worker"))
        .arg("attribute")
        .arg("--model")
        .arg(tiny_model())
        .args(["--device", "cpu", "--dataset", &files.join(",")])
        .args([
            "--batch-size",
            &batch_size.to_string(),
            "--train-size",
            &train.to_string(),
        ])
        .args(["--seed", &seed.to_string()])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "attrib-worker attribute failed");
    let text = std::fs::read_to_string(out).unwrap();
    (score_texts(&text), serde_json::from_str(&text).unwrap())
}

/// The workers the coordinator lists now.
pub async fn workers(c: &mut Client) -> Vec<v1::WorkerInfo> {
    c.list_workers(v1::ListWorkersRequest {})
        .await
        .unwrap()
        .into_inner()
        .workers
}

/// Waits until the coordinator's workers satisfy `what` (`pred`) and returns them then. The
/// API has no stream of workers (`WatchJob` follows jobs), so this asks `ListWorkers`, every
/// 20 ms, for at most 60 s.
pub async fn wait_workers_until(
    c: &mut Client,
    what: &str,
    pred: impl Fn(&[v1::WorkerInfo]) -> bool,
) -> Vec<v1::WorkerInfo> {
    let t0 = Instant::now();
    loop {
        let ws = workers(c).await;
        if pred(&ws) {
            return ws;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: not within 60 s; workers: {ws:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `n` workers are connected.
pub async fn wait_workers(c: &mut Client, n: usize) {
    let what = format!("{n} workers joined");
    wait_workers_until(c, &what, |ws| ws.len() >= n).await;
}

impl Coordinator {
    /// The process is still running.
    pub fn proc_alive(&mut self) -> bool {
        self.proc.child.try_wait().expect("try_wait").is_none()
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET on 127.0.0.1 (Prometheus metrics): the whole response.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of one Prometheus series (`name`, or `name{labels}` exactly as exported) in a
/// `/metrics` text; 0 when it is absent (a counter nothing has incremented yet).
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series).then(|| value.parse().expect("a number"))
        })
        .unwrap_or(0.0)
}

pub use attrib_fuzz::zip_eq;

pub mod certs;
pub use certs::certificates;
