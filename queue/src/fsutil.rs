//! File-system helpers with the durability the store promises.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// Reserves `len` bytes of disk for `file`, so writes through a memory map cannot fail with a
/// signal when the disk fills up: they fail here, as an error.
pub(crate) fn allocate(file: &File, path: &Path, len: u64) -> Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| Error::Internal("file too large".into()))?;
    // SAFETY: plain system call on an open descriptor.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(Error::io(
            "reserve disk space for",
            path,
            std::io::Error::from_raw_os_error(rc),
        ));
    }
    Ok(())
}

/// End of the last region of `file` below `len` that may hold data, as the file system reports
/// it (`SEEK_DATA`/`SEEK_HOLE`). Reserved but never written space counts as a hole, which spares
/// recovery from reading a whole preallocated segment. Falls back to `len`.
pub(crate) fn data_end(file: &File, len: u64) -> u64 {
    let fd = file.as_raw_fd();
    let mut end = 0i64;
    let mut at = 0i64;
    let limit = i64::try_from(len).unwrap_or(i64::MAX);
    while at < limit {
        // SAFETY: plain system calls on an open descriptor.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            return if errno == Some(libc::ENXIO) {
                end as u64
            } else {
                len
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return len;
        }
        end = hole.min(limit);
        at = hole;
    }
    end.max(0) as u64
}

/// fsyncs a directory, making the creation, rename or removal of its entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` and any missing parents, fsyncing each parent whose entries changed.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    // The empty path is the parent of a bare relative name: the working directory.
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_durable(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(Error::io("create directory", dir, e)),
    }
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Replaces `path` with `bytes` atomically and durably: a crash leaves the old or the new
/// content, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => Ok(()),
    }
}

/// Removes a directory tree, treating "already gone" as done.
pub(crate) fn remove_dir_all(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove directory", dir, e)),
    }
}
