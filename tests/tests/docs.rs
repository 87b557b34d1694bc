//! The README and `docs/` as a newcomer meets them: every relative link and every repository
//! path they name exists, and the README's five-minute tour runs exactly as printed, against
//! the real binaries.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use attrib_tests::{bin, repo};

/// README.md and every docs/*.md, sorted.
fn doc_files() -> Vec<PathBuf> {
    let root = repo();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files.insert(0, root.join("README.md"));
    files
}

/// The lines of a markdown file outside fenced code blocks (those hold commands and their
/// output, whose file names are arguments, not references), with their line numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// Targets of inline links and images, `[text](target)` and `![alt](target)`.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        match rest.find(')') {
            Some(j) => {
                out.push(&rest[..j]);
                rest = &rest[j + 1..];
            }
            None => break,
        }
    }
    out
}

/// Inline code spans: the odd-numbered pieces between backticks.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Extensions that make a backticked name without a '/' a file reference.
const KNOWN_EXTENSIONS: &[&str] = &[
    ".md", ".rs", ".sh", ".json", ".proto", ".png", ".toml", ".yaml", ".yml", ".py", ".sbatch",
];

/// The heuristic: a code span names a repository path when it is made only of the characters
/// paths here use (ASCII letters, digits, `.`, `_`, `-`, `/`: so no spaces, `$`, `*`, `<`,
/// `{`, `=`, `:` or `|`, which mark commands, globs, placeholders, URLs and patterns), does
/// not start with `-` (a flag), and contains a `/` or ends in a known extension.
fn path_like(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && (s.contains('/') || KNOWN_EXTENSIONS.iter().any(|e| s.ends_with(e)))
}

/// Paths under these are made by running something, so they do not exist in a checkout:
/// `out/` (scripts/quickstart.sh's results), `tour/` (the README tour's), `target/` (cargo's
/// builds and the scripts' logs, e.g. target/gpu-check/), `attrib-out/` (deploy/slurm's).
const OUTPUT_PREFIXES: &[&str] = &["out/", "tour/", "target/", "attrib-out/"];

/// Bare names of files the tools write by default (`attrib scores` / `attrib-worker
/// attribute --out scores.json`, `attrib faithfulness` / `attrib curve --out curve.json`).
const OUTPUT_NAMES: &[&str] = &["scores.json", "curve.json"];

/// The file and folder names in the repository (not descending into builds, environments
/// or git's own folder), for bare names such as `mask_gradient.rs`.
fn repo_names(dir: &Path, names: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        if meta.is_dir()
            && !matches!(name.as_str(), "target" | ".git" | "node_modules")
            && !name.starts_with(".venv")
        {
            repo_names(&e.path(), names);
        }
        names.insert(name);
    }
}

/// What is wrong with the backticked `path` (`None`: it exists or is exempt).
fn check_code_path(root: &Path, names: &BTreeSet<String>, path: &str) -> Option<String> {
    if OUTPUT_PREFIXES.iter().any(|p| path.starts_with(p)) || OUTPUT_NAMES.contains(&path) {
        return None;
    }
    if let Some(outside) = path.strip_prefix("../") {
        // The sibling checkout the project's reference data lives in (../shared): outside the
        // repository, so checked only where it is present.
        let first = outside.split('/').next().unwrap_or_default();
        if !root.join("..").join(first).exists() {
            return None;
        }
    }
    if !path.contains('/') {
        return (!names.contains(path))
            .then(|| format!("`{path}` is no file name in the repository"));
    }
    (!root.join(path).exists()).then(|| format!("`{path}` does not exist"))
}

/// What is wrong with the link `target` of `file` (`None`: it resolves).
fn check_link(file: &Path, target: &str) -> Option<String> {
    let target = target.split_whitespace().next().unwrap_or_default(); // drop a "title"
    if target.is_empty()
        || target.starts_with('#')
        || ["http://", "https://", "mailto:"]
            .iter()
            .any(|p| target.starts_with(p))
    {
        return None;
    }
    let path = target.split('#').next().unwrap();
    let resolved = file.parent().unwrap().join(path);
    (!resolved.exists()).then(|| format!("link ({target}) does not resolve"))
}

