//! A node group of CPU members on the golden tiny model, with the watchdog's test faults: a
//! member that fails before a collective, one that panics while loading. Each wait here has
//! a deadline, so a group that hangs fails the test instead of hanging it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use Device::{Cpu, Cuda};

fn config(members: usize) -> EngineConfig {
    EngineConfig {
        model_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/golden-tiny"),
        devices: vec![Cpu; members],
        collective: CollectiveKind::Host,
        unit_delay: Duration::ZERO,
        memory_bytes: 0,
        collective_timeout: Duration::from_secs(60),
    }
}

/// Attribution unit `unit` of one job: two prompts of four tokens.
fn unit(unit: u32) -> v1::UnitAssignment {
    let ids = |seed: i64| (0..8).map(|i| 100 + seed * 10 + i).collect::<Vec<i64>>();
    let answer = |id: i64| v1::TokenIds { ids: vec![id] };
    v1::UnitAssignment {
        job_id: "job".into(),
        unit,
        settings: Some((&AttributionSettings::default()).into()),
        batch_size: 2,
        width: 4,
        clean: ids(unit as i64),
        corrupt: ids(unit as i64 + 50),
        answers: vec![answer(11), answer(12)],
        wrong_answers: vec![answer(21), answer(22)],
        first_batch: 2 * unit,
        ..Default::default()
    }
}

fn request(a: v1::UnitAssignment, reply: &tokio_mpsc::UnboundedSender<Answer>) -> UnitRequest {
    UnitRequest {
        session: 1,
        unit: a,
        scores: None,
        wanted: Arc::new(AtomicBool::new(true)),
        cancelled: Arc::new(AtomicBool::new(false)),
        passes: Arc::new(AtomicU64::new(0)),
        reply: reply.clone(),
    }
}

/// The next answer, or a failure once `deadline` passes.
fn next(rx: &mut tokio_mpsc::UnboundedReceiver<Answer>, deadline: Instant) -> Answer {
    loop {
        if let Ok(a) = rx.try_recv() {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no answer in time: the group hangs"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_member_that_fails_before_a_collective_ends_the_round_and_the_next_one_sums() {
    let (reply, mut answers) = tokio_mpsc::unbounded_channel();
    let (tx, rx) = mpsc::channel();
    // Queued before the group starts: rounds of units 0-2 and 3-5, in that order.
    for u in 0..6 {
        tx.send(request(unit(u), &reply)).unwrap();
    }
    let t0 = Instant::now();
    let faults = Faults {
        fail_before_collective: Some(1),
        ..Faults::default()
    };
    start_with(&config(3), CollectiveKind::Host, rx, faults).unwrap();
    let deadline = t0 + Duration::from_secs(10);
    let mut failed = Vec::new();
    for _ in 0..3 {
        let a = next(&mut answers, deadline);
        let e = a.result.err().expect("the round's units fail").to_string();
        assert!(
            e.contains("test fault: member 1 fails before the collective"),
            "{e}"
        );
        failed.extend(a.units);
    }
    failed.sort();
    assert_eq!(failed, [0, 1, 2]);

    // The group goes on: the next round's sum is each unit folded alone, to the bit.
    let a = next(&mut answers, t0 + Duration::from_secs(60));
    let Ok(Computed::Group(group)) = a.result else {
        panic!("a group result, not {:?}", a.result.err());
    };
    assert_eq!(group.units, [3, 4, 5]);
    let cfg = config(1);
    let (model, _) = crate::compute::load(&cfg, Cpu).unwrap();
    let slots = slots(&model.cfg, &unit(3)).unwrap();
    let mut want = Accumulator::attribution(slots - 1);
    for u in 3..6 {
        let r = run_request(&model, &cfg, &request(unit(u), &reply)).unwrap();
        want.fold_attribution(&r).unwrap();
    }
    assert_eq!(group.sums, want.encode());
}

#[test]
fn a_member_that_panics_while_loading_ends_start_with_an_error() {
    let (done, outcome) = mpsc::channel();
    std::thread::spawn(move || {
        let (_tx, rx) = mpsc::channel();
        let faults = Faults {
            panic_loading: Some(2),
            ..Faults::default()
        };
        let _ = done.send(start_with(&config(3), CollectiveKind::Host, rx, faults));
    });
    let started = outcome
        .recv_timeout(Duration::from_secs(60))
        .expect("start() ends instead of hanging");
    let e = started.expect_err("start() fails").to_string();
    assert!(e.contains("member 2 panicked while loading"), "{e}");
    assert!(e.contains("test fault"), "{e}");
}

#[test]
fn a_gpu_listed_twice_is_found_and_cpus_may_repeat() {
    assert_eq!(duplicate_gpu(&[Cuda(0), Cuda(1), Cuda(0)]), Some(Cuda(0)));
    assert_eq!(duplicate_gpu(&[Cpu, Cpu, Cuda(0), Cuda(1)]), None);
}

#[test]
fn auto_sums_on_the_host_and_nccl_stays_selectable() {
    assert_eq!(CollectiveKind::parse("auto").unwrap(), CollectiveKind::Host);
    assert_eq!(CollectiveKind::parse("nccl").unwrap(), CollectiveKind::Nccl);
    let e = CollectiveKind::parse("mpi").unwrap_err().to_string();
    assert!(e.contains("auto, host or nccl"), "{e}");
}
