//! Virtual media images: what a Redfish `InsertMedia` names and the NBD
//! server exports.
//!
//! * `file://PATH`: a file under the configured media directory (symlinks
//!   resolved first, so a link cannot lead out of it).
//! * `https://` (and `http://` where the config allows it): streamed with
//!   HTTP range requests through [`http::HttpImage`], a small blocking
//!   HTTP/1.1 client on rustls with a bounded block cache. The image is never
//!   downloaded whole (sushy-tools does that first, into a temp file).
//!
//! We use our own client rather than a crate such as `ureq`: ranged GETs over
//! keep-alive connections are all we need, rustls and httparse are already in
//! the tree, and the server side's limits apply unchanged to the client side.
//!
//! Threat table: the image server is untrusted. Response heads are bounded
//! ([`http::MAX_HEAD`]), bodies must be exactly the requested range
//! (anything else fails the read with EIO, never a short or shifted block),
//! connect and read times are bounded, the cache holds at most
//! [`http::CACHE_BLOCKS`] blocks. Certificates are verified against the
//! system roots plus `[redfish] media_ca` unless the medium's
//! `VerifyCertificate` is false. `file://` paths must resolve under
//! `[redfish] media_dir`; without one, `file://` is refused.

pub mod http;

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Why an image could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The URL is not one we can serve.
    #[error("unsupported image URL {0:?}: use https://, http:// (if allowed) or file://")]
    BadUrl(String),
    /// Plain HTTP is off.
    #[error("http:// images are disabled; use https:// or set [redfish] allow_http = true")]
    HttpNotAllowed,
    /// `file://` outside the media directory, or none configured.
    #[error("{0}")]
    FileNotAllowed(String),
    /// A local file error.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The image server failed or answered wrongly.
    #[error("{url}: {msg}")]
    Remote {
        /// The image URL.
        url: String,
        /// What went wrong.
        msg: String,
    },
    /// A read or write outside the image.
    #[error("offset {offset} length {len} is outside the {size}-byte image")]
    OutOfRange {
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// Image size.
        size: u64,
    },
    /// A write to a read-only image.
    #[error("the image is write-protected")]
    ReadOnly,
}

/// The bytes of an image.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset` (the range was checked against [`size`](Self::size)).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MediaError>;
    /// Write `buf` at `offset` (only on writable backends).
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), MediaError>;
    /// Make writes durable.
    fn flush(&self) -> Result<(), MediaError>;
    /// Whether writes are possible at all.
    fn writable(&self) -> bool;
    /// The local file holding the image byte for byte, when there is one:
    /// the NBD server then sends reads with `sendfile(2)` straight from the
    /// page cache instead of copying them through a buffer.
    fn file(&self) -> Option<&File> {
        None
    }
}

/// How to open an image.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Directory `file://` images must be under.
    pub media_dir: Option<PathBuf>,
    /// Allow `http://`.
    pub allow_http: bool,
    /// Verify the server certificate of `https://` images.
    pub verify: bool,
    /// Extra trust anchors (PEM) for `https://`.
    pub ca_file: Option<PathBuf>,
    /// Basic credentials for the image server.
    pub credentials: Option<(String, String)>,
    /// Open for writing (a `file://` image with WriteProtected false).
    pub write: bool,
}

/// The transfer protocol of an image URL (Redfish `TransferProtocolType`).
pub fn protocol_of(url: &str) -> Option<&'static str> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") {
        Some("HTTPS")
    } else if lower.starts_with("http://") {
        Some("HTTP")
    } else if lower.starts_with("file://") {
        Some("OEM")
    } else {
        None
    }
}

/// Open the image at `url`.
pub fn open(url: &str, o: &OpenOptions) -> Result<Arc<dyn Backend>, MediaError> {
    match protocol_of(url) {
        Some("HTTPS") => Ok(Arc::new(http::HttpImage::open(url, o)?)),
        Some("HTTP") if o.allow_http => Ok(Arc::new(http::HttpImage::open(url, o)?)),
        Some("HTTP") => Err(MediaError::HttpNotAllowed),
        Some(_) => Ok(Arc::new(FileImage::open(&url[7..], o)?)),
        None => Err(MediaError::BadUrl(url.to_string())),
    }
}