/// Every problem in one markdown file, as "file:line: what".
fn problems(root: &Path, names: &BTreeSet<String>, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let shown = file
        .strip_prefix(root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut out = Vec::new();
    for (n, line) in prose_lines(&text) {
        for t in link_targets(line) {
            out.extend(check_link(file, t).map(|p| format!("{shown}:{n}: {p}")));
        }
        for s in code_spans(line).into_iter().filter(|s| path_like(s)) {
            out.extend(check_code_path(root, names, s).map(|p| format!("{shown}:{n}: {p}")));
        }
    }
    out
}

#[test]
fn the_path_heuristic_tells_paths_from_other_code() {
    for p in [
        "scripts/quickstart.sh",
        "deploy/slurm/",
        "mask_gradient.rs",
        ".cargo/config.toml",
    ] {
        assert!(path_like(p), "{p} is a path");
    }
    for s in [
        "--token-positions",
        "http://127.0.0.1:50051",
        "∂loss/∂mask",
        "tests/fixtures/*/golden_eapig_*.json",
        "scripts/quickstart.sh path/to/gpt2",
        "A{l}.{h}",
        "attrib_proto::units::Accumulator",
        "attrib.v1",
        "$PWD/target",
    ] {
        assert!(!path_like(s), "{s} is not a path");
    }
    let root = repo();
    let mut names = BTreeSet::new();
    repo_names(&root, &mut names);
    assert!(check_code_path(&root, &names, "scripts/quickstart.sh").is_none());
    assert!(check_code_path(&root, &names, "scripts/quickstrat.sh").is_some());
    assert!(check_code_path(&root, &names, "mask_gradient.rs").is_none());
    assert!(check_code_path(&root, &names, "mask_gradiant.rs").is_some());
    assert!(check_code_path(&root, &names, "out/scores.json").is_none());
    let readme = root.join("README.md");
    assert!(check_link(&readme, "docs/cluster.md#work-units").is_none());
    assert!(check_link(&readme, "docs/clusters.md").is_some());
    assert!(check_link(&readme, "https://example.com/x").is_none());
}

#[test]
fn every_link_and_path_in_readme_and_docs_exists() {
    let root = repo();
    let mut names = BTreeSet::new();
    repo_names(&root, &mut names);
    let files = doc_files();
    assert!(files.len() > 5, "docs/ has its pages: {files:?}");
    let all: Vec<String> = files
        .iter()
        .flat_map(|f| problems(&root, &names, f))
        .collect();
    assert!(
        all.is_empty(),
        "README.md and docs/ name paths that do not exist:\n{}",
        all.join("\n")
    );
}

/// The README's tour: the first ```sh block after its heading.
fn tour_block(readme: &str) -> String {
    let after = readme
        .split_once("\n## A five-minute tour by hand\n")
        .expect("the README has a \"## A five-minute tour by hand\" section")
        .1;
    let start = after.find("\n```sh\n").expect("the tour has a ```sh block") + "\n```sh\n".len();
    let len = after[start..]
        .find("\n```")
        .expect("the tour's block is closed");
    after[start..start + len + 1].to_string()
}

/// The live processes of process group `pgid` (zombies excluded), as "pid command".
fn group_members(pgid: i32) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = tail.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            out.push(format!("{pid} {comm}"));
        }
    }
    out
}

/// The tour's shell and everything it started: one process group, killed when dropped so that
/// a failing or hanging tour leaves nothing behind.
struct Tour {
    child: Child,
    pgid: i32,
}

impl Tour {
    fn signal_group(&self, sig: i32) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-self.pgid, sig) };
    }

    /// Stops whatever is left of the group: SIGTERM, then SIGKILL after a grace period.
    fn stop_group(&self) {
        if group_members(self.pgid).is_empty() {
            return;
        }
        self.signal_group(libc::SIGTERM);
        let t0 = Instant::now();
        while !group_members(self.pgid).is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal_group(libc::SIGKILL);
    }
}

