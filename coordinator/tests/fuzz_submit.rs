//! Fuzz and property tests of job submission (issue #12, part 5): `SubmitJobRequest`s decoded
//! from arbitrary bytes and built from random settings go through the planner, then a few
//! hundred go over gRPC to a real coordinator on loopback. No case may panic; every refusal
//! is a request error with a message (never INTERNAL or UNKNOWN); the coordinator stays up
//! and its stored jobs are unchanged. Each test prints how many cases it ran
//! (`cargo test ... -- --nocapture`).

mod common;

use std::fmt::Debug;
use std::time::Duration;

use attrib_coordinator::plan::{plan, JobPlan, MAX_DATASETS};
use attrib_coordinator::Error;
use attrib_fuzz::bytes::damaged;
use attrib_fuzz::prompts::{cut_file, real_file, small_file};
use attrib_fuzz::runner::{fuzz, Tally};
use attrib_proto::units::unit_ranges;
use attrib_proto::v1;
use attrib_proto::v1::attribution_settings::Points;
use attrib_proto::Method;
use common::grpc::{check_status, raw_client, undecodable, RawCodec};
use common::{request, Setup, MODEL};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use prost::Message;
use serde_json::json;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::Code;

// ---- strategies ----

fn text() -> impl Strategy<Value = String> + Clone {
    let samples = &[
        "",
        "x.json",
        "data/ioi 1.json",
        "données/ñ-日本.json",
        "😀",
        "\u{0}",
        "..",
        "/",
    ];
    attrib_fuzz::text::text(samples, "n", 5000)
}

/// Prompt-file text: mostly real files of 1 to 60 prompts, else broken ones.
fn file_json() -> impl Strategy<Value = String> {
    let one = |clean: &str, corrupt: &str, answers: &[&str]| {
        let p = json!({"clean": clean, "corrupt": corrupt, "answers": answers, "wrong_answers": [" John"]});
        json!({ "prompts": [p] }).to_string()
    };
    prop_oneof![
        8 => real_file(1..60),
        1 => Just("{\"prompts\": 3}".to_string()),
        1 => Just("{\"prompts\": []}".to_string()),
        1 => cut_file(1..20),
        // Longer than the tiny model's context of 64, a multi-token answer, empty answers.
        1 => Just(one(&"a ".repeat(80), &"b ".repeat(80), &[" Mary"])),
        1 => Just(one("When Mary and John", "When Anna and Paul", &[" Ashkenazi-Goldberg"])),
        1 => Just(one("a", "b", &[])),
        1 => any::<String>(),
    ]
}

fn prompt_file(json: impl Strategy<Value = String>) -> impl Strategy<Value = v1::PromptFileText> {
    (text(), json).prop_map(|(name, json)| v1::PromptFileText { name, json })
}

fn dataset() -> impl Strategy<Value = v1::DatasetSpec> {
    let name = prop_oneof![3 => Just(String::new()), 1 => text()];
    let files = prop_oneof![8 => vec(prompt_file(file_json()), 1..3), 1 => Just(vec![])];
    (name, files).prop_map(|(name, files)| v1::DatasetSpec { name, files })
}

fn datasets() -> impl Strategy<Value = Vec<v1::DatasetSpec>> {
    prop_oneof![
        12 => vec(dataset(), 1..3),
        1 => Just(vec![]),
        // One more than allowed: refused before anything is parsed.
        1 => Just(vec![v1::DatasetSpec::default(); MAX_DATASETS + 1]),
    ]
}

fn big_u32() -> impl Strategy<Value = u32> + Clone {
    prop_oneof![Just(1_000_000_000u32), Just(u32::MAX), any::<u32>()]
}

/// Data options with sizes from the strategies given.
fn data(
    batch_size: impl Strategy<Value = u32>,
    train_size: impl Strategy<Value = u32>,
    test_size: impl Strategy<Value = u32>,
    batches_per_unit: impl Strategy<Value = u32>,
) -> impl Strategy<Value = v1::DataOptions> {
    let sizes = (batch_size, train_size, test_size, batches_per_unit);
    (sizes, any::<bool>(), any::<u64>()).prop_map(|((b, train, test, k), prepend_bos, seed)| {
        v1::DataOptions {
            batch_size: b,
            train_size: train,
            test_size: test,
            prepend_bos,
            seed,
            batches_per_unit: k,
            edges_per_unit: 0,
        }
    })
}

