//! hvsim's own log file, rotated by size (`[log] file`, `max_size`, `keep`).
//!
//! When the file would grow past `max_size`, it is renamed `FILE.1` (the
//! older ones shift to `FILE.2` ... `FILE.KEEP`, the oldest is deleted) and
//! a new `FILE` is started, so the log never takes more than about
//! `max_size × (keep + 1)` bytes, whatever a guest does. Without `[log]
//! file` hvsim logs to stderr (the journal under systemd, which rotates by
//! itself).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Default `max_size`: 16 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 16 << 20;
/// Default `keep`: rotated files kept.
pub const DEFAULT_KEEP: u32 = 4;

/// Why the log file cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// The file cannot be opened.
    #[error("cannot open log file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// A log file that rotates itself by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: u32,
    file: Option<File>,
    size: u64,
}

fn open(path: &Path) -> Result<(File, u64), LogFileError> {
    let err = |source| LogFileError::Open {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    let size = f.metadata().map_err(err)?.len();
    Ok((f, size))
}

impl RotatingFile {
    /// Append to `path`, rotating past `max_size` bytes, keeping `keep`
    /// old files (0: truncate instead of keeping one).
    pub fn open(path: &Path, max_size: u64, keep: u32) -> Result<RotatingFile, LogFileError> {
        let (f, size) = open(path)?;
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_size: max_size.max(4096),
            keep,
            file: Some(f),
            size,
        })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file = None;
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        let (f, size) = open(&self.path).map_err(|LogFileError::Open { source, .. }| source)?;
        self.file = Some(f);
        self.size = size;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            // A failed rotation keeps appending to what is open (or reopens).
            if let Err(e) = self.rotate() {
                if self.file.is_none() {
                    let (f, size) =
                        open(&self.path).map_err(|LogFileError::Open { source, .. }| source)?;
                    self.file = Some(f);
                    self.size = size;
                }
                eprintln!("hvsim: cannot rotate {}: {e}", self.path.display());
            }
        }
        let f = self.file.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        f.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), Write::flush)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_past_max_size_and_keeps_keep_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log/hvsim.log");
        let mut f = RotatingFile::open(&p, 10_000, 2).unwrap();
        let line = [b'x'; 1000];
        for _ in 0..55 {
            f.write_all(&line).unwrap();
        }
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        assert_eq!(size(&p), 5000);
        assert_eq!(size(&f.rotated(1)), 10_000);
        assert_eq!(size(&f.rotated(2)), 10_000);
        assert!(!f.rotated(3).exists());
        // Reopening appends to what is there.
        drop(f);
        let mut f = RotatingFile::open(&p, 10_000, 2).unwrap();
        f.write_all(&line).unwrap();
        assert_eq!(size(&p), 6000);
    }
}