impl Drop for Tour {
    fn drop(&mut self) {
        self.stop_group();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all(r: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the tour did not write {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The tour runs in a fresh folder holding links to the repository's `assets/` and
/// `datasets/` and to this build's binaries as `target/release/`, so its repository-relative
/// paths work as printed and nothing is written into the checkout. Its block runs unchanged
/// under `bash -euo pipefail`.
#[test]
fn the_readme_tour_runs_as_printed() {
    let root = repo().canonicalize().unwrap();
    let block = tour_block(&std::fs::read_to_string(root.join("README.md")).unwrap());
    for needed in [
        "attrib-coordinator",
        "attrib-worker",
        "attrib submit",
        "tour/",
    ] {
        assert!(block.contains(needed), "the tour names {needed}:\n{block}");
    }
    if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", 50051)) {
        panic!(
            "port 50051 on 127.0.0.1 is taken ({e}): the README's tour starts its coordinator \
             there. Stop whatever listens on it (`ss -ltnp 'sport = :50051'`) and run again."
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let here = dir.path();
    let bin_dir = bin("attrib").parent().unwrap().to_path_buf();
    std::os::unix::fs::symlink(root.join("assets"), here.join("assets")).unwrap();
    std::os::unix::fs::symlink(root.join("datasets"), here.join("datasets")).unwrap();
    std::fs::create_dir(here.join("target")).unwrap();
    std::os::unix::fs::symlink(&bin_dir, here.join("target/release")).unwrap();
    std::fs::write(here.join("tour.sh"), &block).unwrap();

    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "tour.sh"])
        .current_dir(here)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The block means the defaults it prints, not a developer's environment.
    for (k, _) in std::env::vars() {
        if k.starts_with("ATTRIB_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().expect("start bash");
    let (out, err) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
    let pgid = child.id() as i32;
    let mut tour = Tour { child, pgid };

    let limit = Duration::from_secs(300);
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = tour.child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let left = group_members(pgid);
    tour.stop_group(); // before reading: a leaked server holds the pipes open
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    let logs = format!(
        "--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- tour/coordinator.log (end)\n{}\n--- tour/worker.log (end)\n{}",
        tail(&here.join("tour/coordinator.log")),
        tail(&here.join("tour/worker.log"))
    );
    match status {
        None => panic!("the tour did not finish within {limit:?}\n{logs}"),
        Some(s) if !s.success() => panic!("the tour failed ({s})\n{logs}"),
        Some(_) => {}
    }
    assert!(
        left.is_empty(),
        "the tour left processes running: {left:?}\n{logs}"
    );
    eprintln!(
        "the tour ran in {:.1}s\n{stdout}",
        t0.elapsed().as_secs_f64()
    );

    let t = here.join("tour");
    for name in ["eap.json", "ig.json", "exact.json"] {
        let s = json(&t.join(name));
        let n = s["n_edges"].as_u64().unwrap_or(0);
        assert!(n > 0, "{name}: n_edges {n}");
        assert_eq!(
            s["edges"].as_array().map(Vec::len),
            Some(n as usize),
            "{name}: one entry per edge"
        );
    }
    let curve = json(&t.join("curve.json"));
    assert!(
        curve["points"].as_array().is_some_and(|p| !p.is_empty()),
        "curve.json has points: {curve}"
    );
    let svg = std::fs::read_to_string(t.join("circuit.svg")).expect("circuit.svg");
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "circuit.svg is an SVG: {}",
        &svg[..svg.len().min(80)]
    );
    for page in ["report.html", "compare.html"] {
        let html = std::fs::read_to_string(t.join(page)).expect(page);
        assert!(
            html.trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html"),
            "{page} is HTML: {}",
            &html[..html.len().min(80)]
        );
    }
    // `attrib compare` printed the agreement table, with docs/methods.md's numbers for
    // AutoCircuit's quickstart (EAP) and EAP-IG-inputs.
    assert!(
        stdout.contains("Spearman"),
        "compare printed its table:\n{stdout}"
    );
    for (method, spearman) in [("EAP", "0.878"), ("EAP-IG-inputs", "0.949")] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(method) && l.contains(spearman)),
            "compare's row for {method} shows Spearman {spearman}:\n{stdout}"
        );
    }
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", 50051)).is_ok(),
        "port 50051 is free again after the tour"
    );
}
