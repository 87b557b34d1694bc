//! `attrib-worker self-test`: the golden checks (AutoCircuit's variants, the EAP-IG library's
//! methods, ACDC, faithfulness) run from bundled fixtures on any device with the CPU's
//! tolerances, one line per check. The golden tests in `worker/tests/` call the same checks,
//! so an install is validated by exactly the code and bounds `cargo test` uses. Owns the
//! fixture layout and the list of checks; each family of checks lives in its own file.

pub mod acdc;
pub mod autocircuit;
pub mod eap_ig;
pub mod faithfulness;
pub mod golden;
pub mod tolerance;

use std::cell::OnceCell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tch::Device;

use crate::device::device_name;
use crate::model::Gpt2;
use crate::{Error, Result};

/// Why a check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The run's numbers differ from the golden ones: what differed, where.
    #[error("{0}")]
    Differs(String),
    /// A golden file is not what the oracle scripts write.
    #[error("golden file {path}: {reason}")]
    BadGolden { path: PathBuf, reason: String },
    /// The run itself failed.
    #[error(transparent)]
    Run(#[from] Error),
}

/// The result of one check: a one-line measure of how close it came, or why it failed.
pub type Outcome = std::result::Result<String, Failure>;

/// A model the checks run on, with the folder of its golden files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureModel {
    /// The tiny random GPT-2 the AutoCircuit goldens were made on.
    Tiny,
    /// The trained 2-layer IOI model of the EAP-IG goldens.
    Ioi,
}

impl FixtureModel {
    /// The model's HF folder, relative to the fixtures' root.
    pub fn dir(self) -> &'static str {
        match self {
            FixtureModel::Tiny => "tests/fixtures/golden-tiny",
            FixtureModel::Ioi => "assets/ioi-2l4h64",
        }
    }

    /// The folder of its golden files, relative to the fixtures' root.
    pub fn goldens(self) -> &'static str {
        match self {
            FixtureModel::Tiny => "tests/fixtures/golden-tiny",
            FixtureModel::Ioi => "tests/fixtures/ioi-2l4h64",
        }
    }

    /// Every file loading the model and its tokenizer reads.
    fn files(self) -> Vec<String> {
        ["config.json", "model.safetensors", "tokenizer.json"]
            .iter()
            .map(|f| format!("{}/{f}", self.dir()))
            .collect()
    }
}

/// The prompts of every golden run: AutoCircuit's IOI quickstart dataset.
pub const DATASET: &str = "datasets/ioi/ioi_vanilla_template_prompts.json";

/// One check: its name, what it reads, and how it runs.
pub struct Check {
    pub name: String,
    pub model: FixtureModel,
    /// Golden files, relative to the fixtures' root.
    pub goldens: Vec<String>,
    pub run: Box<dyn Fn(&SelfTest) -> Outcome>,
}

impl Check {
    /// Every file the check reads, relative to the fixtures' root.
    pub fn files(&self) -> Vec<String> {
        let mut files = self.model.files();
        files.push(DATASET.into());
        files.extend(self.goldens.iter().cloned());
        files
    }
}

/// Every check, in the order they run and print.
pub fn checks() -> Vec<Check> {
    let mut all = autocircuit::checks();
    all.extend(eap_ig::checks());
    all.extend(acdc::checks());
    all.extend(faithfulness::checks());
    all
}

/// Every file the checks read, relative to the fixtures' root, sorted, each once: what a
/// bundle copies (`self-test --list-fixtures`).
pub fn fixture_list() -> Vec<String> {
    let mut files: Vec<String> = checks().iter().flat_map(Check::files).collect();
    files.sort();
    files.dedup();
    files
}

/// The checks' context: where the fixtures are, the device, and each model loaded once.
pub struct SelfTest {
    pub root: PathBuf,
    pub device: Device,
    tiny: OnceCell<Gpt2>,
    ioi: OnceCell<Gpt2>,
}

impl SelfTest {
    pub fn new(root: PathBuf, device: Device) -> SelfTest {
        SelfTest {
            root,
            device,
            tiny: OnceCell::new(),
            ioi: OnceCell::new(),
        }
    }

    /// A fixture's path; an error naming it when it is missing.
    pub fn path(&self, rel: &str) -> Result<PathBuf> {
        let path = self.root.join(rel);
        if !path.exists() {
            return Err(Error::MissingFixture { path });
        }
        Ok(path)
    }

    pub fn dataset(&self) -> Result<PathBuf> {
        self.path(DATASET)
    }

    pub fn model_dir(&self, which: FixtureModel) -> Result<PathBuf> {
        self.path(which.dir())
    }

    /// A golden file of `which`'s folder, read.
    pub fn golden(
        &self,
        which: FixtureModel,
        file: &str,
    ) -> std::result::Result<golden::Golden, Failure> {
        golden::Golden::read(&self.path(&format!("{}/{file}", which.goldens()))?)
    }

