//! The NCCL backend of a node group's collectives, on the `libnccl.so.2` that `nccl_lib`
//! finds (a build needs neither CUDA nor NCCL; a machine without them gets an error naming
//! what it tried). The members are threads of one process, one per GPU; each joins the
//! communicator with the unique id member 0 made (`ncclCommInitRank`), so every collective
//! runs on its own thread, on its GPU's legacy default stream (the one libtorch uses unless
//! told otherwise, so torch's work on a tensor is ordered before NCCL's).
//!
//! No wait blocks: after enqueueing, a member polls an event, `ncclCommGetAsyncError` and
//! the group's watch until the work is done, the round is abandoned, or the deadline
//! passes; then it aborts its communicator (`ncclCommAbort`), which ends NCCL's kernels. An
//! aborted communicator is gone for good: the group's dispatcher then stops the process.
//!
//! The all-reduce's buffers are held for the group's life: page-locked host memory (a copy
//! to pageable memory behind a collective can deadlock with a concurrent `cudaMalloc`) and
//! a device tensor from libtorch's caching allocator; both grow only when a round needs
//! more.

use std::ffi::c_void;
use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::{result as cu, CudaContext, CudaEvent, CudaStream, PinnedHostSlice};
use tch::{Device, Kind, Tensor};

use super::collective::Collective;
use super::nccl_lib::{nccl_library, Comm, NcclLibrary, UniqueId};
use super::nccl_lib::{NCCL_INT64, NCCL_IN_PROGRESS, NCCL_SUCCESS, NCCL_SUM, NCCL_UINT8};
use super::watch::Watch;
use crate::{Error, Result};

/// How often a waiting member looks again (a round takes seconds; this costs nothing).
const POLL: Duration = Duration::from_micros(200);
/// The all-reduce buffers' first size, in limbs (a few thousand edges' worth).
const FIRST_CAPACITY: usize = 1 << 16;

/// The group's NCCL unique id, made once and handed to every member.
#[derive(Clone, Copy)]
pub struct GroupId(UniqueId);

/// Says why NCCL cannot be used here, or makes the id of a new group.
pub fn new_group_id() -> Result<GroupId> {
    // SAFETY: this only tries to open libcuda.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::NcclUnavailable(
            "libcuda (the NVIDIA driver) is not on this machine".into(),
        ));
    }
    let lib = nccl_library().map_err(Error::NcclUnavailable)?;
    let mut id = UniqueId { internal: [0; 128] };
    // SAFETY: ncclGetUniqueId writes one ncclUniqueId.
    let r = unsafe { (lib.api.get_unique_id)(&mut id) };
    lib.check("ncclGetUniqueId", r).map_err(Error::Nccl)?;
    Ok(GroupId(id))
}

/// One member's communicator and its buffers.
pub struct NcclCollective {
    lib: &'static NcclLibrary,
    /// Null once aborted.
    comm: Comm,
    rank: usize,
    device: String,
    stream: Arc<CudaStream>,
    /// Recorded behind each collective's work, polled until it completes.
    done: CudaEvent,
    /// Page-locked, `capacity` limbs; the device side is `limbs`.
    host: PinnedHostSlice<i64>,
    limbs: Tensor,
    watch: Arc<Watch>,
}

// NcclCollective stays on its member's thread (the trait says so); nothing here is shared.

impl NcclCollective {
    /// Joins group `id` as member `rank` of `size`, on `device`; blocks until all have.
    pub fn join(
        id: GroupId,
        rank: usize,
        size: usize,
        device: Device,
        watch: Arc<Watch>,
    ) -> Result<Self> {
        let Device::Cuda(ordinal) = device else {
            return Err(Error::NcclNeedsCuda(format!("{device:?}")));
        };
        let name = format!("cuda:{ordinal}");
        let lib = nccl_library().map_err(Error::NcclUnavailable)?;
        let cuda = |e: cudarc::driver::DriverError| cuda_error(&name, e);
        // Binds the GPU's primary context (libtorch's) to this thread: NCCL takes its device
        // from the thread's current one.
        let ctx = CudaContext::new(ordinal).map_err(cuda)?;
        let stream = ctx.default_stream();
        let done = ctx.new_event(None).map_err(cuda)?;
        // SAFETY: i64 is plain data; the memory is written before it is read. No flags: the
        // host reads the sums back, and write-combined memory is slow to read.
        let host =
            unsafe { ctx.alloc_pinned_with_flags::<i64>(FIRST_CAPACITY, 0) }.map_err(cuda)?;
        let limbs = Tensor::f_zeros([FIRST_CAPACITY as i64], (Kind::Int64, device))?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: writes one communicator handle; `id` came from ncclGetUniqueId, and every
        // member passes the same `size` and its own `rank`.
        let r = unsafe { (lib.api.comm_init_rank)(&mut comm, size as i32, id.0, rank as i32) };
        lib.check("ncclCommInitRank", r).map_err(Error::Nccl)?;
        Ok(NcclCollective {
            lib,
            comm,
            rank,
            device: name,
            stream,
            done,
            host,
            limbs,
            watch,
        })
    }

    /// The communicator, unless it was aborted or the round is abandoned (then it aborts it).
    fn live(&mut self) -> Result<Comm> {
        if self.comm.is_null() {
            return Err(Error::Nccl(format!(
                "member {}'s communicator was aborted after an earlier failure",
                self.rank
            )));
        }
        if let Err(e) = self.watch.check() {
            self.abort_comm();
            return Err(e);
        }
        Ok(self.comm)
    }

