//! One coordinator per database. Two coordinators on one file would both hand out its jobs
//! and neither would know the other's (a job submitted to one runs nowhere; `cancel` through
//! one calls the other's job unknown), so the second refuses at start, naming the holder.
//!
//! The lock is `flock(2)` on `<db>.lock` beside the database: the kernel drops it however the
//! holder ends (`kill -9` included), so a leftover file never blocks a restart. The file's
//! text says who holds it (pid, then the address once listening), for the refusal message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Held for the life of the coordinator; dropping it (or exiting) releases the database.
pub struct DbLock {
    file: File,
    path: PathBuf,
}

/// `<db>.lock`.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DbLock {
    /// Takes the database for this process, or says which coordinator has it.
    pub fn acquire(db: &Path) -> Result<DbLock> {
        let path = lock_path(db);
        let io = |source| Error::LockFile {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(io(e));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not said which".to_string(),
                h => h.to_string(),
            };
            return Err(Error::DatabaseInUse {
                db: db.display().to_string(),
                holder,
            });
        }
        let lock = DbLock { file, path };
        lock.record(&format!("pid {}", std::process::id()))?;
        Ok(lock)
    }

    /// Adds the address this coordinator listens on to what a refused one is told.
    pub fn record_address(&self, url: &str) -> Result<()> {
        self.record(&format!("pid {}, listening on {url}", std::process::id()))
    }

    fn record(&self, holder: &str) -> Result<()> {
        let mut f = &self.file;
        f.set_len(0)
            .and_then(|_| f.seek(SeekFrom::Start(0)))
            .and_then(|_| f.write_all(holder.as_bytes()))
            .map_err(|source| Error::LockFile {
                path: self.path.display().to_string(),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_address_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a.db");
        let first = DbLock::acquire(&db).unwrap();
        first.record_address("http://127.0.0.1:5").unwrap();
        let refused = DbLock::acquire(&db)
            .err()
            .expect("a second lock is refused");
        let pid = std::process::id();
        assert_eq!(
            refused.to_string(),
            format!(
                "database {} is in use by another coordinator (pid {pid}, listening on http://127.0.0.1:5); stop that one, or give this one another --db",
                db.display()
            )
        );
        drop(first);
        DbLock::acquire(&db).expect("free again once the holder lets go");
    }
}
