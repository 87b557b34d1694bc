//! Disk space set aside beside the database (`<db>.reserve`), so that deleting jobs works on
//! a full disk: SQLite needs room in its write-ahead log to delete anything. A delete that
//! finds the disk full gives the reserve up and tries again; once the file has shrunk, the
//! reserve is taken back.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Enough log for a delete and a step of the vacuum after it (`VACUUM_STEP_PAGES`).
const RESERVE_BYTES: i64 = 2 << 20;

#[derive(Clone)]
pub(super) struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub(super) fn beside(db: &Path) -> Reserve {
        let mut name = db.as_os_str().to_owned();
        name.push(".reserve");
        Reserve {
            path: PathBuf::from(name),
        }
    }

    /// Sets the space aside if it is not already (a full disk: not now, later).
    pub(super) fn take(&self) {
        if self
            .path
            .metadata()
            .is_ok_and(|m| m.len() == RESERVE_BYTES as u64)
        {
            return;
        }
        let taken = File::create(&self.path).and_then(|f| {
            // Allocated blocks, not a sparse file: the space must really be there.
            // SAFETY: posix_fallocate on a descriptor this function owns.
            match unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, RESERVE_BYTES) } {
                0 => Ok(()),
                e => Err(std::io::Error::from_raw_os_error(e)),
            }
        });
        if let Err(e) = taken {
            let _ = std::fs::remove_file(&self.path);
            tracing::warn!(path = %self.path.display(), error = %e, "cannot set disk space aside for deletes");
        }
    }

    /// Gives the space back to the file system; whether there was any.
    pub(super) fn give_up(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}
