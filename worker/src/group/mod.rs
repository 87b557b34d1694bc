//! A node group: one `attrib-worker serve --devices a,b,...` process computing on several
//! devices as one worker. The model is read from disk once and handed to every member
//! (shared on CPU, copied to each GPU or broadcast with NCCL). Units arrive on one session and go out in
//! rounds: each member takes one unit of the same job and dataset, computes it as a lone
//! worker would, folds its f32 sums into the exact fixed-point accumulator, and the members
//! all-reduce the accumulators' integer limbs (`Collective`). Member 0 then sends one
//! `GroupResult` for the round's units: coordinator traffic does not grow with the number of
//! devices, and the sum is the same bits as folding each unit at the coordinator.
//!
//! A unit that fails is answered alone by its member, which adds nothing to the round's sum.
//! A member that fails at a collective abandons the round for all (`watch`): each answers
//! its unit with the reason, and the coordinator computes them again. Faithfulness units are
//! answered one by one (their results are small).

pub mod check;
pub mod collective;
pub mod nccl;
pub mod nccl_lib;
#[cfg(test)]
mod tests;
pub mod watch;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use attrib_proto::exact::MAIN_LIMBS;
use attrib_proto::units::Accumulator;
use attrib_proto::{v1, AttributionSettings, ExactSum};
use tch::{Device, Tensor};
use tokio::sync::mpsc as tokio_mpsc;

use crate::attribution::catch_torch;
pub use crate::compute::CollectiveKind;
use crate::compute::{answer, run_request, Answer, Computed, EngineConfig, UnitRequest};
use crate::model::{Gpt2, ModelConfig};
use crate::{Error, Result};
use collective::{Collective, HostCollective};
use watch::Watch;

/// One round's work for one member.
struct Round {
    unit: Option<UnitRequest>,
    /// Set when the round's units are summed together (attribution); else each is answered
    /// alone.
    sum: Option<RoundSum>,
}

/// What every member needs to sum a round, and what member 0 needs to answer it.
#[derive(Clone)]
struct RoundSum {
    /// Accumulator slots: the graph's edges and the clean logit difference.
    slots: usize,
    session: u64,
    job: String,
    reply: tokio_mpsc::UnboundedSender<Answer>,
}

/// Starts the members and the round dispatcher on `requests`; returns once every member
/// holds the model, or with the first member's error (a member that panics reports it).
pub fn start(
    cfg: &EngineConfig,
    kind: CollectiveKind,
    requests: mpsc::Receiver<UnitRequest>,
) -> Result<v1::ModelIdentity> {
    start_with(cfg, kind, requests, Faults::default())
}

/// Faults the watchdog's tests inject into members; none in a real group.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// This member panics while loading the model.
    panic_loading: Option<usize>,
    /// This member fails before the collective of the first round it sums.
    fail_before_collective: Option<usize>,
}

