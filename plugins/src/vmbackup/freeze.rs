//! Freezing and thawing file systems: the mount table, `FIFREEZE`/`FITHAW`,
//! the marker a restarted agent thaws from, and the watchdog process that
//! thaws when the agent dies.
//!
//! Facts from open-vm-tools' lib/syncDriver (syncDriverPosix.c,
//! syncDriverLinux.c): local mounts in reverse mount-table order (a loop
//! mount is frozen before the file system holding its image), one mount per
//! device, remote types (autofs, cifs, nfs, nfs4, smbfs, vmhgfs, http(s)://
//! sources) skipped, `EOPNOTSUPP` ignored, thaw in reverse order of freeze.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `FIFREEZE`: `_IOWR('X', 119, int)`.
const FIFREEZE: libc::c_ulong = 0xC004_5877;
/// `FITHAW`: `_IOWR('X', 120, int)`.
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Remote file systems: freezing them is meaningless and opening them can
/// hang (open-vm-tools PR 1196785).
const REMOTE_TYPES: [&str; 6] = ["autofs", "cifs", "nfs", "nfs4", "smbfs", "vmhgfs"];

/// Kernel pseudo file systems: nothing on them belongs in a snapshot.
const PSEUDO_TYPES: [&str; 22] = [
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "ramfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "pstore",
    "bpf",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "efivarfs",
    "rpc_pipefs",
    "nsfs",
    "selinuxfs",
];

/// Why freezing or thawing failed.
#[derive(Debug, thiserror::Error)]
pub enum FreezeError {
    /// The mount table could not be read.
    #[error("cannot read the mount table {}: {source}", .path.display())]
    MountTable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path of `[vmbackup] freeze` is not a mount point.
    #[error("{} (in [vmbackup] freeze) is not a mount point; not freezing anything", .0.display())]
    NotMounted(PathBuf),
    /// Nothing to freeze.
    #[error("no file systems to freeze")]
    Nothing,
    /// A mount point could not be opened.
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        /// The mount point.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// FIFREEZE failed.
    #[error("cannot freeze {}: {source}", .path.display())]
    Freeze {
        /// The mount point.
        path: PathBuf,
        /// The OS error (EBUSY: frozen by someone else).
        source: std::io::Error,
    },
    /// FITHAW failed for some mount points.
    #[error("cannot thaw {}", .0.join(", "))]
    Thaw(Vec<String>),
    /// The marker file could not be written.
    #[error("cannot record the frozen file systems in {}: {source}", .path.display())]
    Marker {
        /// The marker file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One line of /proc/self/mountinfo, the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the file system.
    pub device: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// File system type.
    pub fs_type: String,
    /// Mount source (device path, server:/path, ...).
    pub source: String,
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Parse mountinfo text, in mount order.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if f.len() < 5 || r.len() < 2 {
                return None;
            }
            Some(Mount {
                device: f[2].to_string(),
                mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(f[4]))),
                fs_type: r[0].to_string(),
                source: String::from_utf8_lossy(&unescape(r[1])).into_owned(),
            })
        })
        .collect()
}

impl Mount {
    /// A network file system.
    pub fn is_remote(&self) -> bool {
        let src = self.source.to_ascii_lowercase();
        REMOTE_TYPES.contains(&self.fs_type.as_str())
            || src.starts_with("http://")
            || src.starts_with("https://")
    }

    /// A kernel pseudo file system or a FUSE one (freezing FUSE can
    /// deadlock on its own daemon).
    pub fn is_pseudo(&self) -> bool {
        PSEUDO_TYPES.contains(&self.fs_type.as_str())
            || self.fs_type == "fuse"
            || self.fs_type.starts_with("fuse.")
    }
}

/// The mount points to freeze, in freezing order (reverse mount order).
///
/// `only` (`[vmbackup] freeze`): just these, each of which must be a mount
/// point of the table; otherwise every local, non-pseudo file system once
/// (first mount of each device), less those matching `excluded` (globs).
pub fn plan(
    mounts: &[Mount],
    only: Option<&[PathBuf]>,
    excluded: &[String],
) -> Result<Vec<PathBuf>, FreezeError> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    if let Some(only) = only {
        for p in only {
            if !mounts.iter().any(|m| &m.mount_point == p) {
                return Err(FreezeError::NotMounted(p.clone()));
            }
        }
    }
    for m in mounts {
        if let Some(only) = only {
            if !only.contains(&m.mount_point) {
                continue;
            }
        } else if m.is_remote() || m.is_pseudo() {
            continue;
        }
        let text = m.mount_point.to_string_lossy();
        if excluded.iter().any(|g| crate::glob::matches(g, &text)) {
            continue;
        }
        if !seen.insert(m.device.clone()) {
            continue;
        }
        out.push(m.mount_point.clone());
    }
    out.reverse();
    // A mount point listed twice (mounted over itself) is frozen once.
    let mut uniq = std::collections::HashSet::new();
    out.retain(|p| uniq.insert(p.clone()));
    if out.is_empty() {
        return Err(FreezeError::Nothing);
    }
    Ok(out)
}

