//! Resident memory of this process (Linux `VmRSS`, peak `VmHWM`), for benchmark reports and
//! for checking unit memory estimates against what a unit really takes.

use std::sync::atomic::{AtomicU64, Ordering};

/// The highest peak seen before the last `reset_peak` (f64 bits of MiB).
static EARLIER_PEAK: AtomicU64 = AtomicU64::new(0);

/// Peak RSS of the process in MiB, if the platform reports it (resets included).
pub fn peak_rss_mib() -> Option<f64> {
    let now = status_mib("VmHWM:")?;
    Some(now.max(f64::from_bits(EARLIER_PEAK.load(Ordering::Relaxed))))
}

/// Peak RSS since the last `reset_peak`, in MiB.
pub fn peak_since_reset_mib() -> Option<f64> {
    status_mib("VmHWM:")
}

/// Resident memory now, in MiB (Linux `VmRSS`).
pub fn rss_mib() -> Option<f64> {
    status_mib("VmRSS:")
}

/// Starts a new peak: `peak_since_reset_mib` then reports the highest RSS from now on (Linux ≥ 4.0:
/// writing 5 to `clear_refs` resets `VmHWM`). Returns whether the platform allowed it.
pub fn reset_peak() -> bool {
    if let Some(p) = peak_rss_mib() {
        EARLIER_PEAK.store(p.to_bits(), Ordering::Relaxed);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
