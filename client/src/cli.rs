//! The `attrib` command line (clap). A job's flags are `attrib_proto::JobSpec`, the ones
//! `attrib-worker attribute` takes, so a job means the same thing on either path.

use std::path::PathBuf;

use attrib_proto::device_class::parse_device_class;
use attrib_proto::job_spec::parse_label;
use attrib_proto::JobSpec;
use attrib_render::{Orientation, DEFAULT_MAX_EDGES};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "attrib's client: submit attribution jobs to a coordinator, follow them, fetch scores",
    after_help = format!("Exit codes: {}.", crate::exit::table_text())
)]
pub struct Cli {
    /// Coordinator URL.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:50051",
        env = "ATTRIB_COORDINATOR"
    )]
    pub coordinator: String,
    /// The coordinator's client token, when it requires one.
    #[arg(long, global = true, env = "ATTRIB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA the coordinator's certificate chains to (https:// URLs; default: system roots).
    #[arg(long, global = true, env = "ATTRIB_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Queue a job; prints its id (with --wait: follows it and prints the final status).
    Submit(SubmitArgs),
    /// Every job the coordinator knows.
    Jobs,
    /// One job's state and progress.
    Status { job: String },
    /// Follow a job until it is done, failed or cancelled.
    Watch { job: String },
    /// Cancel a queued or running job.
    Cancel { job: String },
    /// Delete a finished job (done, failed or cancelled) with its scores or curve, giving the
    /// space back to the disk.
    Delete { job: String },
    /// Fetch a done job's scores as the same JSON `attrib-worker attribute` writes.
    Scores(ScoresArgs),
    /// The workers connected to the coordinator.
    Workers,
    /// Circuit faithfulness of a done attribution job on its test prompts, computed by the
    /// workers: keep the k highest-|score| edges clean, patch the rest from the corrupt prompt.
    Faithfulness(FaithfulnessArgs),
    /// Draw a circuit as AutoCircuit's draw_seq_graph does: SVG, or PNG when --out ends in
    /// .png. Works offline on a scores file; a job id fetches the scores first.
    Render(RenderArgs),
    /// One self-contained HTML page: the job's settings, the circuit, a sortable table of the
    /// top edges and the faithfulness curve (when the job has one).
    Report(ReportArgs),
    /// Judge attribution methods against a reference (e.g. EAP-IG's exact scores): Spearman
    /// of |score| vs |reference| and ROC AUC for the reference's top k edges, plus MIB's
    /// CPR / CMD of faithfulness curves. Works offline on files, or fetches done jobs' scores;
    /// edges are matched by name.
    #[command(
        after_help = COMPARE_AFTER_HELP
    )]
    Compare(CompareArgs),
    /// Fetch a faithfulness curve: of a faithfulness job, or an attribution job's newest.
    Curve {
        job: String,
        #[arg(long, default_value = "curve.json")]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct FaithfulnessArgs {
    /// The attribution job whose scores choose the circuits.
    pub job: String,
    /// Edge counts k, comma-separated (0 and all edges are always added). Default:
    /// AutoCircuit's logarithmic counts 1..9, 10, 20, …
    #[arg(long, value_delimiter = ',')]
    pub edges: Vec<u64>,
    /// Where to write the curve.
    #[arg(long, default_value = "curve.json")]
    pub out: PathBuf,
    /// One dataset's scores and test prompts (multi-dataset jobs); default: combined.
    #[arg(long)]
    pub dataset: Option<u32>,
    /// Circuits per work unit: smaller spreads one unit's batches over more workers.
    #[arg(long, default_value_t = 8)]
    pub circuits_per_unit: u32,
    /// A label shown in listings: one line of printable text, at most 200 characters.
    #[arg(long, default_value = "", value_parser = parse_label)]
    pub label: String,
    /// Print the new job's id and return instead of following it (fetch with `attrib curve`).
    #[arg(long)]
    pub detach: bool,
    /// Run every unit on workers of this device class (`attrib workers` lists them).
    #[arg(long, value_parser = parse_device_class, env = "ATTRIB_DEVICE_CLASS")]
    pub device_class: Option<String>,
}

#[derive(Args)]
pub struct SubmitArgs {
    /// AutoCircuit prompt file; repeat for several datasets (scored per dataset and combined).
    #[arg(long = "dataset", required = true, value_delimiter = ',')]
    pub datasets: Vec<PathBuf>,
    /// Merge all files into one dataset, as `attrib-worker attribute --dataset a,b` does.
    #[arg(long)]
    pub merge: bool,
    /// A label shown in listings: one line of printable text, at most 200 characters.
    #[arg(long, default_value = "", value_parser = parse_label)]
    pub label: String,
    /// Follow the job with a progress bar until it ends; exit 1 if it fails.
    #[arg(long)]
    pub wait: bool,
    /// Exact patching (--method exact): edges per work unit (default 64). Units are K batches
    /// x a group of edges; the scores do not depend on it. How a cluster cuts the job, so not
    /// a setting of `attrib-worker attribute`.
    #[arg(
        long,
        default_value_t = 0,
        hide_default_value = true,
        env = "ATTRIB_EDGES_PER_UNIT"
    )]
    pub edges_per_unit: u32,
    /// Run every unit on workers of this device class (`attrib workers` lists them; e.g.
    /// cuda-sm90+libtorch-2.11.0+cu130): the scores are then the same bits on any cluster
    /// of that class. Default: the class of the first worker that takes a unit. A job stays
    /// queued while no worker of its class is connected.
    #[arg(long, value_parser = parse_device_class, env = "ATTRIB_DEVICE_CLASS")]
    pub device_class: Option<String>,
    #[command(flatten)]
    pub job: JobSpec,
}