fn random_data() -> impl Strategy<Value = v1::DataOptions> {
    data(
        prop_oneof![8 => 1u32..=8, 1 => Just(0u32), 1 => Just(16u32), 2 => big_u32()],
        prop_oneof![8 => 0u32..=48, 2 => big_u32()],
        prop_oneof![8 => 0u32..=16, 1 => big_u32()],
        prop_oneof![6 => 0u32..=4, 1 => Just(u32::MAX), 1 => any::<u32>()],
    )
}

/// Settings from the strategies given; token positions with probability `token_positions`.
fn settings(
    grad_function: impl Strategy<Value = i32>,
    answer_function: impl Strategy<Value = i32>,
    points: impl Strategy<Value = Option<Points>>,
    token_positions: f64,
) -> impl Strategy<Value = v1::AttributionSettings> {
    let flags = (any::<bool>(), prop::bool::weighted(token_positions));
    // Mostly the mask gradient; sometimes another method (or an unknown one), with steps
    // and taus that may or may not fit it.
    let method = (
        prop_oneof![6 => Just(0i32), 3 => -1i32..=7],
        prop_oneof![4 => Just(0u32), 3 => 1u32..=3, 1 => big_u32()],
        prop_oneof![4 => Just(vec![]), 1 => prop::collection::vec(prop_oneof![Just(1e-3), Just(0.0), Just(f64::NAN), Just(-1.0)], 0..70)],
    );
    (grad_function, answer_function, points, flags, method).prop_map(
        |(g, a, points, (qkv, tp), (method, steps, taus))| v1::AttributionSettings {
            grad_function: g,
            answer_function: a,
            points,
            separate_qkv: qkv,
            token_positions: tp,
            method,
            steps,
            taus,
        },
    )
}

fn random_settings() -> impl Strategy<Value = v1::AttributionSettings> {
    let odd = [
        0.0,
        0.5,
        1.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN_POSITIVE,
        -3.0,
    ];
    let mask_val = prop_oneof![10 => prop::sample::select(odd.to_vec()), 1 => any::<f64>()];
    let samples = prop_oneof![Just(0u32), 1u32..=8, Just(u32::MAX), any::<u32>()];
    let points = prop_oneof![
        1 => Just(None),
        3 => mask_val.prop_map(|v| Some(Points::MaskVal(v))),
        2 => samples.prop_map(|n| Some(Points::IntegratedGradSamples(n))),
    ];
    let function = |valid| prop_oneof![6 => valid, 1 => Just(0i32), 1 => any::<i32>()];
    settings(function(1i32..=4), function(1i32..=2), points, 0.3)
}

/// `job_ids`: ids that may exist (the done and the queued job of the end-to-end test).
fn faithfulness(job_ids: Vec<String>) -> impl Strategy<Value = v1::FaithfulnessSpec> {
    let ids = if job_ids.is_empty() {
        vec![String::new()]
    } else {
        job_ids
    };
    (
        prop_oneof![3 => prop::sample::select(ids), 1 => text()],
        vec(prop_oneof![0u64..200, Just(u64::MAX), any::<u64>()], 0..6),
        prop_oneof![3 => 0u32..=8, 1 => big_u32()],
        prop::option::of(prop_oneof![0u32..3, Just(u32::MAX)]),
    )
        .prop_map(
            |(id, edge_counts, per_unit, dataset)| v1::FaithfulnessSpec {
                scores_job_id: id,
                edge_counts,
                circuits_per_unit: per_unit,
                dataset,
            },
        )
}

/// A request of parts from the strategies given.
fn request_of(
    datasets: impl Strategy<Value = Vec<v1::DatasetSpec>>,
    data: impl Strategy<Value = Option<v1::DataOptions>>,
    settings: impl Strategy<Value = Option<v1::AttributionSettings>>,
    label: impl Strategy<Value = String>,
    faithfulness: impl Strategy<Value = Option<v1::FaithfulnessSpec>>,
) -> impl Strategy<Value = v1::SubmitJobRequest> {
    (datasets, data, settings, label, faithfulness).prop_map(
        |(datasets, data, settings, label, faithfulness)| v1::SubmitJobRequest {
            datasets,
            data,
            settings,
            label,
            faithfulness,
            device_class: String::new(),
        },
    )
}

fn random_request(job_ids: Vec<String>) -> impl Strategy<Value = v1::SubmitJobRequest> {
    request_of(
        datasets(),
        prop::option::weighted(0.95, random_data()),
        prop::option::weighted(0.95, random_settings()),
        prop_oneof![3 => Just(String::new()), 1 => text()],
        prop::option::weighted(0.1, faithfulness(job_ids)),
    )
}