/// Read and plan from the mount table at `path`.
pub fn plan_from(
    path: &Path,
    only: Option<&[PathBuf]>,
    excluded: &[String],
) -> Result<Vec<PathBuf>, FreezeError> {
    let text = std::fs::read_to_string(path).map_err(|source| FreezeError::MountTable {
        path: path.to_owned(),
        source,
    })?;
    plan(&parse_mountinfo(&text), only, excluded)
}

/// A mount point opened for freezing (O_RDONLY, a directory).
#[derive(Debug)]
pub struct Target {
    /// The mount point.
    pub path: PathBuf,
    fd: OwnedFd,
}

fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid NUL-terminated path; the returned fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open every mount point of `plan`. Vanished ones (ENOENT) and bind-mounted
/// files (ENOTDIR) are skipped, as vmtoolsd skips them.
pub fn open_targets(plan: &[PathBuf]) -> Result<Vec<Target>, FreezeError> {
    let mut out = Vec::new();
    for p in plan {
        match open_dir(p) {
            Ok(fd) => out.push(Target {
                path: p.clone(),
                fd,
            }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
            Err(source) => {
                return Err(FreezeError::Open {
                    path: p.clone(),
                    source,
                })
            }
        }
    }
    if out.is_empty() {
        return Err(FreezeError::Nothing);
    }
    Ok(out)
}

fn ioctl(fd: RawFd, req: libc::c_ulong) -> std::io::Result<()> {
    let mut arg: libc::c_int = 0;
    // SAFETY: FIFREEZE/FITHAW take (and ignore) an int pointer; `fd` is open.
    let rc = unsafe { libc::ioctl(fd, req as _, &mut arg) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Freeze `targets` in order; on a failure thaw those already frozen and
/// say which failed. Afterwards `targets` holds the frozen ones (those
/// answering EOPNOTSUPP are left out, as vmtoolsd ignores them).
pub fn freeze(targets: &mut Vec<Target>) -> Result<(), FreezeError> {
    let mut frozen = Vec::new();
    for t in targets.drain(..) {
        match ioctl(t.fd.as_raw_fd(), FIFREEZE) {
            Ok(()) => frozen.push(t),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
            Err(source) => {
                let _ = thaw(&frozen);
                return Err(FreezeError::Freeze {
                    path: t.path,
                    source,
                });
            }
        }
    }
    if frozen.is_empty() {
        return Err(FreezeError::Nothing);
    }
    *targets = frozen;
    Ok(())
}

/// Thaw in reverse order of freezing. EINVAL (not frozen) counts as thawed.
pub fn thaw(targets: &[Target]) -> Result<(), FreezeError> {
    let mut failed = Vec::new();
    for t in targets.iter().rev() {
        match ioctl(t.fd.as_raw_fd(), FITHAW) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => failed.push(format!("{} ({e})", t.path.display())),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(FreezeError::Thaw(failed))
    }
}

/// Thaw mount points by path (a restarted agent, from the marker).
pub fn thaw_paths(paths: &[PathBuf]) -> Result<usize, FreezeError> {
    let mut targets = Vec::new();
    let mut failed = Vec::new();
    for p in paths {
        match open_dir(p) {
            Ok(fd) => targets.push(Target {
                path: p.clone(),
                fd,
            }),
            Err(e) => failed.push(format!("{} ({e})", p.display())),
        }
    }
    // The marker lists them in freezing order.
    let r = thaw(&targets);
    match r {
        Ok(()) if failed.is_empty() => Ok(targets.len()),
        Ok(()) => Err(FreezeError::Thaw(failed)),
        Err(FreezeError::Thaw(mut more)) => {
            more.extend(failed);
            Err(FreezeError::Thaw(more))
        }
        Err(e) => Err(e),
    }
}

/// Record `paths` (about to be frozen) in the marker file, atomically.
pub fn write_marker(path: &Path, paths: &[PathBuf]) -> Result<(), FreezeError> {
    let err = |source| FreezeError::Marker {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let list: Vec<String> = paths
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let tmp = path.with_extension("tmp");
    let body = serde_json::to_vec(&list).map_err(|e| err(e.into()))?;
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The mount points a marker lists (None: no marker).
pub fn read_marker(path: &Path) -> Option<Vec<PathBuf>> {
    let b = std::fs::read(path).ok()?;
    let list: Vec<String> = serde_json::from_slice(&b).unwrap_or_default();
    Some(list.into_iter().map(PathBuf::from).collect())
}

/// A forked process that thaws `targets` when the agent dies (its end of
/// a pipe closes) or when `limit_ms` passes without the agent saying the
/// operation is over. It holds nothing but the pipe and the mount points'
/// descriptors and runs no Rust code that allocates or logs.
#[derive(Debug)]
pub struct Watchdog {
    pid: libc::pid_t,
    tx: Option<OwnedFd>,
}

impl Watchdog {
    /// Fork the watchdog. Safe with other threads running: the child makes
    /// only raw system calls (no allocation, no locks) before it exits.
    pub fn spawn(targets: &[Target], limit_ms: Option<u64>) -> std::io::Result<Watchdog> {
        let mut p = [0 as libc::c_int; 2];
        // SAFETY: `p` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned here.
        let (rx, tx) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
        let keep: Vec<RawFd> = targets.iter().map(|t| t.fd.as_raw_fd()).collect();
        let timeout: libc::c_int = limit_ms.map_or(-1, |ms| ms.min(i32::MAX as u64) as i32);
        // SAFETY: fork in a single-threaded process; the child only makes
        // raw system calls on descriptors it owns, then _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: the child; see `watchdog_child`.
            unsafe { watchdog_child(rx.as_raw_fd(), tx.as_raw_fd(), &keep, timeout) }
        }
        drop(rx);
        Ok(Watchdog { pid, tx: Some(tx) })
    }

    /// The operation is over (thawed by the agent): the watchdog exits
    /// without touching anything.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.tx.take() {
            // SAFETY: writing one byte from a valid buffer to our pipe end.
            unsafe { libc::write(tx.as_raw_fd(), b"D".as_ptr().cast(), 1) };
            drop(tx);
            let mut st = 0;
            // SAFETY: reaping our own child.
            unsafe { libc::waitpid(self.pid, &mut st, 0) };
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The watchdog's life: close everything but `rx` and the mount points,
/// wait, thaw unless told the operation is over, exit.
///
/// # Safety
/// Only in the child of a fork; never returns.
unsafe fn watchdog_child(rx: RawFd, tx: RawFd, keep: &[RawFd], timeout: libc::c_int) -> ! {
    // SAFETY: raw system calls on plain integers and stack buffers; no
    // allocation, no locks (the caller is a freshly forked child).
    unsafe {
        libc::close(tx);
        // Let go of the agent's sockets and files (host channel, logs).
        for fd in 3..4096 {
            if fd != rx && !keep.contains(&fd) {
                libc::close(fd);
            }
        }
        // Out of the agent's process group: a signal to the agent's
        // group (Ctrl-C) leaves it to do its job.
        libc::setsid();
        let mut pfd = libc::pollfd {
            fd: rx,
            events: libc::POLLIN,
            revents: 0,
        };
        let thaw_now = loop {
            let n = libc::poll(&mut pfd, 1, timeout);
            if n == 0 {
                break true; // the agent overran the limit
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break true;
            }
            let mut b = 0u8;
            let r = libc::read(rx, (&mut b as *mut u8).cast(), 1);
            break !(r == 1 && b == b'D'); // EOF: the agent died
        };
        if thaw_now {
            for &fd in keep.iter().rev() {
                let mut arg: libc::c_int = 0;
                libc::ioctl(fd, FITHAW as _, &mut arg);
            }
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
26 25 8:2 / /home rw - ext4 /dev/sda2 rw
27 25 0:40 / /mnt/nfs rw - nfs4 srv:/x rw
28 25 8:1 /var/lib /srv/bind rw - ext4 /dev/sda1 rw
29 25 7:0 / /mnt/my\\040img rw - ext4 /dev/loop0 rw
30 25 0:41 / /run rw - tmpfs tmpfs rw
31 25 0:42 / /mnt/web rw - davfs https://example.org/dav rw
";

    #[test]
    fn mountinfo_and_default_plan() {
        let m = parse_mountinfo(INFO);
        assert_eq!(m.len(), 8);
        assert_eq!(m[5].mount_point, Path::new("/mnt/my img"));
        assert_eq!(m[5].source, "/dev/loop0");
        let p = plan(&m, None, &[]).unwrap();
        // Reverse mount order, one per device, no remote or pseudo.
        assert_eq!(p, ["/mnt/my img", "/home", "/"].map(PathBuf::from).to_vec());
        let p = plan(&m, None, &["/home".into(), "/mnt/*".into()]).unwrap();
        assert_eq!(p, [PathBuf::from("/")]);
    }

    #[test]
    fn explicit_list_must_be_mount_points() {
        let m = parse_mountinfo(INFO);
        let only = [PathBuf::from("/home"), PathBuf::from("/mnt/my img")];
        assert_eq!(
            plan(&m, Some(&only), &[]).unwrap(),
            [only[1].clone(), only[0].clone()]
        );
        // A directory that is not a mount point would freeze the file
        // system holding it: refused.
        let e = plan(&m, Some(&[PathBuf::from("/mnt/none")]), &[]).unwrap_err();
        assert!(matches!(e, FreezeError::NotMounted(_)), "{e}");
        assert!(matches!(
            plan(&m, Some(&[]), &[]).unwrap_err(),
            FreezeError::Nothing
        ));
    }

    #[test]
    fn marker_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("sub/marker");
        assert_eq!(read_marker(&f), None);
        let paths = [PathBuf::from("/a b"), PathBuf::from("/c")];
        write_marker(&f, &paths).unwrap();
        assert_eq!(read_marker(&f).unwrap(), paths);
    }
}
