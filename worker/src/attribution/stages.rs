//! Where a pass's time goes: its stages and the clock that times them.

use crate::device::synchronize;

/// Seconds spent in each stage of the passes (where the time goes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    pub corrupt_forward: f64,
    pub clean_forward: f64,
    pub backward: f64,
    pub contraction: f64,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, o: Self) {
        self.corrupt_forward += o.corrupt_forward;
        self.clean_forward += o.clean_forward;
        self.backward += o.backward;
        self.contraction += o.contraction;
    }
}

/// Stage times: with `synced` each lap waits for the device before the clock is read.
pub(super) struct StageClock {
    device: tch::Device,
    synced: bool,
    last: std::time::Instant,
}

impl StageClock {
    pub(super) fn new(device: tch::Device, synced: bool) -> Self {
        StageClock {
            device,
            synced,
            last: std::time::Instant::now(),
        }
    }

    /// Seconds since the last lap.
    pub(super) fn lap(&mut self) -> f64 {
        if self.synced {
            synchronize(self.device);
        }
        let now = std::time::Instant::now();
        let dt = (now - self.last).as_secs_f64();
        self.last = now;
        dt
    }
}
