//! `attrib-worker collective-check`: a group's two collectives on real devices, checked
//! against the host. Each member broadcasts and all-reduces exactly as a group does; the
//! reduced accumulator must be the same bits as absorbing every member's on the host. The GPU
//! check runs it with NCCL (one rank on a one-GPU machine); the tests run it on CPU devices.

use std::time::Duration;

use attrib_proto::ExactSum;
use tch::{Device, Tensor};

use super::collective::{Collective, HostCollective};
use super::watch::{Watch, DEFAULT_TIMEOUT_SECS};
use super::{nccl, CollectiveKind};
use crate::device::{device_name, download_f32};
use crate::{Error, Result};

const SLOTS: usize = 64;
const BROADCAST: usize = 4096;

/// Runs the check on `devices`; returns a one-line summary or what differed.
pub fn collective_check(kind: CollectiveKind, devices: &[Device]) -> Result<String> {
    let size = devices.len();
    let id = match kind {
        CollectiveKind::Nccl => Some(nccl::new_group_id()?),
        CollectiveKind::Host => None,
    };
    let watch = Watch::new(Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    let mut host_ends = HostCollective::group(size, watch.clone()).into_iter();
    // Made on the host and uploaded: member 0 sends these bits exactly (a division on the
    // GPU may round otherwise than the host's, which is no fault of the broadcast).
    let sent: Vec<f32> = (0..BROADCAST).map(|i| i as f32 / 7.0).collect();
    let members: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(rank, &device)| {
            let host_end = host_ends.next().expect("one end per member");
            let (watch, sent) = (watch.clone(), sent.clone());
            std::thread::spawn(move || -> Result<(Vec<f32>, ExactSum)> {
                let mut c: Box<dyn Collective> = match id {
                    Some(id) => {
                        Box::new(nccl::NcclCollective::join(id, rank, size, device, watch)?)
                    }
                    None => Box::new(host_end),
                };
                // Whatever fails, the other members' waits end with it.
                let checked = (|| -> Result<(Vec<f32>, ExactSum)> {
                    let mut t = match rank {
                        0 => Tensor::from_slice(&sent).f_to_device(device)?,
                        _ => Tensor::from_slice(&sent)
                            .f_zeros_like()?
                            .f_to_device(device)?,
                    };
                    c.broadcast_from_first(&mut t)?;
                    let mine = member_sums(rank);
                    let mut main = mine.main_limbs();
                    c.all_reduce_sum(&mut main)?;
                    let wide = match ExactSum::limbs_need_wide(&main) {
                        true => {
                            let mut w = mine.wide_limbs();
                            c.all_reduce_sum(&mut w)?;
                            Some(w)
                        }
                        false => None,
                    };
                    let sum = ExactSum::from_limbs(SLOTS, &main, wide.as_deref())
                        .map_err(|e| Error::BadLimbs(e.to_string()))?;
                    Ok((download_f32(&t), sum))
                })();
                if let Err(e) = &checked {
                    c.abort(e.to_string());
                }
                checked
            })
        })
        .collect();
    let mut want = ExactSum::new(SLOTS);
    for rank in 0..size {
        want.absorb(&member_sums(rank));
    }
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bits32 = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (rank, m) in members.into_iter().enumerate() {
        let (got, sum) = m
            .join()
            .map_err(|_| Error::CollectiveCheckFailed(format!("member {rank} panicked")))??;
        if bits32(&got) != bits32(&sent) {
            return Err(Error::CollectiveCheckFailed(format!(
                "member {rank} received another tensor"
            )));
        }
        if bits(&sum.values()) != bits(&want.values()) {
            return Err(Error::CollectiveCheckFailed(format!(
                "member {rank}'s all-reduced sums differ from the host's"
            )));
        }
    }
    let names: Vec<String> = devices.iter().map(|&d| device_name(d)).collect();
    Ok(format!(
        "collective-check: {kind:?} on {}: broadcast of {BROADCAST} floats and exact all-reduce of {SLOTS} slots (wide limbs included) equal the host's",
        names.join(",")
    ))
}

/// Member `rank`'s sums: ordinary values, subnormals and f32::MAX (the wide limbs).
fn member_sums(rank: usize) -> ExactSum {
    let mut s = (rank as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut a = ExactSum::new(SLOTS);
    for i in 0..4 * SLOTS {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let x = match i % 9 {
            0 => f32::MAX,
            1 => f32::from_bits((s >> 41) as u32), // subnormal
            _ => (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5,
        };
        a.add(i % SLOTS, x).expect("finite");
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_collective_passes_the_check_on_three_cpu_devices() {
        let line = collective_check(CollectiveKind::Host, &[Device::Cpu; 3]).unwrap();
        assert!(line.contains("equal the host's"), "{line}");
    }
}
