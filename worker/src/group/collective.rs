//! The one operation a node group's members do together: an integer sum over every member
//! (all-reduce). The host backend sums in this process's memory; the NCCL backend
//! (`super::nccl`) sums on the GPUs. Everything else about a group is the same code.

use std::sync::{Arc, Condvar, Mutex};

use tch::Tensor;

use crate::{Error, Result};

/// One member's end of the group's collectives. Every member calls each operation, in the
/// same order and with vectors of the same length (the group's rounds guarantee it). An end
/// stays on the member's thread (NCCL's communicators are not `Send`).
pub trait Collective {
    /// Replaces `v` with the element-wise sum of every member's `v`.
    fn all_reduce_sum(&mut self, v: &mut [i64]) -> Result<()>;

    /// Copies member 0's `t` into every member's `t` (same shape and kind). Used to hand the
    /// model to the members once it is read.
    fn broadcast_from_first(&mut self, t: &mut Tensor) -> Result<()>;
}

/// The host backend: members are threads of this process; each all-reduce waits for all of
/// them at a barrier, then every member reads the sum.
pub struct HostCollective {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    state: Mutex<Round>,
    turned: Condvar,
}

#[derive(Default)]
struct Round {
    sum: Vec<i64>,
    arrived: usize,
    /// Bumped each time a sum is complete, so waiters know their round is over.
    generation: u64,
    result: Arc<Vec<i64>>,
    /// Member 0's tensor of the current broadcast.
    first: Option<Tensor>,
}

impl HostCollective {
    /// The ends of a group of `size` members, member `i` at index `i`.
    pub fn group(size: usize) -> Vec<HostCollective> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(Round::default()),
            turned: Condvar::new(),
        });
        (0..size)
            .map(|rank| HostCollective {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Joins the current round with `arrive` and waits until every member has; returns the
    /// round's state once complete, for the member to read.
    fn barrier(&self, arrive: impl FnOnce(&mut Round)) -> std::sync::MutexGuard<'_, Round> {
        let s = &self.shared;
        let mut r = s.state.lock().unwrap_or_else(|p| p.into_inner());
        let generation = r.generation;
        arrive(&mut r);
        r.arrived += 1;
        if r.arrived == s.size {
            r.result = Arc::new(std::mem::take(&mut r.sum));
            r.arrived = 0;
            r.generation += 1;
            s.turned.notify_all();
            return r;
        }
        while r.generation == generation {
            r = s.turned.wait(r).unwrap_or_else(|p| p.into_inner());
        }
        r
    }
}

impl Collective for HostCollective {
    fn all_reduce_sum(&mut self, v: &mut [i64]) -> Result<()> {
        let r = self.barrier(|r| {
            if r.arrived == 0 {
                r.sum = v.to_vec();
            } else {
                for (a, b) in r.sum.iter_mut().zip(v.iter()) {
                    // Limbs leave room for 2^31 members (`attrib_proto::exact` limbs).
                    *a = a.checked_add(*b).expect("limb sums fit an i64");
                }
            }
        });
        if r.result.len() != v.len() {
            return Err(Error::MembersDisagree(r.result.len(), v.len()));
        }
        v.copy_from_slice(&r.result);
        Ok(())
    }

    fn broadcast_from_first(&mut self, t: &mut Tensor) -> Result<()> {
        // Member 0 posts its tensor at the first barrier; the second keeps it from posting the
        // next one before everyone has copied this one. (The last one posted stays referenced
        // until the next broadcast: it is member 0's own tensor, alive anyway.)
        let rank = self.rank;
        let r = self.barrier(|r| {
            if rank == 0 {
                r.first = Some(t.shallow_clone());
            }
        });
        if rank != 0 {
            let first = r.first.as_ref().expect("member 0 posted its tensor");
            crate::attribution::catch_torch(|| t.copy_(first))?;
        }
        drop(r);
        drop(self.barrier(|_| {}));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_member_reads_the_sum_of_every_round() {
        let ends = HostCollective::group(3);
        let handles: Vec<_> = ends
            .into_iter()
            .enumerate()
            .map(|(rank, mut c)| {
                std::thread::spawn(move || {
                    (0..50)
                        .map(|round| {
                            let mut v = vec![rank as i64 + round, -(rank as i64)];
                            c.all_reduce_sum(&mut v).unwrap();
                            v
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            let got = h.join().unwrap();
            for (round, v) in got.iter().enumerate() {
                assert_eq!(v, &vec![3 + 3 * round as i64, -3]);
            }
        }
    }

    #[test]
    fn a_broadcast_gives_every_member_the_first_members_tensor() {
        let ends = HostCollective::group(4);
        let handles: Vec<_> = ends
            .into_iter()
            .enumerate()
            .map(|(rank, mut c)| {
                std::thread::spawn(move || {
                    (0..20)
                        .map(|round| {
                            let mut t = Tensor::from_slice(&[(rank * 100 + round) as f32; 4]);
                            c.broadcast_from_first(&mut t).unwrap();
                            Vec::<f32>::try_from(&t).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            let got = h.join().unwrap();
            for (round, v) in got.iter().enumerate() {
                assert_eq!(v, &vec![round as f32; 4]);
            }
        }
    }
}
