//! The one operation a node group's members do together: an integer sum over every member
//! (all-reduce). The host backend sums in this process's memory; the NCCL backend
//! (`super::nccl`) sums on the GPUs. Everything else about a group is the same code. Every
//! wait ends: when the round is abandoned (`super::watch`) or when its deadline passes.

use std::sync::{Arc, Condvar, Mutex};

use tch::Tensor;

use super::watch::Watch;
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

    /// Abandons the current round for every member (this one failed before or during a
    /// collective): their waits end with `reason`, and this end aborts what it holds.
    fn abort(&mut self, reason: String);
}

/// The host backend: members are threads of this process; each all-reduce waits for all of
/// them at a barrier, then every member reads the sum. After an abandoned round the barrier
/// is whole again (each member that left it took its arrival back): the group goes on.
pub struct HostCollective {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    state: Mutex<Round>,
    turned: Condvar,
    watch: Arc<Watch>,
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
    pub fn group(size: usize, watch: Arc<Watch>) -> Vec<HostCollective> {
        let shared = Arc::new(Shared {
            size,
            state: Mutex::new(Round::default()),
            turned: Condvar::new(),
            watch,
        });
        (0..size)
            .map(|rank| HostCollective {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Joins the current round with `arrive` and waits until every member has; returns the
    /// round's state once complete, for the member to read. Ends with the watch's error when
    /// the round is abandoned, or past the deadline (then it abandons the round itself).
    fn barrier(
        &self,
        what: &str,
        arrive: impl FnOnce(&mut Round),
    ) -> Result<std::sync::MutexGuard<'_, Round>> {
        let s = &self.shared;
        let deadline = s.watch.deadline();
        let mut r = s.state.lock().unwrap_or_else(|p| p.into_inner());
        s.watch.check()?; // the round is abandoned: joining it would wait for nobody
        let generation = r.generation;
        arrive(&mut r);
        r.arrived += 1;
        if r.arrived == s.size {
            r.result = Arc::new(std::mem::take(&mut r.sum));
            r.arrived = 0;
            r.generation += 1;
            s.turned.notify_all();
            return Ok(r);
        }
        loop {
            if r.generation != generation {
                return Ok(r);
            }
            let now = std::time::Instant::now();
            let left = match s.watch.check() {
                Err(e) => Err(e),
                Ok(()) if now >= deadline => {
                    let e = s.watch.timed_out(self.rank, what);
                    s.turned.notify_all();
                    Err(e)
                }
                Ok(()) => Ok(deadline - now),
            };
            match left {
                Ok(left) => {
                    r = s
                        .turned
                        .wait_timeout(r, left)
                        .map_or_else(|p| p.into_inner().0, |w| w.0)
                }
                Err(e) => {
                    // Take the arrival back, so the next round's barrier counts from zero.
                    r.arrived -= 1;
                    return Err(e);
                }
            }
        }
    }
}

impl Collective for HostCollective {
    fn all_reduce_sum(&mut self, v: &mut [i64]) -> Result<()> {
        let r = self.barrier("an all-reduce", |r| {
            if r.arrived == 0 {
                r.sum = v.to_vec();
            } else {
                for (a, b) in r.sum.iter_mut().zip(v.iter()) {
                    // Limbs leave room for 2^31 members (`attrib_proto::exact` limbs).
                    *a = a.checked_add(*b).expect("limb sums fit an i64");
                }
            }
        })?;
        if r.result.len() != v.len() {
            let e = Error::MembersDisagree(r.result.len(), v.len());
            drop(r);
            self.abort(e.to_string());
            return Err(e);
        }
        v.copy_from_slice(&r.result);
        Ok(())
    }

    fn broadcast_from_first(&mut self, t: &mut Tensor) -> Result<()> {
        // Member 0 posts its tensor at the first barrier; the second keeps it from posting the
        // next one before everyone has copied this one. (The last one posted stays referenced
        // until the next broadcast: it is member 0's own tensor, alive anyway.)
        let rank = self.rank;
        let r = self.barrier("a broadcast", |r| {
            if rank == 0 {
                r.first = Some(t.shallow_clone());
            }
        })?;
        let copied = match (rank, r.first.as_ref()) {
            (0, _) => Ok(()),
            (_, Some(first)) => crate::attribution::catch_torch(|| t.copy_(first)),
            (_, None) => unreachable!("member 0 posts its tensor before the barrier opens"),
        };
        drop(r);
        if let Err(e) = copied {
            self.abort(format!(
                "member {rank} could not copy a broadcast tensor: {e}"
            ));
            return Err(e);
        }
        drop(self.barrier("a broadcast", |_| {})?);
        Ok(())
    }

    fn abort(&mut self, reason: String) {
        let s = &self.shared;
        s.watch.fire(reason);
        // Under the lock: a member between its check and its wait cannot miss the wake-up.
        let _r = s.state.lock().unwrap_or_else(|p| p.into_inner());
        s.turned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    use super::*;

    fn group(size: usize) -> Vec<HostCollective> {
        HostCollective::group(size, Watch::new(Duration::from_secs(60)))
    }

    #[test]
    fn every_member_reads_the_sum_of_every_round() {
        let ends = group(3);
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
        let ends = group(4);
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

    #[test]
    fn a_member_that_aborts_ends_every_wait_and_the_next_round_still_sums() {
        let watch = Watch::new(Duration::from_secs(60));
        let between = Arc::new(Barrier::new(3));
        let t0 = Instant::now();
        let handles: Vec<_> = HostCollective::group(3, watch.clone())
            .into_iter()
            .enumerate()
            .map(|(rank, mut c)| {
                let (between, watch) = (between.clone(), watch.clone());
                std::thread::spawn(move || {
                    let mut v = vec![rank as i64];
                    let first = match rank {
                        1 => {
                            c.abort("member 1 ran out of memory".into());
                            None
                        }
                        _ => Some(c.all_reduce_sum(&mut v).map_err(|e| e.to_string())),
                    };
                    // As the dispatcher does: reset once every member is out of the round.
                    if between.wait().is_leader() {
                        assert!(watch.reset().is_some());
                    }
                    between.wait();
                    let mut w = vec![rank as i64 + 1];
                    c.all_reduce_sum(&mut w).unwrap();
                    (first, w)
                })
            })
            .collect();
        for (rank, h) in handles.into_iter().enumerate() {
            let (first, second) = h.join().unwrap();
            if rank != 1 {
                let e = first.unwrap().unwrap_err();
                assert!(e.contains("member 1 ran out of memory"), "{e}");
            }
            assert_eq!(second, vec![6], "member {rank}");
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    }

    #[test]
    fn a_wait_past_the_deadline_abandons_the_round_naming_the_flag() {
        let watch = Watch::new(Duration::from_millis(200));
        let mut ends = HostCollective::group(2, watch.clone());
        let t0 = Instant::now();
        let e = ends[0].all_reduce_sum(&mut [1]).unwrap_err().to_string();
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert!(e.contains("member 0 waited 0.2 s at an all-reduce"), "{e}");
        assert!(e.contains("--collective-timeout-secs"), "{e}");
        // The late member finds the round abandoned instead of waiting for it.
        let late = ends[1].all_reduce_sum(&mut [1]).unwrap_err().to_string();
        assert!(late.contains("member 0 waited"), "{late}");
        watch.reset();
        let h = std::thread::spawn({
            let mut c = ends.pop().unwrap();
            move || {
                let mut v = [2];
                c.all_reduce_sum(&mut v).map(|()| v)
            }
        });
        let mut v = [1];
        ends[0].all_reduce_sum(&mut v).unwrap();
        assert_eq!((v, h.join().unwrap().unwrap()), ([3], [3]));
    }
}
