//! What `attrib-soak` did and found, and the block it prints (which `tests/tests/soak.rs`
//! reads figure by figure).

/// Results lost: `results` of them (a job, or units of committed work), and why.
#[derive(Debug, Clone)]
pub struct Loss {
    pub results: u64,
    pub why: String,
}

/// What the soak did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seconds: u64,
    pub workers: usize,
    pub seed: u64,
    pub worker_kills: u64,
    pub coordinator_restarts: u64,
    /// Of the restarts, those after an orderly stop (SIGTERM, exit 0); the others SIGKILL.
    pub orderly_stops: u64,
    pub jobs_completed: u64,
    /// Over completed jobs: units handed out again after their worker was lost, and units
    /// found committed by a restarted coordinator (evidence that faults hit work in flight).
    pub units_retried: u64,
    pub units_resumed: u64,
    /// One line per job whose scores are not a clean run's.
    pub differing: Vec<String>,
    pub lost: Vec<Loss>,
}

impl Report {
    pub fn results_lost(&self) -> u64 {
        self.lost.iter().map(|l| l.results).sum()
    }

    pub fn passed(&self) -> bool {
        self.differing.is_empty() && self.results_lost() == 0
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "soak: {} s, {} workers, seed {}",
            self.seconds, self.workers, self.seed
        )?;
        writeln!(
            f,
            "faults injected: {} ({} worker kills, {} coordinator restarts, {} orderly stops among them)",
            self.worker_kills + self.coordinator_restarts,
            self.worker_kills,
            self.coordinator_restarts,
            self.orderly_stops
        )?;
        writeln!(f, "jobs completed: {}", self.jobs_completed)?;
        writeln!(
            f,
            "jobs differing from a clean run: {}",
            self.differing.len()
        )?;
        write!(f, "results lost: {}", self.results_lost())?;
        for d in &self.differing {
            write!(f, "\n  differing: {d}")?;
        }
        for l in &self.lost {
            write!(f, "\n  lost: {}", l.why)?;
        }
        Ok(())
    }
}