/// A request that plans: 1 or 2 datasets of 1 or 2 real files, sizes that fit, valid
/// settings.
fn valid_random_request() -> impl Strategy<Value = v1::SubmitJobRequest> {
    let dataset = (text(), vec(prompt_file(real_file(30..60)), 1..3))
        .prop_map(|(name, files)| v1::DatasetSpec { name, files });
    let data = (1u32..=4).prop_flat_map(|b| data(Just(b), b..=24, 0u32..=6, 0u32..=3));
    let points = prop_oneof![
        (0.0f64..=1.0).prop_map(Points::MaskVal),
        (1u32..=8).prop_map(Points::IntegratedGradSamples),
    ];
    let settings = settings(1i32..=4, 1i32..=2, points.prop_map(Some), 0.2);
    let (data, settings) = (data.prop_map(Some), settings.prop_map(Some));
    request_of(vec(dataset, 1..3), data, settings, text(), Just(None))
}

/// Half near-valid requests (a valid one with some fields taken from a random one), half
/// random ones; some faithfulness jobs alone.
fn requests(job_ids: Vec<String>) -> impl Strategy<Value = v1::SubmitJobRequest> {
    let mask = prop_oneof![2 => Just(0u8), 3 => (0..5u32).prop_map(|i| 1u8 << i), 1 => any::<u8>()];
    let near_valid = (
        valid_random_request(),
        random_request(job_ids.clone()),
        mask,
    );
    let near_valid = near_valid.prop_map(|(mut r, random, mask)| {
        let take = |bit: u8| mask & (1 << bit) != 0;
        if take(0) {
            r.datasets = random.datasets;
        }
        if take(1) {
            r.data = random.data;
        }
        if take(2) {
            r.settings = random.settings;
        }
        if take(3) {
            r.label = random.label;
        }
        if take(4) {
            r.faithfulness = random.faithfulness;
        }
        r
    });
    // A faithfulness job alone: datasets, data and settings come from its attribution job.
    let faithfulness_only = faithfulness(job_ids.clone()).prop_map(|f| v1::SubmitJobRequest {
        faithfulness: Some(f),
        ..Default::default()
    });
    prop_oneof![
        4 => near_valid,
        4 => random_request(job_ids),
        1 => faithfulness_only,
    ]
}

/// Encoded requests, damaged, or random bytes.
fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
    let encoded = (1u32..=4, 4u32..=24, 0u32..=8, 24usize..=48).prop_map(|(b, t, s, n)| {
        let mut r = request(b, t, s);
        r.datasets[0].files[0].json = small_file(0, n);
        r.encode_to_vec()
    });
    prop_oneof![3 => vec(any::<u8>(), 0..256), 7 => damaged(encoded)]
}

// ---- checks ----

/// `plan`'s answer: an error that names the problem, or a plan that keeps its promises.
fn check_plan(
    req: &v1::SubmitJobRequest,
    planned: Result<JobPlan, Error>,
) -> Result<(), TestCaseError> {
    let p = match planned {
        Ok(p) => p,
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(!msg.trim().is_empty(), "{e:?}");
            let status = tonic::Status::from(e);
            check_status(&status)?;
            prop_assert_eq!(status.code(), Code::InvalidArgument, "{}", msg);
            // With one structural problem, the message names it.
            let settings_bad = req
                .settings
                .as_ref()
                .is_none_or(|s| attrib_proto::AttributionSettings::try_from(s).is_err());
            let problems: Vec<&str> = [
                (req.faithfulness.is_some(), "faithfulness"),
                (settings_bad, "settings"),
                (req.data.is_none(), "data"),
                (
                    req.datasets.is_empty() || req.datasets.len() > MAX_DATASETS,
                    "datasets",
                ),
            ]
            .into_iter()
            .filter_map(|(bad, what)| bad.then_some(what))
            .collect();
            if let [what] = problems[..] {
                prop_assert!(msg.contains(what), "{what}: {msg}");
            }
            return Ok(());
        }
    };
    prop_assert!(req.faithfulness.is_none());
    let data = req.data.expect("planned with data");
    let (b, k) = (
        data.batch_size as usize,
        data.batches_per_unit.max(1) as usize,
    );
    prop_assert_eq!(p.batches_per_unit, k);
    prop_assert_eq!(p.datasets.len(), req.datasets.len());
    // Units per batch range: one per τ for ACDC (on the first batch only), one per edge group
    // for exact patching (whole passes of at least the edges asked for), else one.
    let acdc = matches!(p.settings.method, Method::Acdc { .. });
    let groups = match (&p.settings.method, p.edges_per_unit) {
        (Method::Acdc { taus }, _) => taus.len(),
        (Method::Exact, Some(e)) => {
            prop_assert!(e >= data.edges_per_unit as usize && e > 0);
            p.graph.n_edges().div_ceil(e)
        }
        (Method::Exact, None) => return Err(TestCaseError::fail("exact without edge groups")),
        _ => 1,
    };
    let mut units = 0u32;
    for d in &p.datasets {
        prop_assert_eq!(d.batches.len(), data.train_size as usize / b);
        prop_assert!(!d.batches.is_empty());
        let used = if acdc { 1 } else { d.batches.len() };
        prop_assert_eq!(&d.units, &unit_ranges(used, k));
        prop_assert_eq!(d.first_unit, units);
        prop_assert_eq!(d.prompts as usize, used * b);
        if let Some(seq) = p.graph.seq_len {
            prop_assert_eq!(seq, d.width);
        }
        units += (d.units.len() * groups) as u32;
    }
    prop_assert_eq!(p.n_units(), units);
    prop_assert!(p.unit(units).is_none());
    prop_assert!(p.assignment("j", units, false).is_none());
    prop_assert_eq!(p.new_sums().len(), p.datasets.len());
    for u in 0..units.min(40) {
        let r = p.unit(u).expect("a unit of the plan");
        let a = p.assignment("j", u, false).expect("an assignment");
        let n = r.batches.len() * b;
        prop_assert_eq!(a.clean.len(), n * a.width as usize);
        prop_assert_eq!(a.corrupt.len(), n * a.width as usize);
        prop_assert_eq!(a.answers.len(), n);
        prop_assert_eq!(a.wrong_answers.len(), n);
        prop_assert_eq!(a.batch_size as usize, b);
    }
    Ok(())
}