/// A local image file.
#[derive(Debug)]
pub struct FileImage {
    file: File,
    path: PathBuf,
    size: u64,
    writable: bool,
}

impl FileImage {
    /// Open `path` (from a `file://` URL), which must resolve under the
    /// media directory.
    pub fn open(path: &str, o: &OpenOptions) -> Result<FileImage, MediaError> {
        let Some(dir) = &o.media_dir else {
            return Err(MediaError::FileNotAllowed(
                "file:// images need [redfish] media_dir".into(),
            ));
        };
        let ferr = |p: &Path| {
            let p = p.to_path_buf();
            move |source| MediaError::File { path: p, source }
        };
        let dir = std::fs::canonicalize(dir).map_err(ferr(dir))?;
        let decoded = percent_decode(path);
        let p = Path::new(&decoded);
        let real = std::fs::canonicalize(p).map_err(ferr(p))?;
        if !real.starts_with(&dir) {
            return Err(MediaError::FileNotAllowed(format!(
                "{} is not under the media directory {}",
                real.display(),
                dir.display()
            )));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(o.write)
            .open(&real)
            .map_err(ferr(&real))?;
        let md = file.metadata().map_err(ferr(&real))?;
        if !md.is_file() {
            return Err(MediaError::FileNotAllowed(format!(
                "{} is not a regular file",
                real.display()
            )));
        }
        Ok(FileImage {
            file,
            path: real,
            size: md.len(),
            writable: o.write,
        })
    }
}

impl Backend for FileImage {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MediaError> {
        self.file
            .read_exact_at(buf, offset)
            .map_err(|source| MediaError::File {
                path: self.path.clone(),
                source,
            })
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), MediaError> {
        if !self.writable {
            return Err(MediaError::ReadOnly);
        }
        self.file
            .write_all_at(buf, offset)
            .map_err(|source| MediaError::File {
                path: self.path.clone(),
                source,
            })
    }
    fn flush(&self) -> Result<(), MediaError> {
        if !self.writable {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| MediaError::File {
            path: self.path.clone(),
            source,
        })
    }
    fn writable(&self) -> bool {
        self.writable
    }
    fn file(&self) -> Option<&File> {
        Some(&self.file)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Traffic counters of an inserted medium (Redfish Oem, `hvsim vm show`).
#[derive(Debug, Default)]
pub struct Counters {
    /// Read requests.
    pub reads: AtomicU64,
    /// Bytes read.
    pub bytes_read: AtomicU64,
    /// Write requests.
    pub writes: AtomicU64,
    /// Bytes written.
    pub bytes_written: AtomicU64,
    /// NBD connections served.
    pub connections: AtomicU64,
}

/// An inserted medium: an open image plus what Redfish reports about it.
#[derive(Debug)]
pub struct Medium {
    /// The image URL as given.
    pub url: String,
    /// The image.
    pub backend: Arc<dyn Backend>,
    /// Writes refused.
    pub write_protected: bool,
    /// When it was inserted.
    pub inserted_at: SystemTime,
    /// Traffic.
    pub counters: Counters,
    /// Monotonic time of insert: `last_access` counts from it.
    created: Instant,
    /// Milliseconds after `created` of the last read, write or flush. An
    /// atomic, not a lock: every NBD request touches it, from every
    /// connection.
    last_access: AtomicU64,
    ejected: AtomicBool,
}

impl Medium {
    /// A medium over `backend`.
    pub fn new(url: String, backend: Arc<dyn Backend>, write_protected: bool) -> Medium {
        Medium {
            url,
            backend,
            write_protected,
            inserted_at: SystemTime::now(),
            counters: Counters::default(),
            created: Instant::now(),
            last_access: AtomicU64::new(0),
            ejected: AtomicBool::new(false),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.backend.size()
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.write_protected || !self.backend.writable()
    }

    fn check(&self, offset: u64, len: u64) -> Result<(), MediaError> {
        let size = self.size();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(MediaError::OutOfRange { offset, len, size });
        }
        Ok(())
    }

    fn touch(&self) {
        let ms = self.created.elapsed().as_millis() as u64;
        self.last_access.fetch_max(ms, Ordering::Relaxed);
    }

    /// Count a read of `len` bytes at `offset` and return the image file
    /// for the caller to read (or `sendfile`) itself; `None` when the
    /// backend has no such file or the medium is writable (a later NBD write
    /// could then change pages still queued in the socket). Errors as
    /// [`read_at`](Self::read_at) for a range outside the image.
    pub fn file_for_read(&self, offset: u64, len: u64) -> Result<Option<&File>, MediaError> {
        self.check(offset, len)?;
        let Some(f) = self.backend.file().filter(|_| self.read_only()) else {
            return Ok(None);
        };
        self.touch();
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes_read.fetch_add(len, Ordering::Relaxed);
        Ok(Some(f))
    }

    /// Read, counted.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MediaError> {
        self.check(offset, buf.len() as u64)?;
        self.touch();
        self.counters.reads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_read
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.backend.read_at(buf, offset)
    }

    /// Write, counted; refused when read-only.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), MediaError> {
        if self.read_only() {
            return Err(MediaError::ReadOnly);
        }
        self.check(offset, buf.len() as u64)?;
        self.touch();
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_written
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.backend.write_at(buf, offset)
    }

