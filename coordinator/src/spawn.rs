//! `--spawn-workers N`: local `attrib-worker serve` processes for one machine. They die with
//! the coordinator (SIGTERM on its exit, and the kernel's parent-death signal if it crashes).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};

/// How to start the local workers.
#[derive(Debug, Clone)]
pub struct LocalWorkers {
    pub count: usize,
    /// `attrib-worker` binary (default: next to this one).
    pub binary: PathBuf,
    pub model_dir: PathBuf,
    /// Devices handed out round-robin (`cpu`, `cuda:0`, ...; `auto` lets each worker choose).
    pub devices: Vec<String>,
    pub token: Option<String>,
}

/// `attrib-worker` next to the running executable, else on PATH.
pub fn default_worker_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("attrib-worker")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("attrib-worker"))
}

pub fn spawn(workers: &LocalWorkers, url: &str) -> std::io::Result<Vec<Child>> {
    (0..workers.count)
        .map(|i| {
            let device = workers
                .devices
                .get(i % workers.devices.len().max(1))
                .map_or("auto", String::as_str);
            spawn_one(
                &workers.binary,
                &workers.model_dir,
                url,
                device,
                i,
                workers.token.as_deref(),
            )
        })
        .collect()
}

fn spawn_one(
    binary: &Path,
    model: &Path,
    url: &str,
    device: &str,
    i: usize,
    token: Option<&str>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .arg("--model")
        .arg(model)
        .arg("--coordinator")
        .arg(url)
        .arg("--device")
        .arg(device)
        .arg("--name")
        .arg(format!("local-{i}"))
        // Worker i's `auto` is GPU i mod count: the workers spread over the machine's GPUs.
        .arg("--local-index")
        .arg(i.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("ATTRIB_WORKER_TOKEN", t);
    }
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
    })
}

/// Asks the workers to finish their batch and stop, then waits for them.
pub async fn stop(children: &mut [Child]) {
    for c in children.iter() {
        if let Some(pid) = c.id() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
    }
    for c in children.iter_mut() {
        let _ = c.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each spawned worker is told its place, from which its `auto` device picks a GPU
    /// (`attrib-worker serve --local-index`): without it, every worker chose cuda:0.
    #[tokio::test]
    async fn each_spawned_worker_gets_its_own_local_index() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("attrib-worker");
        let log = dir.path().join("args");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let workers = LocalWorkers {
            count: 3,
            binary: fake,
            model_dir: "m".into(),
            devices: vec!["auto".into()],
            token: None,
        };
        for mut c in spawn(&workers, "http://127.0.0.1:1").unwrap() {
            assert!(c.wait().await.unwrap().success());
        }
        let mut lines: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        for (i, line) in lines.iter().enumerate() {
            assert!(line.contains("--device auto"), "{line}");
            assert!(line.ends_with(&format!("--local-index {i}")), "{line}");
        }
        assert_eq!(lines.len(), 3);
    }
}