// ---- tests ----

/// Requests through the planner; `decode` makes them from the strategy's values. Each kind of
/// case must come at least as often as `floors` says.
fn fuzz_plan<S: Strategy>(
    name: &str,
    cases: u32,
    requests: S,
    decode: impl Fn(S::Value) -> Result<v1::SubmitJobRequest, prost::DecodeError>,
    floors: &[(&str, usize)],
) where
    S::Value: Debug,
{
    let tally = Tally::new(&["planned", "refused"]);
    fuzz(name, cases, requests, |r| match decode(r) {
        Ok(req) => {
            let p = plan(&req, &MODEL);
            tally.add(if p.is_ok() { "planned" } else { "refused" });
            check_plan(&req, p)
        }
        Err(e) => {
            tally.add("undecodable");
            prop_assert!(!e.to_string().is_empty());
            Ok(())
        }
    });
    tally.print(name);
    tally.assert_at_least(name, floors);
}

/// Arbitrary and damaged bytes decoded as a SubmitJobRequest, planned when they decode.
#[test]
fn fuzz_submit_plan_from_bytes() {
    let name = "fuzz submit requests (decoded from bytes)";
    // Three runs of 10,000 gave 122-130 planned, 1511-1624 refused, 8254-8367 undecodable;
    // the floors are about a third of the fewest.
    let floors = [("planned", 40), ("refused", 500), ("undecodable", 2700)];
    fuzz_plan(
        name,
        10_000,
        request_bytes(),
        |b| v1::SubmitJobRequest::decode(&b[..]),
        &floors,
    );
}

/// Structured requests with random settings, sizes and files.
#[test]
fn fuzz_submit_plan_structured() {
    // Three runs of 6000 gave 459-502 planned and 5498-5541 refused; the floors are about a
    // third of the fewest.
    fuzz_plan(
        "fuzz submit requests (structured)",
        6000,
        requests(vec![]),
        Ok,
        &[("planned", 150), ("refused", 1800)],
    );
}

/// What the end-to-end test sends: a request, or bytes as they come.
#[derive(Debug, Clone)]
enum Submission {
    // Boxed: a request is far larger than the bytes variant.
    Typed(Box<v1::SubmitJobRequest>),
    Raw(Vec<u8>),
}

impl Submission {
    /// Whether it asks for a faithfulness job.
    fn faithfulness(&self) -> bool {
        match self {
            Submission::Typed(r) => r.faithfulness.is_some(),
            Submission::Raw(b) => {
                v1::SubmitJobRequest::decode(&b[..]).is_ok_and(|r| r.faithfulness.is_some())
            }
        }
    }

    /// SubmitJob with it; raw bytes go to the server's decoder as they are.
    async fn send(self, channel: Channel) -> Result<v1::SubmitJobResponse, tonic::Status> {
        match self {
            Submission::Typed(req) => {
                let mut client = v1::attrib_client::AttribClient::new(channel);
                client
                    .submit_job(*req)
                    .await
                    .map(tonic::Response::into_inner)
            }
            Submission::Raw(bytes) => {
                let path = PathAndQuery::from_static("/attrib.v1.Attrib/SubmitJob");
                let mut grpc = raw_client(channel).await?;
                let answer = grpc
                    .unary(tonic::Request::new(bytes), path, RawCodec)
                    .await?;
                let answer = v1::SubmitJobResponse::decode(&answer.into_inner()[..]);
                Ok(answer.expect("the coordinator answers a SubmitJobResponse"))
            }
        }
    }
}

