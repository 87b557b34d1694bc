//! Following a job: a progress bar redrawn in place on a terminal, or a line at most every few
//! seconds when stderr is a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use attrib_proto::v1;

pub struct Progress {
    tty: bool,
    last_line: Option<Instant>,
    start: Instant,
    /// Prompts done at the first status seen: the rate counts only what was computed while
    /// watching (a resumed or half-done job's earlier prompts took no time here).
    first_prompts: Option<u64>,
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last_line: None,
            start: Instant::now(),
            first_prompts: None,
        }
    }

    pub fn show(&mut self, s: &v1::JobStatus) {
        let terminal = s.state().is_terminal();
        if !self.tty {
            let due = self
                .last_line
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if !(due || terminal) {
                return;
            }
            self.last_line = Some(Instant::now());
        }
        let (done, total) = (s.units_done, s.units_total.max(1));
        let width = 30;
        let filled = (done as usize * width) / total as usize;
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let first = *self.first_prompts.get_or_insert(s.prompts_done);
        let line = format!(
            "[{}{}] {done}/{} units  {:.1} prompts/s  {} {}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            s.units_total,
            s.prompts_done.saturating_sub(first) as f64 / secs,
            attrib_proto::printable(&s.job_id),
            s.state().label()
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            if terminal {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}