fn start_with(
    cfg: &EngineConfig,
    kind: CollectiveKind,
    requests: mpsc::Receiver<UnitRequest>,
    faults: Faults,
) -> Result<v1::ModelIdentity> {
    let size = cfg.devices.len();
    if let Some(dup) = duplicate_gpu(&cfg.devices) {
        return Err(Error::GpuListedTwice(crate::device::device_name(dup)));
    }
    let (host, identity) = crate::compute::load(cfg, Device::Cpu)?;
    let model_cfg = host.cfg;
    let nccl_id = match kind {
        CollectiveKind::Nccl => Some(nccl::new_group_id()?),
        CollectiveKind::Host => None,
    };
    let watch = Watch::new(cfg.collective_timeout);
    let mut host_ends = HostCollective::group(size, watch.clone()).into_iter();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut members = Vec::with_capacity(size);
    for (rank, &device) in cfg.devices.iter().enumerate() {
        // NCCL members other than the first get the weights' shapes only: the broadcast
        // fills them from member 0's.
        let weights = tch::no_grad(|| {
            host.w.map(&mut |t: &Tensor| match (device, nccl_id) {
                (Device::Cpu, _) => t.shallow_clone(),
                (_, Some(_)) if rank > 0 => t.zeros_like().to_device(device),
                _ => t.to_device(device),
            })
        });
        let host_end = host_ends.next().expect("one end per member");
        let (tx, rx) = mpsc::channel::<Round>();
        members.push(tx);
        let (ready_tx, done_tx, watch) = (ready_tx.clone(), done_tx.clone(), watch.clone());
        let (model_cfg, cfg) = (model_cfg, cfg.clone());
        std::thread::Builder::new()
            .name(format!("attrib-member-{rank}"))
            .spawn(move || {
                let joined = catch_torch(|| {
                    let collective: Box<dyn Collective> = match nccl_id {
                        Some(id) => {
                            let w = watch.clone();
                            let c = nccl::NcclCollective::join(id, rank, size, device, w)?;
                            Box::new(c)
                        }
                        None => Box::new(host_end),
                    };
                    if faults.panic_loading == Some(rank) {
                        panic!("test fault: member {rank} panics while loading");
                    }
                    member_model(collective, weights, model_cfg, device, nccl_id.is_some())
                });
                let joined = match joined {
                    Ok(loaded) => loaded,
                    Err(Error::TorchPanic(message)) => Err(Error::MemberPanicked { rank, message }),
                    Err(e) => Err(e),
                };
                let (collective, model) = match joined {
                    Ok(m) => m,
                    Err(e) => {
                        // NCCL members waiting at the model's broadcast stop waiting for it.
                        watch.fire(format!("member {rank} failed to load: {e}"));
                        return drop(ready_tx.send(Err(e)));
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let mut member = Member {
                    model,
                    cfg,
                    rank,
                    size,
                    collective,
                    fail_once: faults.fail_before_collective == Some(rank),
                };
                for round in rx {
                    member.play(round);
                    if done_tx.send(()).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| Error::ThreadSpawn {
                what: "a node group member thread",
                source,
            })?;
    }
    drop(host);
    // Only the members hold senders now: if every one of them is gone, `recv` says so.
    drop(ready_tx);
    for _ in 0..size {
        ready_rx.recv().map_err(|_| Error::DiedLoading {
            what: "a node group member",
        })??;
    }
    std::thread::Builder::new()
        .name("attrib-rounds".into())
        .spawn(move || dispatch(requests, members, done_rx, &model_cfg, &watch, kind))
        .map_err(|source| Error::ThreadSpawn {
            what: "the node group's dispatcher",
            source,
        })?;
    Ok(identity)
}

/// A member's model, its weights received from member 0 first when `broadcast` (NCCL).
fn member_model(
    mut collective: Box<dyn Collective>,
    mut weights: crate::model::Weights,
    cfg: ModelConfig,
    device: Device,
    broadcast: bool,
) -> Result<(Box<dyn Collective>, Gpt2)> {
    if broadcast {
        for t in weights.tensors_mut() {
            collective.broadcast_from_first(t)?;
        }
    }
    Ok((collective, Gpt2::from_weights(cfg, weights, device)))
}

/// A GPU listed more than once (CPU "devices" may repeat: they share the host).
fn duplicate_gpu(devices: &[Device]) -> Option<Device> {
    let gpus: Vec<Device> = devices.iter().copied().filter(|d| d.is_cuda()).collect();
    gpus.iter()
        .enumerate()
        .find(|(i, d)| gpus[..*i].contains(d))
        .map(|(_, d)| *d)
}

/// Hands out rounds: up to one unit per member, all of one session, job and dataset, and
/// waits for every member to finish a round before the next (the members sum together).
fn dispatch(
    requests: mpsc::Receiver<UnitRequest>,
    members: Vec<mpsc::Sender<Round>>,
    done: mpsc::Receiver<()>,
    model: &ModelConfig,
    watch: &Watch,
    kind: CollectiveKind,
) {
    let mut pending: VecDeque<UnitRequest> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match requests.recv() {
                Ok(r) => pending.push_back(r),
                Err(_) => return, // the engine is gone
            }
        }
        pending.extend(requests.try_iter());
        pending.retain(|r| r.wanted.load(Ordering::Relaxed));
        let Some(head) = pending.pop_front() else {
            continue;
        };
        let key = |r: &UnitRequest| {
            (
                r.session,
                r.unit.job_id.clone(),
                r.unit.dataset,
                r.unit.circuits.is_none(),
            )
        };
        let head_key = key(&head);
        let mut units = vec![head];
        let mut i = 0;
        while units.len() < members.len() && i < pending.len() {
            if key(&pending[i]) == head_key {
                units.extend(pending.remove(i));
            } else {
                i += 1;
            }
        }
        let sum = match (head_key.3, slots(model, &units[0].unit)) {
            (true, Some(slots)) => Some(RoundSum {
                slots,
                session: units[0].session,
                job: units[0].unit.job_id.clone(),
                reply: units[0].reply.clone(),
            }),
            _ => None, // faithfulness, or settings the member will refuse with a reason
        };
        let mut units = units.into_iter();
        for m in &members {
            let round = Round {
                unit: units.next(),
                sum: sum.clone(),
            };
            if m.send(round).is_err() {
                return;
            }
        }
        for _ in 0..members.len() {
            if done.recv().is_err() {
                return;
            }
        }
        // Every member is out of the round: the next one starts with a clear watch.
        if let Some(reason) = watch.reset() {
            abandoned(kind, &reason);
        }
    }
}

/// After an abandoned round (its units were answered with the reason): the host barrier
/// is whole again, and the group goes on. Aborted NCCL communicators cannot be used again,
/// and a worker that fails every unit would only draw units away from working ones: the
/// process ends, for its supervisor to restart it (the coordinator reassigns its units).
fn abandoned(kind: CollectiveKind, reason: &str) {
    match kind {
        CollectiveKind::Host => tracing::warn!(%reason, "the node group abandoned a round"),
        CollectiveKind::Nccl => {
            tracing::error!(%reason, "the node group's NCCL communicators were aborted: the worker exits so that its supervisor restarts it");
            eprintln!("attrib-worker: the node group's NCCL communicators were aborted ({reason}); exiting so that a supervisor restarts this worker");
            std::process::exit(EXIT_GROUP_ABORTED);
        }
    }
}

/// The exit status after aborted NCCL communicators (EX_TEMPFAIL: restart and try again).
pub const EXIT_GROUP_ABORTED: i32 = 75;

/// Accumulator slots of an attribution unit: its graph's edges (per τ for ACDC) and the
/// clean difference.
fn slots(model: &ModelConfig, a: &v1::UnitAssignment) -> Option<usize> {
    let settings = AttributionSettings::try_from(a.settings.as_ref()?).ok()?;
    let edges = model.graph(&settings, a.width as usize).n_edges();
    Some(edges * settings.method.slots_per_edge() + 1)
}

/// A member's thread state: its model and its end of the group's collectives.
struct Member {
    model: Gpt2,
    cfg: EngineConfig,
    rank: usize,
    size: usize,
    collective: Box<dyn Collective>,
    /// Test fault: fail before the next summed round's collective.
    fail_once: bool,
}

impl Member {
    /// This member's part of a round.
    fn play(&mut self, round: Round) {
        let (model, cfg) = (&self.model, &self.cfg);
        let Some(sum) = round.sum else {
            if let Some(req) = round.unit {
                let result = run_request(model, cfg, &req).map(Computed::Unit);
                answer(&req, result);
            }
            return;
        };
        // This member's unit, folded exactly as the coordinator would fold it alone.
        let mut mine = Accumulator::attribution(sum.slots - 1);
        let mut covered: Option<(u32, f64)> = None;
        if let Some(req) = &round.unit {
            let folded = run_request(model, cfg, req).and_then(|r| {
                mine.fold_attribution(&r)
                    .map(|()| r.seconds)
                    .map_err(|e| Error::BadResult(e.to_string()))
            });
            match folded {
                Ok(seconds) => covered = Some((req.unit.unit, seconds)),
                Err(e) => {
                    mine = Accumulator::attribution(sum.slots - 1);
                    answer(req, Err(e));
                }
            }
        }
        let reduced = match std::mem::take(&mut self.fail_once) {
            true => {
                let e = Error::RoundAbandoned(format!(
                    "test fault: member {} fails before the collective",
                    self.rank
                ));
                self.collective.abort(e.to_string());
                Err(e)
            }
            false => reduce(
                self.collective.as_mut(),
                &mine,
                covered,
                self.rank,
                self.size,
            ),
        };
        match reduced {
            Ok(Some(mut group)) if self.rank == 0 => {
                group.job_id = sum.job.clone();
                let units = group.units.clone();
                let _ = sum.reply.send(Answer {
                    session: sum.session,
                    job: sum.job,
                    units,
                    result: Ok(Computed::Group(group)),
                });
            }
            Ok(_) => {}
            Err(e) => {
                // The sum is lost for every member (a no-op if another one said so first):
                // each answers its own unit, to be computed again.
                self.collective.abort(e.to_string());
                tracing::error!(error = %e, rank = self.rank, "the group's all-reduce failed");
                if let (Some(req), Some(_)) = (&round.unit, covered) {
                    answer(req, Err(e));
                }
            }
        }
    }
}

/// All-reduces the members' accumulators with the units they cover; every member gets the
/// round's `GroupResult` (`None` when no member covered a unit).
fn reduce(
    collective: &mut dyn Collective,
    mine: &Accumulator,
    covered: Option<(u32, f64)>,
    rank: usize,
    size: usize,
) -> Result<Option<v1::GroupResult>> {
    let slots = mine.sums.len();
    let n_main = MAIN_LIMBS * slots + 1;
    // [main limbs, wide count | prompts | unit + 1 per member | microseconds per member]
    let mut v = mine.sums.main_limbs();
    v.push(mine.n_prompts as i64);
    let mut per_member = vec![0i64; 2 * size];
    if let Some((unit, seconds)) = covered {
        per_member[rank] = unit as i64 + 1;
        per_member[size + rank] = (seconds * 1e6).round() as i64;
    }
    v.extend(per_member);
    collective.all_reduce_sum(&mut v)?;
    let wide = match ExactSum::limbs_need_wide(&v[..n_main]) {
        true => {
            let mut w = mine.sums.wide_limbs();
            collective.all_reduce_sum(&mut w)?;
            Some(w)
        }
        false => None,
    };
    let units: Vec<u32> = v[n_main + 1..n_main + 1 + size]
        .iter()
        .filter(|&&u| u > 0)
        .map(|&u| (u - 1) as u32)
        .collect();
    if units.is_empty() {
        return Ok(None);
    }
    let sums = ExactSum::from_limbs(slots, &v[..n_main], wide.as_deref())
        .map_err(|e| Error::BadLimbs(e.to_string()))?;
    let acc = Accumulator {
        sums,
        n_prompts: v[n_main] as u64,
    };
    let micros: i64 = v[n_main + 1 + size..].iter().sum();
    Ok(Some(v1::GroupResult {
        job_id: String::new(), // member 0 names the round's job
        units,
        sums: acc.encode(),
        seconds: micros as f64 / 1e6,
        device_class: String::new(), // the session stamps its engine's
    }))
}
