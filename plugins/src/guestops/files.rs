//! The VIX file operations, run while the agent impersonates the user:
//! list, mkdir, mv, mktemp, rm, rmdir, attributes, and the checks before a
//! transfer. Checks and error numbers follow vmtoolsd's `vixTools.c`.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use protocol::vix::{err, file_attr, set_attr, FileInfo, FileList};

/// A VIX error for the reply: the error number and the errno behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    /// The VIX error.
    pub code: u64,
    /// The system error (the reply's additional error).
    pub errno: u32,
}

impl Fail {
    /// An error without an errno.
    pub fn vix(code: u64) -> Fail {
        Fail { code, errno: 0 }
    }

    /// An OS error, translated as vmtoolsd's `Vix_TranslateErrno`.
    pub fn os(e: &io::Error) -> Fail {
        let errno = e.raw_os_error().unwrap_or(0);
        Fail {
            code: translate_errno(errno),
            errno: errno as u32,
        }
    }
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::os(&e)
    }
}

/// vmtoolsd's errno → VIX error table (`Vix_TranslateErrno`).
pub fn translate_errno(errno: i32) -> u64 {
    match errno {
        libc::EPERM | libc::EACCES => err::FILE_ACCESS_ERROR,
        libc::EAGAIN | libc::EBUSY => err::OBJECT_IS_BUSY,
        libc::EEXIST => err::FILE_ALREADY_EXISTS,
        libc::EFBIG => 36, // VIX_E_FILE_TOO_BIG
        libc::ENOTEMPTY => err::DIRECTORY_NOT_EMPTY,
        libc::ENOTDIR => err::NOT_A_DIRECTORY,
        libc::ETIMEDOUT
        | libc::ENOBUFS
        | libc::EIO
        | libc::EMFILE
        | libc::ENFILE
        | libc::EMLINK
        | libc::EROFS => err::FILE_ERROR,
        libc::ENODEV | libc::ENOENT => err::FILE_NOT_FOUND,
        libc::ENOSPC => err::DISK_FULL,
        libc::EISDIR => err::NOT_A_FILE,
        libc::ESRCH => err::NO_SUCH_PROCESS,
        libc::ENAMETOOLONG => err::FILE_NAME_TOO_LONG,
        libc::EMSGSIZE | libc::EINVAL => err::INVALID_ARG,
        libc::ELOOP | libc::ENOMEM => err::OUT_OF_MEMORY,
        _ => err::FAIL,
    }
}

type Result<T> = std::result::Result<T, Fail>;