    /// Abandons the round with `reason` and returns the error every member sees.
    fn fail(&mut self, reason: String) -> Error {
        self.abort(reason);
        self.watch.check().expect_err("the watch was just fired")
    }

    fn abort_comm(&mut self) {
        if self.comm.is_null() {
            return;
        }
        // SAFETY: a communicator of this thread, aborted once (then nulled). Its kernels stop
        // and its resources are freed; nothing waits for the other members.
        let r = unsafe { (self.lib.api.comm_abort)(self.comm) };
        self.comm = std::ptr::null_mut();
        if r != NCCL_SUCCESS {
            tracing::warn!(rank = self.rank, error = %self.lib.error_string(r), "ncclCommAbort");
        }
    }

    /// Checks an enqueue's result; on failure abandons the round.
    fn enqueued(&mut self, call: &str, r: i32) -> Result<()> {
        match self.lib.check(call, r) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("member {} on {}: {e}", self.rank, self.device))),
        }
    }

    /// Waits, without blocking in CUDA or NCCL, until the stream's work so far is done.
    fn wait(&mut self, what: &str) -> Result<()> {
        let deadline = self.watch.deadline();
        let at = |s: &Self, e: String| format!("member {} on {}: {what}: {e}", s.rank, s.device);
        if let Err(e) = self.done.record(&self.stream) {
            return Err(self.fail(at(self, format!("{e:?}"))));
        }
        loop {
            match self.done.try_is_complete() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => return Err(self.fail(at(self, format!("{e:?}")))),
            }
            let comm = self.live()?;
            let mut state = NCCL_SUCCESS;
            // SAFETY: a live communicator of this thread; writes one result code.
            let r = unsafe { (self.lib.api.comm_get_async_error)(comm, &mut state) };
            let state = if r == NCCL_SUCCESS { state } else { r };
            if state != NCCL_SUCCESS && state != NCCL_IN_PROGRESS {
                let e = self.lib.error_string(state);
                return Err(self.fail(at(self, format!("NCCL reports {e}"))));
            }
            if std::time::Instant::now() >= deadline {
                let e = self.watch.timed_out(self.rank, what);
                self.abort_comm();
                return Err(e);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Grows both buffers to hold `n` limbs.
    fn reserve(&mut self, n: usize) -> Result<()> {
        if n <= self.host.len() {
            return Ok(());
        }
        let cap = n.next_power_of_two();
        let ctx = self.stream.context().clone();
        // SAFETY: as in `join`.
        self.host = unsafe { ctx.alloc_pinned_with_flags::<i64>(cap, 0) }
            .map_err(|e| cuda_error(&self.device, e))?;
        self.limbs = Tensor::f_zeros([cap as i64], (Kind::Int64, self.limbs.device()))?;
        Ok(())
    }
}

impl Collective for NcclCollective {
    fn all_reduce_sum(&mut self, v: &mut [i64]) -> Result<()> {
        let comm = self.live()?;
        self.reserve(v.len())?;
        let n = v.len();
        let dev = self.limbs.data_ptr() as u64;
        let cuda = |s: &Self, e| cuda_error(&s.device, e);
        let host = match self.host.as_mut_slice() {
            Ok(h) => h.as_mut_ptr(),
            Err(e) => return Err(cuda(self, e)),
        };
        // SAFETY: `host` holds at least `n` limbs (`reserve`) and no copy is in flight (the
        // last `wait` saw the stream done).
        let staged = unsafe { std::slice::from_raw_parts_mut(host, n) };
        staged.copy_from_slice(v);
        // SAFETY: `dev` is this member's `limbs` tensor, at least `n` int64s on this device;
        // the copies and the all-reduce are ordered on the one stream, and `staged` is
        // page-locked and outlives them (the wait below).
        let r = unsafe {
            cu::memcpy_htod_async(dev, staged, self.stream.cu_stream())
                .map_err(|e| cuda(self, e))?;
            let p = dev as *mut c_void;
            (self.lib.api.all_reduce)(p, p, n, NCCL_INT64, NCCL_SUM, comm, std::ptr::null_mut())
        };
        self.enqueued("ncclAllReduce", r)?;
        // SAFETY: as above.
        if let Err(e) = unsafe { cu::memcpy_dtoh_async(&mut *staged, dev, self.stream.cu_stream()) }
        {
            return Err(self.fail(format!("member {}: {}", self.rank, cuda(self, e))));
        }
        self.wait("an all-reduce")?;
        v.copy_from_slice(staged);
        Ok(())
    }

    fn broadcast_from_first(&mut self, t: &mut Tensor) -> Result<()> {
        let comm = self.live()?;
        if !t.is_contiguous() {
            return Err(self.fail(Error::NotContiguous.to_string()));
        }
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        let p = t.data_ptr();
        // SAFETY: `t` is a live, contiguous CUDA allocation of `bytes` bytes on this device,
        // owned by libtorch; libtorch's writes to it were on this same (default) stream, and
        // `wait` keeps `t` borrowed until NCCL is done with it.
        let r = unsafe {
            (self.lib.api.broadcast)(p, p, bytes, NCCL_UINT8, 0, comm, std::ptr::null_mut())
        };
        self.enqueued("ncclBroadcast", r)?;
        self.wait("a broadcast")
    }

    fn abort(&mut self, reason: String) {
        self.watch.fire(reason);
        self.abort_comm();
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        // Abort, not destroy: ncclCommDestroy may wait for the other members.
        self.abort_comm();
    }
}

fn cuda_error(device: &str, e: cudarc::driver::DriverError) -> Error {
    Error::Cuda {
        device: device.to_string(),
        message: format!("{e:?}"),
    }
}
