//! The model's thread: loads GPT-2 once, then computes the units it is handed, in order. tch
//! tensors are not `Sync` and grad mode is per thread, so the model never leaves this thread.
//! A failing or panicking libtorch op becomes an error reply; the thread lives on. With
//! several devices the engine is a node group (`crate::group`): one such thread per device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use attrib_proto::v1;
use tch::Device;

use crate::compute::{answer, load, run_request, Computed, EngineConfig, UnitRequest};
use crate::device::device_name;
use crate::{Error, Result};

/// A handle to the model's thread.
pub struct Engine {
    tx: mpsc::Sender<UnitRequest>,
    pub identity: v1::ModelIdentity,
    pub device: String,
    /// The class of its devices (`crate::device_class`), stated in the hello and on results.
    pub device_class: String,
    /// Passes finished on the engine's devices, whichever session's units they were for: a
    /// unit queued behind a late one waits on a working engine, not a hung one.
    pub passes: Arc<AtomicU64>,
}

impl Engine {
    /// Starts the thread (or a group's threads) and waits until the model is loaded (or
    /// failed to load).
    pub fn start(cfg: EngineConfig) -> Result<Engine> {
        let (tx, rx) = mpsc::channel::<UnitRequest>();
        let device = cfg
            .devices
            .iter()
            .map(|&d| device_name(d))
            .collect::<Vec<_>>()
            .join(",");
        // Before the model loads: a group of mixed classes is refused at once.
        let device_class = crate::device_class::group_class(&cfg.devices)?;
        let identity = match cfg.devices.as_slice() {
            [] => return Err(Error::NoDevice),
            [one] => start_alone(cfg.clone(), *one, rx)?,
            _ => crate::group::start(&cfg, cfg.collective, rx)?,
        };
        Ok(Engine {
            tx,
            identity,
            device,
            device_class,
            passes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queues a unit on the model's thread; its answer arrives on `req.reply`. Units are
    /// computed in the order they are queued, skipped once `wanted` is false; once
    /// `cancelled` is set, a unit is answered `Error::Cancelled` at the next pass boundary.
    pub fn submit(&self, req: UnitRequest) -> Result<()> {
        self.tx.send(req).map_err(|_| Error::EngineGone)
    }
}

/// One device: a thread that computes each request alone, in order.
fn start_alone(
    cfg: EngineConfig,
    device: Device,
    rx: mpsc::Receiver<UnitRequest>,
) -> Result<v1::ModelIdentity> {
    let (ready_tx, ready_rx) = mpsc::channel::<Result<v1::ModelIdentity>>();
    std::thread::Builder::new()
        .name("attrib-engine".into())
        .spawn(move || {
            let model = match load(&cfg, device) {
                Ok((model, identity)) => {
                    let _ = ready_tx.send(Ok(identity));
                    model
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            for req in rx {
                if req.wanted.load(Ordering::Relaxed) {
                    answer(&req, run_request(&model, &cfg, &req).map(Computed::Unit));
                }
            }
        })
        .map_err(|source| Error::ThreadSpawn {
            what: "the engine thread",
            source,
        })?;
    ready_rx.recv().map_err(|_| Error::DiedLoading {
        what: "the engine thread",
    })?
}
