//! The coordinator as an operator runs it, each against real processes: it stops when told
//! (SIGTERM with a worker attached, a bounded grace, a second signal), a restart resumes, a
//! second coordinator cannot share its database, a stopped worker loses its units after a
//! few missed heartbeats, and a full disk neither stops a restart nor loses what is stored.

use std::path::Path;
use std::time::{Duration, Instant};

use attrib_proto::v1;
use attrib_tests::*;
use tonic::Code;

/// Waits for `log` to contain `text` (at most 30 s), and returns the log.
fn wait_log(log: &Path, text: &str) -> String {
    let t0 = Instant::now();
    loop {
        let s = std::fs::read_to_string(log).unwrap_or_default();
        if s.contains(text) {
            return s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{text:?} not in the log within 30 s:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_worker_attached_commits_and_exits_0_and_the_restart_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (db, log) = (dir.path().join("a.db"), dir.path().join("c.log"));
    // A grace far longer than the test allows: the stop must not wait for it.
    let flags = ["--shutdown-grace-secs", "60"];
    let mut c = coordinator_logged(&tiny_model(), &db, None, &flags, &log);
    let _w = worker(&c.url, "w", &tiny_model(), &["--units-in-flight", "1"]);
    let mut client = client(&c.url, None).await;
    wait_workers(&mut client, 1).await;
    // One prompt per unit: hundreds of units, so the stop comes mid-job.
    let job = submit(&mut client, request(&[ioi()], 1, 800, 42)).await;
    wait_for(&mut client, &job, |s| s.units_done >= 20).await;

    let t0 = Instant::now();
    c.proc.signal(libc::SIGTERM);
    let exit = c.proc.wait_exit(Duration::from_secs(20));
    assert_eq!(exit.code(), Some(0), "{exit}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "the stop took {:?}",
        t0.elapsed()
    );
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("SIGTERM received: stopping"), "{said}");
    assert!(said.contains("what was folded is committed"), "{said}");

    // The same worker process dials the restart by itself; the job goes on from its commit.
    let c = coordinator(&db, Some(c.port), &[]);
    let mut client = attrib_tests::client(&c.url, None).await;
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert!(
        status.units_resumed >= 20,
        "the units folded before the stop were committed: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_outlives_the_grace_is_cut_off_and_a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    for (grace, second_signal) in [("2", false), ("600", true)] {
        let db = dir.path().join(format!("grace-{grace}.db"));
        let log = dir.path().join(format!("grace-{grace}.log"));
        let flags = ["--shutdown-grace-secs", grace];
        let mut c = coordinator_logged(&tiny_model(), &db, None, &flags, &log);
        let w = worker(&c.url, "frozen", &tiny_model(), &[]);
        let mut client = client(&c.url, None).await;
        wait_workers(&mut client, 1).await;
        // A stopped worker cannot close its side of the session: the server's graceful stop
        // would wait for it for ever.
        w.signal(libc::SIGSTOP);
        c.proc.signal(libc::SIGTERM);
        wait_log(&log, "SIGTERM received");
        let t0 = Instant::now();
        if second_signal {
            std::thread::sleep(Duration::from_millis(500));
            assert!(c.proc_alive(), "the first signal waits out the grace");
            c.proc.signal(libc::SIGINT);
            let exit = c.proc.wait_exit(Duration::from_secs(5));
            assert_eq!(exit.code(), Some(1), "{exit}");
            wait_log(&log, "second signal (SIGINT): exiting at once");
        } else {
            let exit = c.proc.wait_exit(Duration::from_secs(10));
            assert_eq!(exit.code(), Some(0), "{exit}");
            assert!(
                t0.elapsed() >= Duration::from_millis(1500),
                "{:?}",
                t0.elapsed()
            );
            wait_log(&log, "cut off");
        }
        w.signal(libc::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_coordinator_on_the_same_database_refuses_naming_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let first = coordinator(&db, None, &[]);
    let err = coordinator_refusal(&db);
    let holder = format!(
        "database {} is in use by another coordinator (pid {}, listening on {})",
        db.display(),
        first.proc.pid(),
        first.url
    );
    assert!(err.contains(&holder), "{err}");
    // Killed without a word, the first leaves no lock behind (the kernel drops it).
    drop(first);
    let again = coordinator(&db, None, &[]);
    let mut client = client(&again.url, None).await;
    assert!(client
        .list_jobs(v1::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_worker_loses_its_units_after_three_missed_heartbeats() {
    let dir = tempfile::tempdir().unwrap();
    // The unit timeout (600 s) is far beyond the test: only heartbeats can free the units.
    let c = coordinator(&dir.path().join("hb.db"), None, &["--heartbeat-ms", "300"]);
    let mut client = client(&c.url, None).await;
    let stopped = worker(
        &c.url,
        "stopped",
        &tiny_model(),
        &["--units-in-flight", "1"],
    );
    wait_workers(&mut client, 1).await;
    let job = submit(&mut client, request(&[ioi()], 1, 200, 42)).await;
    wait_for(&mut client, &job, |s| s.units_done >= 1).await;
    stopped.signal(libc::SIGSTOP);
    let _live = worker(&c.url, "live", &tiny_model(), &[]);
    let t0 = Instant::now();
    let ws = wait_workers_until(&mut client, "the stopped worker dropped", |ws| {
        ws.len() == 1 && ws[0].name == "live"
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "dropped only after {:?}",
        t0.elapsed()
    );
    let heard = ws[0].last_heard_unix_ms;
    assert!(heard >= ws[0].connected_unix_ms, "{ws:?}");
    let status = wait_end(&mut client, &job).await;
    assert_eq!(status.state(), v1::JobState::Done, "{status:?}");
    assert!(status.units_retried >= 1, "{status:?}");
    stopped.signal(libc::SIGCONT);
}

/// A small file system of its own (tmpfs), unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root).
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_disk_fills_a_restart_serves_every_stored_job_and_refuses_new_work() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to mount a 5 MiB tmpfs; not run");
        return;
    }
    let disk = SmallDisk::mount("5m").expect("mount a tmpfs");
    let db = disk.path().join("full.db");
    let c = coordinator(&db, None, &[]);
    let _w = worker(&c.url, "w", &tiny_model(), &[]);
    let mut client = client(&c.url, None).await;
    let mut done = Vec::new();
    let mut refused = None;
    for file in distinct_ioi_files(40) {
        match client.submit_job(request(&[file], 16, 16, 42)).await {
            Ok(r) => {
                let id = r.into_inner().job_id;
                assert_eq!(wait_end(&mut client, &id).await.state(), v1::JobState::Done);
                done.push(id);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("40 prompt files never filled 5 MiB");
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("attrib delete"), "{e:?}");
    let (_, first_scores) = scores(&mut client, &done[0], None).await;
    let port = c.port;
    drop(c); // killed on a full disk

    let c = coordinator(&db, Some(port), &[]);
    let mut client = attrib_tests::client(&c.url, None).await;
    let listed = client
        .list_jobs(v1::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), done.len(), "{listed:?}");
    for job in &done {
        scores(&mut client, job, None).await;
    }
    assert_eq!(scores(&mut client, &done[0], None).await.1, first_scores);
    let e = client
        .submit_job(request(&[ioi()], 16, 16, 42))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // Deleting jobs gives the space back: the file shrinks and new work is taken again.
    let before = std::fs::metadata(&db).unwrap().len();
    for job in &done[..done.len() / 2] {
        client
            .delete_job(v1::DeleteJobRequest {
                job_id: job.clone(),
            })
            .await
            .unwrap();
    }
    let after = std::fs::metadata(&db).unwrap().len();
    assert!(
        after < before,
        "{after} bytes after the deletes, {before} before"
    );
    let job = submit(&mut client, request(&[ioi()], 16, 16, 42)).await;
    assert_eq!(
        wait_end(&mut client, &job).await.state(),
        v1::JobState::Done
    );
    let e = client
        .get_job(v1::GetJobRequest {
            job_id: done[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_finished_jobs_and_a_running_job_cannot_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // 0.00005 days: about 4 s.
    let flags = ["--retention-days", "0.00005"];
    let c = coordinator(&dir.path().join("r.db"), None, &flags);
    let _w = worker(&c.url, "w", &tiny_model(), &["--units-in-flight", "1"]);
    let mut client = client(&c.url, None).await;
    let old = submit(&mut client, request(&[ioi()], 16, 16, 42)).await;
    assert_eq!(
        wait_end(&mut client, &old).await.state(),
        v1::JobState::Done
    );
    let running = submit(&mut client, request(&[ioi()], 1, 800, 42)).await;
    wait_for(&mut client, &running, |s| s.units_done >= 1).await;
    let e = client
        .delete_job(v1::DeleteJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("cancel it first"), "{e:?}");
    client
        .cancel_job(v1::CancelJobRequest {
            job_id: running.clone(),
        })
        .await
        .unwrap();
    // By hand, before its retention is up.
    let out = cli(&c.url, &["delete", &running]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.starts_with(&format!("deleted {running}; the database now holds ")),
        "{said}"
    );
    let out = cli(&c.url, &["delete", &running]);
    assert_eq!(out.status.code(), Some(4), "an unknown job: {out:?}");
    let out = cli(&c.url, &["workers"]);
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("last heard ") && listed.contains(" s ago"),
        "{listed}"
    );
    let t0 = Instant::now();
    loop {
        let gone = |id: &str| {
            let id = id.to_string();
            let mut client = client.clone();
            async move {
                let r = client.get_job(v1::GetJobRequest { job_id: id }).await;
                matches!(r, Err(e) if e.code() == Code::NotFound)
            }
        };
        if gone(&old).await && gone(&running).await {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "finished jobs outlived their retention"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
