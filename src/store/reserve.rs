//! Space held on the output disk for the end of a run: a file of zeros
//! (`.perfscope-reserve` in the invocation's directory), allocated when the
//! invocation starts and deleted when it ends. When the disk fills during a run the
//! writer deletes it at once, so the rows still in memory, the run's status and its
//! summary files can still be written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The file's name in the invocation's directory.
pub const RESERVE_FILE: &str = ".perfscope-reserve";

pub struct Reserve {
    path: PathBuf,
    bytes: u64,
    released: AtomicBool,
}

impl Reserve {
    /// Allocates `bytes` in `dir` (real blocks, not a sparse file: the point is
    /// that the disk cannot give them to anything else).
    pub fn create(dir: &Path, bytes: u64) -> std::io::Result<Reserve> {
        let path = dir.join(RESERVE_FILE);
        let made = allocate(&path, bytes);
        if made.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        made.map(|()| Reserve {
            path,
            bytes,
            released: AtomicBool::new(false),
        })
    }

    /// Deletes the file; the bytes freed the first time, None afterwards.
    pub fn release(&self) -> Option<u64> {
        if self.released.swap(true, Ordering::SeqCst) {
            return None;
        }
        std::fs::remove_file(&self.path).ok().map(|()| self.bytes)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        self.release();
    }
}

fn allocate(path: &Path, bytes: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a descriptor this function owns.
        let rc = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, bytes as libc::off_t) };
        match rc {
            0 => return Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL => {}
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
    // Filesystems without fallocate: write the zeros.
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reserve_holds_its_bytes_until_released() {
        let d = tempfile::tempdir().unwrap();
        let r = super::Reserve::create(d.path(), 3 << 20).unwrap();
        let p = d.path().join(super::RESERVE_FILE);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 3 << 20);
        assert_eq!(r.release(), Some(3 << 20));
        assert!(!p.exists());
        assert_eq!(r.release(), None);
        let r2 = super::Reserve::create(d.path(), 1 << 20).unwrap();
        drop(r2);
        assert!(!p.exists());
    }
}
