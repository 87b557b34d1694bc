//! The NCCL backend of a node group's collectives, through cudarc with dynamic loading: a
//! build needs neither CUDA nor NCCL, and a machine without them gets a clear error when a
//! group asks for this backend. The members are threads of one process, one per GPU; each
//! joins the communicator with the unique id member 0 made (`ncclCommInitRank`), so every
//! collective runs on its own thread and stream, as NCCL asks of multi-threaded use.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::{Comm, Id, ReduceOp};
use tch::{Device, Tensor};

use super::collective::Collective;
use crate::{Error, Result};

/// The group's NCCL unique id, made once and handed to every member.
#[derive(Clone, Copy)]
pub struct GroupId(Id);

/// Says why NCCL cannot be used here, or makes the id of a new group.
pub fn new_group_id() -> Result<GroupId> {
    // SAFETY: these only try to open the shared libraries.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    let nccl = unsafe { cudarc::nccl::sys::is_culib_present() };
    if !driver || !nccl {
        return Err(Error::NcclUnavailable { driver, nccl });
    }
    Id::new().map(GroupId).map_err(nccl_error)
}

/// One member's communicator, on its GPU's default stream (the one libtorch uses).
pub struct NcclCollective {
    comm: Comm,
    stream: Arc<CudaStream>,
}

impl NcclCollective {
    /// Joins group `id` as member `rank` of `size`, on `device`; blocks until all have.
    pub fn join(id: GroupId, rank: usize, size: usize, device: Device) -> Result<Self> {
        let Device::Cuda(ordinal) = device else {
            return Err(Error::NcclNeedsCuda(format!("{device:?}")));
        };
        let ctx =
            CudaContext::new(ordinal).map_err(|e| cuda_error(&format!("cuda:{ordinal}"), e))?;
        let stream = ctx.default_stream();
        let comm = Comm::from_rank(stream.clone(), rank, size, id.0).map_err(nccl_error)?;
        Ok(NcclCollective { comm, stream })
    }
}

impl Collective for NcclCollective {
    fn all_reduce_sum(&mut self, v: &mut [i64]) -> Result<()> {
        let driver = |e| cuda_error("the group's stream", e);
        let mut buf = self.stream.clone_htod(&*v).map_err(driver)?;
        self.comm
            .all_reduce_in_place(&mut buf, &ReduceOp::Sum)
            .map_err(nccl_error)?;
        self.stream.memcpy_dtoh(&buf, v).map_err(driver)?;
        self.stream.synchronize().map_err(driver)
    }

    fn broadcast_from_first(&mut self, t: &mut Tensor) -> Result<()> {
        if !t.is_contiguous() {
            return Err(Error::NotContiguous);
        }
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        // libtorch owns the memory: cudarc borrows it for the call and must not free it.
        // SAFETY: `t` is a live, contiguous CUDA allocation of `bytes` bytes on this device,
        // and libtorch's ops on it run on this same (default) stream.
        let mut slice = unsafe {
            self.stream
                .upgrade_device_ptr::<u8>(t.data_ptr() as u64, bytes)
        };
        let sent = self.comm.broadcast_in_place(&mut slice, 0);
        slice.leak();
        sent.map_err(nccl_error)?;
        self.stream
            .synchronize()
            .map_err(|e| cuda_error("the group's stream", e))
    }
}

fn nccl_error(e: cudarc::nccl::result::NcclError) -> Error {
    Error::Nccl(format!("{e:?}"))
}

fn cuda_error(device: &str, e: cudarc::driver::DriverError) -> Error {
    Error::Cuda {
        device: device.to_string(),
        message: format!("{e:?}"),
    }
}