fn nonempty(path: &str) -> Result<&Path> {
    if path.is_empty() {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    Ok(Path::new(path))
}

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// The `<fxi>` entry of `path`, named `name`; `None` when it vanished
/// (vmtoolsd skips such entries).
pub fn file_info(path: &Path, name: &str) -> Option<FileInfo> {
    let lmeta = fs::symlink_metadata(path).ok()?;
    let mut info = FileInfo {
        name: name.to_owned(),
        ..FileInfo::default()
    };
    if lmeta.file_type().is_symlink() {
        info.file_type = file_attr::SYMLINK;
        info.symlink_target = fs::read_link(path)
            .map(|t| t.to_string_lossy().into_owned())
            .unwrap_or_default();
    } else if lmeta.is_dir() {
        info.file_type = file_attr::DIRECTORY;
    } else {
        info.size = lmeta.len();
    }
    // Owner, mode and times of what a symlink points to (stat, as vmtoolsd).
    if let Ok(m) = fs::metadata(path) {
        info.uid = m.uid() as i32;
        info.gid = m.gid() as i32;
        info.perm = m.mode() as i32;
        info.mtime = m.mtime().max(0) as u64;
        info.atime = m.atime().max(0) as u64;
    }
    Some(info)
}

/// LIST_FILES: a directory's entries (with `.` and `..` first) or one
/// file, filtered by `pattern`, from `index + offset`, at most
/// `max_results`, within `max_len` bytes of result. The text starts with
/// `0 ` (or `1 ` when the page was cut by size) as vmtoolsd's.
pub fn list_files(
    req: &protocol::vix::ListFiles,
    pattern: Option<&regex_lite::Regex>,
    max_len: usize,
) -> Result<String> {
    let dir = nonempty(&req.path)?;
    if req.offset >= i32::MAX as u64 || req.index < 0 || req.max_results < 0 {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    let offset = req.offset as usize;
    let index = req.index as usize;
    let max_results = req.max_results as usize;
    if max_results > 0 && offset >= max_results {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    let single = is_symlink(dir) || !dir.is_dir();
    let mut names: Vec<String> = if single {
        fs::symlink_metadata(dir)?;
        vec![req.path.clone()]
    } else {
        let mut v: Vec<String> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort_unstable();
        let mut all = vec![".".to_owned(), "..".to_owned()];
        all.extend(v);
        all
    };
    if let Some(re) = pattern {
        names.retain(|n| re.is_match(n));
    }
    let total = names.len();
    let mut out = FileList::default();
    let mut truncated = false;
    let mut remaining = 0;
    // "1 " + "<rem>" + 10 digits + "</rem>" + NUL.
    let mut used = 2 + 11 + 10 + 1;
    if max_results > 0 {
        let want = max_results - offset;
        let mut i = index + offset;
        while i < total {
            let name = &names[i];
            let path = if single {
                Path::new(name).to_owned()
            } else {
                dir.join(name)
            };
            if let Some(info) = file_info(&path, name) {
                let len = info.to_xml().len();
                if used + len >= max_len {
                    truncated = true;
                    remaining = total - i;
                    break;
                }
                used += len;
                out.files.push(info);
            }
            i += 1;
            if out.files.len() == want {
                remaining = total - i;
                break;
            }
        }
    } else {
        remaining = total.saturating_sub(index);
    }
    out.remaining = remaining as u32;
    out.truncated = truncated;
    Ok(out.to_xml())
}

/// CREATE_DIRECTORY_EX: mode 0700 (as vmtoolsd), parents on request.
pub fn create_directory(path: &str, parents: bool) -> Result<()> {
    let p = nonempty(path)?;
    if fs::symlink_metadata(p).is_ok() {
        return Err(Fail::vix(err::FILE_ALREADY_EXISTS));
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .recursive(parents)
        .create(p)?;
    Ok(())
}

/// DELETE_GUEST_FILE_EX: a file or a symlink (never what it points to).
pub fn delete_file(path: &str) -> Result<()> {
    let p = nonempty(path)?;
    let meta = fs::symlink_metadata(p)?;
    if !meta.file_type().is_symlink() && meta.is_dir() {
        return Err(Fail::vix(err::NOT_A_FILE));
    }
    fs::remove_file(p)?;
    Ok(())
}

/// DELETE_GUEST_DIRECTORY_EX: empty, or the whole tree when `recursive`
/// (symlinks inside are removed, not followed).
pub fn delete_directory(path: &str, recursive: bool) -> Result<()> {
    let p = nonempty(path)?;
    let meta = fs::symlink_metadata(p)?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(Fail::vix(err::NOT_A_DIRECTORY));
    }
    if recursive {
        fs::remove_dir_all(p)?;
    } else if let Err(e) = fs::remove_dir(p) {
        // vmtoolsd turns EEXIST from rmdir into "not empty" too.
        if e.raw_os_error() == Some(libc::EEXIST) {
            return Err(Fail {
                code: err::DIRECTORY_NOT_EMPTY,
                errno: libc::ENOTEMPTY as u32,
            });
        }
        return Err(e.into());
    }
    Ok(())
}

/// MOVE_GUEST_FILE_EX (`directory` false) and MOVE_GUEST_DIRECTORY.
pub fn move_path(old: &str, new: &str, overwrite: bool, directory: bool) -> Result<()> {
    let src = nonempty(old)?;
    let dst = nonempty(new)?;
    let smeta = fs::symlink_metadata(src)?;
    if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(dst)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            return Ok(());
        }
    }
    if dst.is_dir() && !is_symlink(dst) {
        return Err(Fail::vix(err::FILE_ALREADY_EXISTS));
    }
    let src_is_dir = smeta.is_dir() && !smeta.file_type().is_symlink();
    if directory {
        if !src_is_dir {
            return Err(Fail::vix(err::NOT_A_DIRECTORY));
        }
        if fs::symlink_metadata(dst).is_ok() {
            return Err(Fail::vix(err::FILE_ALREADY_EXISTS));
        }
    } else {
        if src_is_dir {
            return Err(Fail::vix(err::NOT_A_FILE));
        }
        if !overwrite && fs::symlink_metadata(dst).is_ok() {
            return Err(Fail::vix(err::FILE_ALREADY_EXISTS));
        }
    }
    match fs::rename(src, dst) {
        // Another file system: copy then remove, as File_Move does.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) && !src_is_dir => {
            fs::copy(src, dst)?;
            fs::remove_file(src)?;
            Ok(())
        }
        r => Ok(r?),
    }
}