    /// The model, loaded on the first call.
    pub fn model(&self, which: FixtureModel) -> Result<&Gpt2> {
        let cell = match which {
            FixtureModel::Tiny => &self.tiny,
            FixtureModel::Ioi => &self.ioi,
        };
        if cell.get().is_none() {
            let model = Gpt2::load(&self.model_dir(which)?, self.device)?;
            let _ = cell.set(model);
        }
        Ok(cell.get().expect("set above"))
    }
}

/// `attrib-worker self-test`'s options, as a library config that tests build directly.
#[derive(Debug, Clone)]
pub struct SelfTestConfig {
    pub device: Device,
    /// The folder holding `tests/fixtures/`, `assets/` and `datasets/` (a repository or a
    /// bundle's `fixtures/`); found from the current directory or the executable when absent.
    pub fixtures: Option<PathBuf>,
    /// Run only the checks of these names (all when empty).
    pub only: Vec<String>,
}

/// How a run went.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub passed: usize,
    pub total: usize,
}

/// Runs every check, printing one line each to `out` and a summary line last.
pub fn run_self_test(cfg: &SelfTestConfig, out: &mut dyn Write) -> Result<Summary> {
    refuse_tf32(cfg.device)?;
    let root = match &cfg.fixtures {
        Some(dir) => dir.clone(),
        None => find_fixtures()?,
    };
    let checks = selected(&cfg.only)?;
    // Every fixture up front, so a short bundle fails before minutes of checks.
    let st = SelfTest::new(root, cfg.device);
    for rel in checks.iter().flat_map(Check::files) {
        st.path(&rel)?;
    }
    let t0 = Instant::now();
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut passed = 0;
    for check in &checks {
        let t = Instant::now();
        let outcome = (check.run)(&st);
        let secs = t.elapsed().as_secs_f64();
        let line = match &outcome {
            Ok(measure) => format!("{:width$}  ok    {measure}  {secs:.1} s", check.name),
            Err(why) => format!("{:width$}  FAIL  {why}  {secs:.1} s", check.name),
        };
        passed += outcome.is_ok() as usize;
        writeln!(out, "{line}").map_err(write_error)?;
    }
    writeln!(
        out,
        "self-test: {passed} of {} checks passed on {} ({:.1} s)",
        checks.len(),
        device_name(cfg.device),
        t0.elapsed().as_secs_f64()
    )
    .map_err(write_error)?;
    Ok(Summary {
        passed,
        total: checks.len(),
    })
}

/// The checks named in `only`, in the usual order; all of them when it is empty.
fn selected(only: &[String]) -> Result<Vec<Check>> {
    let all = checks();
    if let Some(unknown) = only.iter().find(|n| !all.iter().any(|c| &c.name == *n)) {
        let names: Vec<String> = all.into_iter().map(|c| c.name).collect();
        return Err(Error::UnknownCheck {
            name: unknown.clone(),
            known: names.join(", "),
        });
    }
    Ok(all
        .into_iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
        .collect())
}

fn write_error(source: std::io::Error) -> Error {
    Error::Write {
        path: "standard output".into(),
        source,
    }
}

/// libtorch keeps fp32 matmuls in full precision unless this variable asks for TF32 (its
/// `float32_matmul_precision`, read once at start-up; 2.11's default is "highest"); the
/// goldens' tolerances hold only without TF32. (The worker's main sets NVIDIA_TF32_OVERRIDE=0
/// too, which covers cuBLAS and cuDNN whatever libtorch asks.)
fn refuse_tf32(device: Device) -> Result<()> {
    const VAR: &str = "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE";
    let on = std::env::var(VAR).is_ok_and(|v| {
        matches!(
            v.to_ascii_uppercase().as_str(),
            "1" | "ON" | "YES" | "TRUE" | "Y"
        )
    });
    if on && device.is_cuda() {
        return Err(Error::Tf32Enabled { var: VAR });
    }
    Ok(())
}

/// The fixtures' root when none is given: the first of the current directory, the
/// executable's folder and their parents that holds the golden tiny model, directly (a
/// repository) or in `fixtures/` (a bundle).
pub fn find_fixtures() -> Result<PathBuf> {
    let mut starts = vec![];
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.extend(exe.parent().map(Path::to_path_buf));
    }
    let marker = format!("{}/config.json", FixtureModel::Tiny.dir());
    for start in &starts {
        for dir in start.ancestors() {
            for root in [dir.to_path_buf(), dir.join("fixtures")] {
                if root.join(&marker).exists() {
                    return Ok(root);
                }
            }
        }
    }
    Err(Error::NoFixtures {
        searched: starts
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