    /// Flush writes.
    pub fn flush(&self) -> Result<(), MediaError> {
        self.touch();
        self.backend.flush()
    }

    /// Time since the last read, write or flush (or the insert).
    pub fn idle(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last_access.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(last)
    }

    /// Mark ejected: NBD connections to it end at their next request.
    pub fn eject(&self) {
        self.ejected.store(true, Ordering::SeqCst);
    }

    /// Whether it was ejected.
    pub fn ejected(&self) -> bool {
        self.ejected.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_images_stay_under_the_media_dir() {
        let d = tempfile::tempdir().unwrap();
        let media = d.path().join("media");
        std::fs::create_dir(&media).unwrap();
        std::fs::write(media.join("a.iso"), b"hello").unwrap();
        std::fs::write(d.path().join("secret"), b"no").unwrap();
        std::os::unix::fs::symlink(d.path().join("secret"), media.join("link")).unwrap();
        let o = OpenOptions {
            media_dir: Some(media.clone()),
            ..Default::default()
        };
        let img = open(&format!("file://{}/a.iso", media.display()), &o).unwrap();
        let mut b = [0u8; 5];
        img.read_at(&mut b, 0).unwrap();
        assert_eq!(&b, b"hello");
        for bad in [
            format!("file://{}/../secret", media.display()),
            format!("file://{}/link", media.display()),
        ] {
            assert!(matches!(open(&bad, &o), Err(MediaError::FileNotAllowed(_))));
        }
        let none = OpenOptions::default();
        assert!(open(&format!("file://{}/a.iso", media.display()), &none).is_err());
        assert!(matches!(open("ftp://x/y", &o), Err(MediaError::BadUrl(_))));
        assert!(matches!(
            open("http://127.0.0.1:1/x", &o),
            Err(MediaError::HttpNotAllowed)
        ));
    }

    #[test]
    fn medium_bounds_and_protection() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("u.img"), [7u8; 4096]).unwrap();
        let o = OpenOptions {
            media_dir: Some(d.path().into()),
            write: true,
            ..Default::default()
        };
        let url = format!("file://{}/u.img", d.path().display());
        let m = Medium::new(url.clone(), open(&url, &o).unwrap(), false);
        m.write_at(&[1, 2], 10).unwrap();
        let mut b = [0u8; 3];
        m.read_at(&mut b, 9).unwrap();
        assert_eq!(b, [7, 1, 2]);
        assert!(matches!(
            m.read_at(&mut b, 4095),
            Err(MediaError::OutOfRange { .. })
        ));
        assert!(m.read_at(&mut b, u64::MAX - 1).is_err());
        let ro = Medium::new(url.clone(), open(&url, &o).unwrap(), true);
        assert!(matches!(ro.write_at(&[1], 0), Err(MediaError::ReadOnly)));
        assert_eq!(m.counters.writes.load(Ordering::Relaxed), 1);
    }
}