/// The directory temporary files go to by default: the agent's `TMPDIR`,
/// else `/tmp`.
pub fn temp_dir() -> String {
    std::env::var("TMPDIR")
        .ok()
        .filter(|d| d.starts_with('/'))
        .unwrap_or_else(|| "/tmp".to_owned())
}

/// CREATE_TEMPORARY_FILE_EX / _DIRECTORY: `<dir>/<prefix>vmware<n><suffix>`
/// created exclusively (file 0600, directory 0700); `dir` empty is
/// [`temp_dir`].
pub fn create_temp(prefix: &str, suffix: &str, dir: &str, directory: bool) -> Result<String> {
    let default = temp_dir();
    let base = if dir.is_empty() {
        default.as_str()
    } else {
        dir
    };
    let meta = fs::metadata(base)?;
    if !meta.is_dir() {
        return Err(Fail::vix(err::NOT_A_DIRECTORY));
    }
    if prefix.contains('/') || suffix.contains('/') {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    for _ in 0..100 {
        let n = random_u32();
        let path = Path::new(base).join(format!("{prefix}vmware{n}{suffix}"));
        let made = if directory {
            fs::DirBuilder::new().mode(0o700).create(&path)
        } else {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map(drop)
        };
        match made {
            Ok(()) => return Ok(path.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Fail::vix(err::FAIL))
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom into a 4-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 4 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(std::process::id().into());
        return h.finish() as u32;
    }
    u32::from_le_bytes(b)
}

/// SET_GUEST_FILE_ATTRIBUTES: times, owner, group, permissions (Linux has
/// no hidden/read-only attributes: asking for them is an invalid argument).
pub fn set_attributes(req: &protocol::vix::SetAttributes) -> Result<()> {
    let p = nonempty(&req.path)?;
    let o = req.file_options;
    if o & (set_attr::HIDDEN | set_attr::READONLY) != 0 {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    fs::metadata(p)?;
    let c = std::ffi::CString::new(req.path.as_bytes()).map_err(|_| Fail::vix(err::INVALID_ARG))?;
    if o & (set_attr::UNIX_OWNERID | set_attr::UNIX_GROUPID) != 0 {
        let uid = if o & set_attr::UNIX_OWNERID != 0 {
            req.owner_id as libc::uid_t
        } else {
            u32::MAX
        };
        let gid = if o & set_attr::UNIX_GROUPID != 0 {
            req.group_id as libc::gid_t
        } else {
            u32::MAX
        };
        // SAFETY: a valid C path; -1 keeps an id.
        if unsafe { libc::chown(c.as_ptr(), uid, gid) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
    }
    if o & set_attr::UNIX_PERMISSIONS != 0 {
        fs::set_permissions(
            p,
            fs::Permissions::from_mode(req.permissions as u32 & 0o7777),
        )?;
    }
    if o & (set_attr::ACCESS_DATE | set_attr::MODIFY_DATE) != 0 {
        let t = |set: bool, secs: i64| libc::timespec {
            tv_sec: if set { secs } else { 0 },
            tv_nsec: if set { 0 } else { libc::UTIME_OMIT },
        };
        let times = [
            t(o & set_attr::ACCESS_DATE != 0, req.access_time),
            t(o & set_attr::MODIFY_DATE != 0, req.modification_time),
        ];
        // SAFETY: a valid C path and two timespecs.
        if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
    }
    Ok(())
}

/// INITIATE_FILE_TRANSFER_FROM_GUEST: the file's `<fxi>` (named by its
/// full path); symlinks and directories refused as vmtoolsd does.
pub fn transfer_from_guest(path: &str) -> Result<String> {
    let p = nonempty(path)?;
    if is_symlink(p) {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    if p.is_dir() {
        return Err(Fail::vix(err::NOT_A_FILE));
    }
    fs::metadata(p)?;
    let info = file_info(p, path).ok_or(Fail::vix(err::FILE_ACCESS_ERROR))?;
    Ok(info.to_xml())
}

/// INITIATE_FILE_TRANSFER_TO_GUEST: may `path` be written?
pub fn transfer_to_guest(path: &str, overwrite: bool) -> Result<()> {
    let p = nonempty(path)?;
    if is_symlink(p) {
        return Err(Fail::vix(err::INVALID_ARG));
    }
    if let Ok(m) = fs::metadata(p) {
        if m.is_dir() {
            return Err(Fail::vix(err::NOT_A_FILE));
        }
        if !overwrite {
            return Err(Fail::vix(err::FILE_ALREADY_EXISTS));
        }
        if !access(p, libc::W_OK) {
            return Err(Fail::vix(err::FILE_ACCESS_ERROR));
        }
    }
    let parent = match p.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => return Err(Fail::vix(err::FILE_NAME_INVALID)),
    };
    if !parent.is_dir() {
        return Err(Fail::vix(err::FILE_NAME_INVALID));
    }
    if !access(parent, libc::W_OK) {
        return Err(Fail::vix(err::FILE_ACCESS_ERROR));
    }
    Ok(())
}

/// access(2) with the effective (impersonated) ids.
fn access(p: &Path, mode: i32) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid C path.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::vix::ListFiles;

    fn ls(path: &Path, index: i32, max: i32) -> FileList {
        let req = ListFiles {
            file_options: 0,
            path: path.to_string_lossy().into_owned(),
            pattern: String::new(),
            index,
            max_results: max,
            offset: 0,
        };
        let text = list_files(&req, None, protocol::vix::MAX_RESULT_LEN).unwrap();
        let list = FileList::parse(&text).unwrap();
        assert!(!list.truncated);
        list
    }

    #[test]
    fn lists_pages_and_single_files() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..5 {
            fs::write(d.path().join(format!("f{i}")), vec![b'x'; i]).unwrap();
        }
        std::os::unix::fs::symlink("f1", d.path().join("link")).unwrap();
        let all = ls(d.path(), 0, 100);
        let names: Vec<&str> = all.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, [".", "..", "f0", "f1", "f2", "f3", "f4", "link"]);
        assert_eq!(all.remaining, 0);
        assert!(all.files[0].is_dir());
        assert_eq!(all.files[5].size, 3);
        let link = &all.files[7];
        assert!(link.is_symlink());
        assert_eq!(link.symlink_target, "f1");
        let page = ls(d.path(), 2, 3);
        assert_eq!(page.files.len(), 3);
        assert_eq!(page.files[0].name, "f0");
        assert_eq!(page.remaining, 3);
        let one = ls(&d.path().join("f4"), 0, 10);
        assert_eq!(one.files.len(), 1);
        assert_eq!(one.files[0].size, 4);
        let req = ListFiles {
            file_options: 0,
            path: d.path().join("nope").to_string_lossy().into_owned(),
            pattern: String::new(),
            index: 0,
            max_results: 10,
            offset: 0,
        };
        assert_eq!(
            list_files(&req, None, 65000).unwrap_err().code,
            err::FILE_NOT_FOUND
        );
    }

    #[test]
    fn a_page_stops_before_64_kib() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..1200 {
            fs::write(d.path().join(format!("file-with-a-long-name-{i:05}")), b"").unwrap();
        }
        let req = ListFiles {
            file_options: 0,
            path: d.path().to_string_lossy().into_owned(),
            pattern: String::new(),
            index: 0,
            max_results: 5000,
            offset: 0,
        };
        let text = list_files(&req, None, protocol::vix::MAX_RESULT_LEN).unwrap();
        assert!(text.len() < protocol::vix::MAX_RESULT_LEN);
        let page = FileList::parse(&text).unwrap();
        assert!(page.truncated);
        assert_eq!(page.files.len() + page.remaining as usize, 1202);
    }

    #[test]
    fn directory_ops_and_their_errors() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a/b/c");
        let a_s = a.to_str().unwrap();
        assert_eq!(
            create_directory(a_s, false).unwrap_err().code,
            err::FILE_NOT_FOUND
        );
        create_directory(a_s, true).unwrap();
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o777, 0o700);
        assert_eq!(
            create_directory(a_s, true).unwrap_err().code,
            err::FILE_ALREADY_EXISTS
        );
        let top = d.path().join("a");
        let top_s = top.to_str().unwrap();
        assert_eq!(
            delete_directory(top_s, false).unwrap_err().code,
            err::DIRECTORY_NOT_EMPTY
        );
        assert_eq!(delete_file(top_s).unwrap_err().code, err::NOT_A_FILE);
        let f = d.path().join("f");
        fs::write(&f, b"1").unwrap();
        let f_s = f.to_str().unwrap();
        assert_eq!(
            delete_directory(f_s, true).unwrap_err().code,
            err::NOT_A_DIRECTORY
        );
        let g = d.path().join("g");
        let g_s = g.to_str().unwrap();
        move_path(f_s, g_s, false, false).unwrap();
        fs::write(&f, b"2").unwrap();
        assert_eq!(
            move_path(f_s, g_s, false, false).unwrap_err().code,
            err::FILE_ALREADY_EXISTS
        );
        move_path(f_s, g_s, true, false).unwrap();
        assert_eq!(fs::read(&g).unwrap(), b"2");
        assert_eq!(
            move_path(g_s, d.path().join("h").to_str().unwrap(), false, true)
                .unwrap_err()
                .code,
            err::NOT_A_DIRECTORY
        );
        move_path(top_s, d.path().join("z").to_str().unwrap(), false, true).unwrap();
        delete_directory(d.path().join("z").to_str().unwrap(), true).unwrap();
        delete_file(g_s).unwrap();
        assert_eq!(delete_file(g_s).unwrap_err().code, err::FILE_NOT_FOUND);
    }

    #[test]
    fn temp_files_and_transfers() {
        let d = tempfile::tempdir().unwrap();
        let ds = d.path().to_str().unwrap();
        let t = create_temp("pre-", ".txt", ds, false).unwrap();
        assert!(t.starts_with(&format!("{ds}/pre-vmware")) && t.ends_with(".txt"));
        assert_eq!(fs::metadata(&t).unwrap().mode() & 0o777, 0o600);
        let td = create_temp("", "", ds, true).unwrap();
        assert!(Path::new(&td).is_dir());
        assert_eq!(
            create_temp("", "", &t, false).unwrap_err().code,
            err::NOT_A_DIRECTORY
        );
        let xml = transfer_from_guest(&t).unwrap();
        let list = FileList::parse(&xml).unwrap();
        assert_eq!(list.files[0].name, t);
        assert_eq!(transfer_from_guest(&td).unwrap_err().code, err::NOT_A_FILE);
        assert_eq!(
            transfer_to_guest(&t, false).unwrap_err().code,
            err::FILE_ALREADY_EXISTS
        );
        transfer_to_guest(&t, true).unwrap();
        transfer_to_guest(&format!("{ds}/new"), false).unwrap();
        assert_eq!(
            transfer_to_guest(&format!("{ds}/no/new"), false)
                .unwrap_err()
                .code,
            err::FILE_NAME_INVALID
        );
    }
}
