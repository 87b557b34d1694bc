//! A node group: one `attrib-worker serve --devices a,b,...` process computing on several
//! devices as one worker. The model is read from disk once and handed to every member
//! (shared on CPU, broadcast with NCCL on GPUs). Units arrive on one session and go out in
//! rounds: each member takes one unit of the same job and dataset, computes it as a lone
//! worker would, folds its f32 sums into the exact fixed-point accumulator, and the members
//! all-reduce the accumulators' integer limbs (`Collective`). Member 0 then sends one
//! `GroupResult` for the round's units: coordinator traffic does not grow with the number of
//! devices, and the sum is the same bits as folding each unit at the coordinator.
//!
//! A unit that fails is answered alone by its member, which adds nothing to the round's sum.
//! Faithfulness units are answered one by one (their results are small).

pub mod check;
pub mod collective;
pub mod nccl;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use attrib_proto::exact::MAIN_LIMBS;
use attrib_proto::units::Accumulator;
use attrib_proto::{v1, AttributionSettings, ExactSum};
use tch::{Device, Tensor};
use tokio::sync::mpsc as tokio_mpsc;

pub use crate::compute::CollectiveKind;
use crate::compute::{answer, run_request, Answer, Computed, EngineConfig, UnitRequest};
use crate::model::{Gpt2, ModelConfig};
use crate::{Error, Result};
use collective::{Collective, HostCollective};

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
/// holds the model (or one failed to).
pub fn start(
    cfg: &EngineConfig,
    kind: CollectiveKind,
    requests: mpsc::Receiver<UnitRequest>,
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
    let mut host_ends = HostCollective::group(size).into_iter();
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
        let (model_cfg, ready_tx, done_tx, cfg) =
            (model_cfg, ready_tx.clone(), done_tx.clone(), cfg.clone());
        std::thread::Builder::new()
            .name(format!("attrib-member-{rank}"))
            .spawn(move || {
                let joined = match nccl_id {
                    Some(id) => nccl::NcclCollective::join(id, rank, size, device)
                        .map(|c| Box::new(c) as Box<dyn Collective>),
                    None => Ok(Box::new(host_end) as Box<dyn Collective>),
                };
                let mut weights = weights;
                let member = joined.and_then(|mut c| {
                    if nccl_id.is_some() {
                        for t in weights.tensors_mut() {
                            c.broadcast_from_first(t)?;
                        }
                    }
                    Ok(c)
                });
                let mut collective = match member {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let model = Gpt2::from_weights(model_cfg, weights, device);
                let _ = ready_tx.send(Ok(()));
                for round in rx {
                    play(&model, &cfg, rank, size, collective.as_mut(), round);
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
    for _ in 0..size {
        ready_rx.recv().map_err(|_| Error::DiedLoading {
            what: "a node group member",
        })??;
    }
    std::thread::Builder::new()
        .name("attrib-rounds".into())
        .spawn(move || dispatch(requests, members, done_rx, &model_cfg))
        .map_err(|source| Error::ThreadSpawn {
            what: "the node group's dispatcher",
            source,
        })?;
    Ok(identity)
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
    }
}

/// Accumulator slots of an attribution unit: its graph's edges (per τ for ACDC) and the
/// clean difference.
fn slots(model: &ModelConfig, a: &v1::UnitAssignment) -> Option<usize> {
    let settings = AttributionSettings::try_from(a.settings.as_ref()?).ok()?;
    let edges = model.graph(&settings, a.width as usize).n_edges();
    Some(edges * settings.method.slots_per_edge() + 1)
}

/// One member's part of a round.
fn play(
    model: &Gpt2,
    cfg: &EngineConfig,
    rank: usize,
    size: usize,
    collective: &mut dyn Collective,
    round: Round,
) {
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
    match reduce(collective, &mine, covered, rank, size) {
        Ok(Some(mut group)) if rank == 0 => {
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
            // The sum is lost: each member answers its own unit, to be computed again.
            tracing::error!(error = %e, rank, "the group's all-reduce failed");
            if let (Some(req), Some(_)) = (&round.unit, covered) {
                answer(req, Err(e));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_listed_twice_is_found_and_cpus_may_repeat() {
        use Device::{Cpu, Cuda};
        assert_eq!(duplicate_gpu(&[Cuda(0), Cuda(1), Cuda(0)]), Some(Cuda(0)));
        assert_eq!(duplicate_gpu(&[Cpu, Cpu, Cuda(0), Cuda(1)]), None);
        assert_eq!(
            CollectiveKind::parse("auto", &[Cuda(0), Cuda(1)]).unwrap(),
            CollectiveKind::Nccl
        );
        assert_eq!(
            CollectiveKind::parse("auto", &[Cpu, Cpu]).unwrap(),
            CollectiveKind::Host
        );
    }
}
