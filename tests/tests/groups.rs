//! Node groups: one `attrib-worker serve --devices cpu,cpu[,cpu]` process whose CPU "devices"
//! sum their units with the host collective (the same code as the NCCL backend but for the
//! all-reduce itself). A group gives the bits of `attrib-worker attribute` and of one worker,
//! sends one result per round rather than one per unit, keeps datasets apart, and losing the
//! whole group mid-job loses nothing. The group states its devices' class, and its results
//! carry it into the job's status and scores.

use std::time::Duration;

use attrib_proto::v1;
use attrib_tests::*;

/// `attrib-worker attribute` on one prompt file: train 64, batch 16 (4 batches).
fn reference(dir: &std::path::Path, file: &std::path::Path, name: &str) -> Vec<String> {
    attribute_in_process(&[file.to_path_buf()], &dir.join(name), 16, 64, 42).0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_two_and_three_cpu_devices_give_the_bits_of_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let second = repo().join("datasets/ioi/ioi_ABBA_template_0_prompts.json");
    let want = [
        reference(dir.path(), &ioi(), "a.json"),
        reference(dir.path(), &second, "b.json"),
    ];
    for devices in ["cpu", "cpu,cpu", "cpu,cpu,cpu"] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let db = dir.path().join(format!("{devices}.db"));
        let c = coordinator(&db, None, &["--metrics-listen", &listen]);
        let _group = worker_on(&c.url, "node", &tiny_model(), devices, &[]);
        let mut cl = client(&c.url, None).await;
        wait_workers(&mut cl, 1).await;
        let listed = workers(&mut cl).await;
        assert_eq!(
            listed[0].device, devices,
            "the group is one worker on every device"
        );
        // Two datasets of 4 units each (K = 1): rounds never mix them.
        let job = submit(&mut cl, request(&[ioi(), second.clone()], 16, 64, 42)).await;
        let st = wait_end(&mut cl, &job).await;
        assert_eq!(st.state(), v1::JobState::Done, "{devices}: {st:?}");
        let class = &listed[0].device_class;
        let made = class.starts_with("cpu") && class.contains("-t") && class.contains("+libtorch-");
        assert!(made, "{class}");
        assert_eq!(&st.device_class, class);
        for (d, want) in want.iter().enumerate() {
            let (h, got) = scores(&mut cl, &job, Some(d as u32)).await;
            assert_eq!(&as_texts(&got), want, "{devices}, dataset {d}");
            let meta: attrib_proto::ScoresMetadata =
                serde_json::from_str(&h.metadata_json).unwrap();
            assert_eq!(&meta.device_class, class);
        }
        let metrics = http_get(port, "/metrics");
        let groups = counter(&metrics, "attrib_group_results_total") as u64;
        let units = counter(&metrics, "attrib_units_done_total") as u64;
        assert_eq!(units, 8, "{devices}");
        let n = devices.split(',').count() as u64;
        if n == 1 {
            assert_eq!(groups, 0, "one device answers unit by unit");
        } else {
            // Each round covers up to n units of one dataset: at least 4/n rounds per
            // dataset, and fewer results than units.
            assert!(
                groups >= 2 * 4u64.div_ceil(n) && groups < units,
                "{devices}: {groups} group results for {units} units"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_killed_mid_job_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let want = reference(dir.path(), &ioi(), "a.json");
    let c = coordinator(&dir.path().join("kill.db"), None, &[]);
    // A round takes at least 1.5 s: the kill, sent as soon as `WatchJob` reports the first
    // round folded, lands while the next round computes unless this process stalls that long.
    let slow = ["--unit-delay-ms", "1500"];
    let mut group = worker_on(&c.url, "doomed", &tiny_model(), "cpu,cpu,cpu", &slow);
    let mut cl = client(&c.url, None).await;
    wait_workers(&mut cl, 1).await;
    let job = submit(&mut cl, with_k(request(&[ioi()], 16, 64, 42), 1)).await;
    // Killed with a round folded and the next one computing.
    wait_for(&mut cl, &job, |s| s.units_done >= 1).await;
    group.signal(libc::SIGKILL);
    group.wait_exit(Duration::from_secs(10));
    let mid = job_status(&mut cl, &job).await;
    assert!(
        mid.units_done < mid.units_total && !mid.state().is_terminal(),
        "killed mid-job: {mid:?}"
    );
    let _next = worker_on(&c.url, "next", &tiny_model(), "cpu,cpu", &[]);
    let st = wait_end(&mut cl, &job).await;
    assert_eq!(st.state(), v1::JobState::Done, "{st:?}");
    assert!(
        st.units_retried >= 1,
        "the dead group's units were handed out again: {st:?}"
    );
    let (_, got) = scores(&mut cl, &job, None).await;
    assert_eq!(as_texts(&got), want);
}

#[test]
fn a_group_refuses_nccl_without_gpus_and_bad_devices_clearly() {
    let run = |devices: &str, collective: &str| {
        let out = std::process::Command::new(bin("attrib-worker"))
            .args(["serve", "--coordinator", "http://127.0.0.1:9"])
            .arg("--model")
            .arg(tiny_model())
            .args(["--devices", devices, "--collective", collective])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{devices} {collective}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run("cpu,cpu", "nccl");
    assert!(e.contains("NCCL") && e.contains("--collective host"), "{e}");
    let e = run("cpu,gpu", "auto");
    assert!(e.contains("bad device \"gpu\""), "{e}");
    let e = run("cpu,cpu", "mpi");
    assert!(e.contains("unknown collective \"mpi\""), "{e}");
}
