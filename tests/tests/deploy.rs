//! `deploy/` agrees with the binaries: every flag and `ATTRIB_*` variable the sbatch script,
//! the compose files and the Kubernetes manifests pass (the Dockerfiles pass none: they only
//! build) exists in some attrib binary's
//! `--help` (subcommands included), and the coordinator's port is the one the workers dial.
//! Renaming a flag without updating `deploy/` fails here. Flags of the tools around attrib
//! (srun, sbatch, docker) and the scripts' own variables are listed below by name, so an
//! attrib flag that disappears cannot hide among them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use attrib_tests::{bin, repo};

/// Flags in the deployment files that belong to Slurm's commands, not to attrib.
const SLURM_FLAGS: &[&str] = &[
    "--chdir",
    "--cpus-per-task",
    "--export",
    "--gpus-per-task",
    "--help",
    "--job-name",
    "--kill-on-bad-exit",
    "--label",
    "--nodes",
    "--ntasks",
    "--ntasks-per-node",
    "--output",
    "--signal",
];

/// Variables compose itself substitutes (documented in compose.yaml's header).
const COMPOSE_OWN_VARS: &[&str] = &[
    "ATTRIB_CUDA_IMAGE",
    "ATTRIB_DATA",
    "ATTRIB_IMAGE",
    "ATTRIB_MODEL_DIR",
    "ATTRIB_PORT",
];

/// Variables the sbatch script itself reads (documented in its header).
const SBATCH_OWN_VARS: &[&str] = &[
    "ATTRIB_BIN",
    "ATTRIB_BIN_DIR",
    "ATTRIB_COORD_HOST",
    "ATTRIB_MERGE",
    "ATTRIB_OUT_DIR",
    "ATTRIB_READY_SECS",
    "ATTRIB_STOP_SECS",
    "ATTRIB_TASK_MODE",
    "ATTRIB_WORKER_MODE",
];

/// Every flag and `[env: ...]` variable in the help of `binary` and its subcommands.
fn help_words(
    binary: &Path,
    args: &mut Vec<String>,
    flags: &mut BTreeSet<String>,
    vars: &mut BTreeSet<String>,
) {
    let out = Command::new(binary)
        .args(&*args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{} {args:?} --help", binary.display());
    let text = String::from_utf8(out.stdout).unwrap();
    flags.extend(words(&text, "--"));
    vars.extend(words(&text, "ATTRIB_"));
    let subcommands: Vec<String> = text
        .split("Commands:")
        .nth(1)
        .map(|rest| rest.split("\n\n").next().unwrap_or(""))
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    for sub in subcommands {
        args.push(sub);
        help_words(binary, args, flags, vars);
        args.pop();
    }
}

/// Words of `text` starting with `prefix` (`--flag`, `ATTRIB_NAME`), comment lines skipped.
fn words(text: &str, prefix: &str) -> BTreeSet<String> {
    let part = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| {
            let mut found = Vec::new();
            let mut rest = l;
            while let Some(i) = rest.find(prefix) {
                let before = rest[..i].chars().last();
                let tail = &rest[i..];
                let end = tail[prefix.len()..]
                    .find(|c: char| !part(c))
                    .map_or(tail.len(), |e| e + prefix.len());
                let starts_word = tail[prefix.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric());
                if before.is_none_or(|c| !part(c)) && starts_word {
                    found.push(tail[..end].trim_end_matches(['-', '_']).to_string());
                }
                rest = &tail[end.max(1)..];
            }
            found
        })
        .collect()
}

fn files(dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![repo().join(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if exts.iter().any(|x| p.to_string_lossy().ends_with(x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(!out.is_empty(), "no {exts:?} under {dir}");
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

/// Ports in `text` after any of `keys` and a host: `--listen=0.0.0.0:50051`,
/// `--coordinator http://name:50051`, `ATTRIB_COORDINATOR: http://127.0.0.1:50051`.
fn ports_after(text: &str, keys: &[&str]) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for key in keys {
            let Some(i) = line.find(key) else { continue };
            let value = line[i + key.len()..]
                .trim_start_matches([' ', '=', ':', '"', '\''])
                .split([' ', '"', '\'', ','])
                .next()
                .unwrap_or("");
            // `127.0.0.1:${ATTRIB_PORT:-50051}` in compose: the default's digits.
            let last = value.rsplit(':').next().unwrap_or("");
            let digits: String = last.chars().filter(char::is_ascii_digit).collect();
            if let Ok(port) = digits.parse::<u16>() {
                out.insert(port);
            }
        }
    }
    out
}

#[test]
fn every_flag_and_variable_in_deploy_exists_and_ports_agree() {
    let (mut flags, mut vars) = (BTreeSet::new(), BTreeSet::new());
    for b in ["attrib-coordinator", "attrib-worker", "attrib"] {
        help_words(&bin(b), &mut Vec::new(), &mut flags, &mut vars);
    }
    assert!(flags.contains("--worker-token") && vars.contains("ATTRIB_WORKER_TOKEN"));
    let mut checked = 0;
    let mut unknown = Vec::new();
    let mut check = |path: &Path, foreign_flags: &[&str], own_vars: &[&str]| {
        let text = read(path);
        for f in words(&text, "--") {
            checked += 1;
            if !flags.contains(&f) && !foreign_flags.contains(&f.as_str()) {
                unknown.push(format!("{}: flag {f}", path.display()));
            }
        }
        for v in words(&text, "ATTRIB_") {
            checked += 1;
            if !vars.contains(&v) && !own_vars.contains(&v.as_str()) {
                unknown.push(format!("{}: variable {v}", path.display()));
            }
        }
    };
    check(
        &repo().join("deploy/slurm/attrib.sbatch"),
        SLURM_FLAGS,
        SBATCH_OWN_VARS,
    );
    for f in files("deploy/docker", &["compose.yaml", "compose.gpu.yaml"]) {
        check(&f, &[], COMPOSE_OWN_VARS);
    }
    for f in files("deploy/k8s", &[".yaml"]) {
        check(&f, &[], &[]);
    }
    assert!(
        unknown.is_empty(),
        "not in any attrib --help:\n{}",
        unknown.join("\n")
    );
    assert!(
        checked > 40,
        "only {checked} flags and variables found: is deploy/ read?"
    );

    // The port the coordinator listens on is the one workers dial, per deployment.
    for (name, texts) in [
        ("docker", files("deploy/docker", &["compose.yaml"])),
        ("k8s", files("deploy/k8s", &[".yaml"])),
    ] {
        let all: String = texts.iter().map(|p| read(p)).collect::<Vec<_>>().join("\n");
        let listen = ports_after(&all, &["--listen", "ATTRIB_LISTEN"]);
        let dialled = ports_after(&all, &["--coordinator", "ATTRIB_COORDINATOR"]);
        assert!(
            !listen.is_empty() && !dialled.is_empty(),
            "{name}: no ports found"
        );
        assert_eq!(listen, dialled, "{name}: listen vs dialled ports");
    }
}