#[derive(Args)]
pub struct ScoresArgs {
    pub job: String,
    /// Output file; without it the scores JSON goes to standard output (the summary to
    /// standard error).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// One dataset's scores (its index in the job); default: all datasets combined.
    #[arg(long)]
    pub dataset: Option<u32>,
    /// Top edges to print.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

/// Which edges to draw and how.
#[derive(Args)]
pub struct DrawArgs {
    /// Draw every edge with |score| at or above this (AutoCircuit's score_threshold).
    #[arg(long, conflicts_with = "top")]
    pub threshold: Option<f64>,
    /// Draw the K edges of largest |score| instead (default: 50 when no --threshold).
    #[arg(long)]
    pub top: Option<usize>,
    /// h: layers as columns, flow left to right (AutoCircuit's default); v: layers as rows.
    #[arg(long, default_value = "h")]
    pub orientation: Orientation,
    /// Title token-specific panels with the prompt's tokens instead of "pos N".
    #[arg(long)]
    pub token_labels: bool,
    /// Give columns only to layers with a drawn node (AutoCircuit's layer_spacing=False).
    #[arg(long)]
    pub no_layer_spacing: bool,
    /// Draw at most this many links, the largest |score| first; the picture says when it cuts.
    #[arg(long, default_value_t = DEFAULT_MAX_EDGES)]
    pub max_edges: usize,
    /// For a multi-dataset job: that dataset's scores (default: combined).
    #[arg(long)]
    pub dataset: Option<u32>,
}

#[derive(Args)]
pub struct RenderArgs {
    /// A scores file (`attrib scores`, `attrib-worker attribute`) or a done job's id.
    pub input: String,
    #[command(flatten)]
    pub draw: DrawArgs,
    /// Output file: .svg or .png (chosen by the extension; any other is refused).
    #[arg(long, default_value = "circuit.svg")]
    pub out: PathBuf,
    /// PNG pixels per SVG pixel.
    #[arg(long, default_value_t = 2.0)]
    pub scale: f32,
}

#[derive(Args)]
pub struct ReportArgs {
    /// A scores file or a done job's id (a job also brings its status and newest curve).
    pub input: String,
    #[command(flatten)]
    pub draw: DrawArgs,
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// A curve file (`attrib faithfulness`, `attrib-worker faithfulness`) to include.
    #[arg(long)]
    pub curve: Option<PathBuf>,
    /// Rows of the top-edge table.
    #[arg(long, default_value_t = 200)]
    pub top_edges: usize,
}

/// How `attrib compare` names its inputs, and an example (`attrib compare --help`).
const COMPARE_AFTER_HELP: &str = "Each scores input is [NAME=]FILE or [NAME=]JOB: a done job's id \
fetches its scores from --coordinator. Without NAME, a job, an `attrib scores` or \
`attrib-worker attribute` file is named by its method (e.g. 'eap-ig-inputs (5 steps)'), anything else \
(the EAP-IG golden fixtures) by its file stem. Every file must score exactly the same edges, in any \
order.

Example:
  attrib compare --reference exact=golden_eapig_exact.json EAP=golden_eapig_eap.json \\
      --curve EAP=curve.json --html compare.html";

#[derive(Args)]
pub struct CompareArgs {
    /// The reference scores, [NAME=]FILE or [NAME=]JOB: the attribution the others are
    /// judged against.
    #[arg(long, value_name = "[NAME=]FILE|JOB")]
    pub reference: String,
    /// The methods' scores, each [NAME=]FILE or [NAME=]JOB (a done job's id).
    #[arg(required = true, value_name = "[NAME=]FILE|JOB")]
    pub scores: Vec<String>,
    /// ROC AUC positives: the top k edges by |reference|, comma-separated (1 <= k < edges).
    #[arg(long, value_delimiter = ',', default_value = "5,10,20")]
    pub k: Vec<usize>,
    /// A faithfulness curve (`attrib curve`, `attrib faithfulness`), [NAME=]FILE; repeat for
    /// several. Summarised as MIB's CPR and CMD over the curve's own points.
    #[arg(long, value_name = "[NAME=]FILE")]
    pub curve: Vec<String>,
    /// Also write a self-contained HTML page: tables and a bar chart.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Also write the numbers as JSON (--json prints them on stdout instead of the tables).
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
}