/// A real coordinator on loopback: a done job and a queued one, then random requests over
/// gRPC. Each is refused with a request error and a message, or queued; the server answers
/// ListJobs and health afterwards, both jobs are as they were, and the idle worker is idle.
#[test]
fn fuzz_submit_grpc_coordinator_stays_up() {
    let setup = Setup::new(1);
    let (coord, rt) = (setup.coord(), &setup.rt);
    let (queued, _) = rt.block_on(coord.submit(request(2, 8, 0))).expect("submit");
    let queued_status = rt.block_on(coord.status(&queued)).expect("status");
    let (typed_channel, raw_channel) = (setup.channel(), setup.channel());
    let any_request = prop_oneof![
        4 => requests(vec![setup.done.clone(), queued.clone()]).prop_map(|r| Submission::Typed(Box::new(r))),
        1 => request_bytes().prop_filter_map("does not decode", |b| {
            v1::SubmitJobRequest::decode(&b[..]).ok().map(|r| Submission::Typed(Box::new(r)))
        }),
        // Bytes as they come, decodable or not: the server's decoder sees them.
        1 => request_bytes().prop_map(Submission::Raw),
    ];
    let name = "fuzz submit requests (gRPC, coordinator stays up)";
    const UNDECODABLE: &str = "undecodable (INTERNAL from tonic's decoder)";
    let kinds = [
        "queued",
        "of them faithfulness",
        "INVALID_ARGUMENT",
        "other refusals",
        UNDECODABLE,
    ];
    let tally = Tally::new(&kinds);
    fuzz(name, 1000, any_request, |submission| {
        let faithfulness = submission.faithfulness();
        let channel = match &submission {
            Submission::Typed(_) => typed_channel.clone(),
            Submission::Raw(_) => raw_channel.clone(),
        };
        let send = submission.send(channel);
        let sent = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), send).await });
        match sent.map_err(|_| TestCaseError::fail("SubmitJob took over 30 s"))? {
            Ok(r) => {
                prop_assert!(!r.job_id.is_empty());
                prop_assert!(r.units_total > 0);
                tally.add("queued");
                if faithfulness {
                    tally.add("of them faithfulness");
                }
            }
            Err(s) if undecodable(&s) => tally.add(UNDECODABLE),
            Err(s) => {
                check_status(&s)?;
                let invalid = s.code() == Code::InvalidArgument;
                tally.add(if invalid {
                    "INVALID_ARGUMENT"
                } else {
                    "other refusals"
                });
            }
        }
        setup.check_every(25)
    });
    tally.print(name);
    // Three runs of 1000 gave 84 queued each (the coordinator's queue is then full: later
    // valid requests are "other refusals"), 10-13 of them faithfulness, 714-732
    // INVALID_ARGUMENT, 45-55 other refusals, 129-153 undecodable; the floors are about a
    // third of the fewest.
    let floors = [
        ("queued", 28),
        ("of them faithfulness", 3),
        ("INVALID_ARGUMENT", 240),
        ("other refusals", 15),
        (UNDECODABLE, 40),
    ];
    tally.assert_at_least(name, &floors);

    // Still up: ListJobs, health, and the two jobs as they were.
    let idle = |w: &v1::WorkerInfo| w.worker_id == setup.worker && w.current_units.is_empty();
    assert!(
        coord.workers().iter().any(idle),
        "the in-process worker is gone or busy"
    );
    let jobs = setup.list_jobs();
    assert!(jobs.len() >= 2 + tally.get("queued"), "{} jobs", jobs.len());
    let mut health = tonic_health::pb::health_client::HealthClient::new(setup.channel());
    rt.block_on(async {
        let check = tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        let health = health
            .check(check)
            .await
            .expect("health check")
            .into_inner();
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
        assert_eq!(health.status, serving as i32);
        let mut client = v1::attrib_client::AttribClient::new(typed_channel.clone());
        for (id, before) in [(&setup.done, &setup.done_status), (&queued, &queued_status)] {
            let now = client
                .get_job(v1::GetJobRequest { job_id: id.clone() })
                .await;
            let now = now.expect("GetJob").into_inner().job.expect("a job");
            assert_eq!(&now, before, "job {id} changed");
        }
    });
    setup.stop();
}
