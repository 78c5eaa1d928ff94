//! The HGFS server behind file transfers (VIX opcode 84 and TCLO `f`).
//!
//! It serves the ops a transfer uses: sessions (V4), open (V1, V3), close
//! (V1, V3), getattr/setattr (V2), read/write (V3), on the guest's whole
//! file system as the share `root`. It holds no privileges of its own: the
//! caller impersonates the user around [`HgfsServer::dispatch`], so every
//! open, stat and chmod is checked by the kernel against the user; open
//! files stay usable as they were opened. A session belongs to the user
//! who created it (another user gets "stale session").
//!
//! Bounds (the host is trusted more than a guest user, but a buggy host
//! must not exhaust the agent): [`MAX_SESSIONS`] sessions, [`MAX_HANDLES`]
//! open files per session, one packet at most `HGFS_LARGE_PACKET_MAX`, and
//! sessions idle for [`SESSION_IDLE`] are closed with their files.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::time::{Duration, Instant};

use protocol::hgfs::{
    self, attr_valid, build_reply, cp_name_to_path, file_type, op, open_flags, open_mode,
    open_valid, status, AttrV2, Capability, CloseRequest, CloseV3Request, CreateSessionReply,
    GetattrV2Reply, GetattrV2Request, Header, OpenReply, OpenRequest, OpenV3Reply, OpenV3Request,
    Packet, ReadV3Request, SetattrV2Request, WriteV3Request, ATTR_HINT_SET_ACCESS_TIME,
    ATTR_HINT_SET_WRITE_TIME, ATTR_HINT_USE_FILE_DESC, HEADER_LEN, LARGE_IO_MAX, LARGE_PACKET_MAX,
};

/// Most sessions at once (govmomi's toolbox allows 24).
pub const MAX_SESSIONS: usize = 24;
/// Most open files per session.
pub const MAX_HANDLES: usize = 64;
/// A session unused this long is closed (vmtoolsd invalidates inactive
/// HGFS sessions on a timer too).
pub const SESSION_IDLE: Duration = Duration::from_secs(5 * 60);

/// The ops this server answers, announced in CREATE_SESSION_V4.
const OPS: [i32; 10] = [
    op::OPEN,
    op::CLOSE,
    op::GETATTR_V2,
    op::SETATTR_V2,
    op::OPEN_V3,
    op::READ_V3,
    op::WRITE_V3,
    op::CLOSE_V3,
    op::CREATE_SESSION_V4,
    op::DESTROY_SESSION_V4,
];

#[derive(Debug)]
struct Session {
    id: u64,
    owner: u32,
    handles: Vec<(u32, File)>,
    used: Instant,
}

/// The server state: sessions and their open files.
#[derive(Debug)]
pub struct HgfsServer {
    sessions: Vec<Session>,
    next_handle: u32,
    /// Where the share `root` starts: `/` in the agent, a scratch
    /// directory in tests and the fuzz target.
    root: std::path::PathBuf,
}

impl Default for HgfsServer {
    fn default() -> Self {
        HgfsServer::new()
    }
}

/// errno → HGFS status, as the HGFS server's `HgfsPlatformConvertFromNameStatus`.
fn status_of(e: &io::Error) -> u32 {
    match e.raw_os_error() {
        Some(libc::ENOENT) => status::NO_SUCH_FILE_OR_DIR,
        Some(libc::EBADF) => status::INVALID_HANDLE,
        Some(libc::EPERM) => status::OPERATION_NOT_PERMITTED,
        Some(libc::EEXIST) => status::FILE_EXISTS,
        Some(libc::ENOTDIR) => status::NOT_DIRECTORY,
        Some(libc::ENOTEMPTY) => status::DIR_NOT_EMPTY,
        Some(libc::EACCES) => status::ACCESS_DENIED,
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => status::NO_SPACE,
        Some(libc::ENAMETOOLONG) => status::NAME_TOO_LONG,
        Some(libc::EINVAL) => status::INVALID_PARAMETER,
        Some(libc::EXDEV) => status::NOT_SAME_DEVICE,
        Some(libc::EOPNOTSUPP) => status::OPERATION_NOT_SUPPORTED,
        Some(libc::EISDIR) => status::ACCESS_DENIED,
        _ => status::GENERIC_ERROR,
    }
}

/// What an op answers: a status and the payload to send with it.
type OpResult = Result<Vec<u8>, u32>;

fn io_status(e: io::Error) -> u32 {
    status_of(&e)
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom into an 8-byte buffer.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 8 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos());
        return h.finish();
    }
    u64::from_le_bytes(b)
}

fn access(path: &std::ffi::CStr, mode: i32) -> bool {
    // SAFETY: a valid C path; AT_EACCESS checks the effective ids.
    unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// `HgfsAttrV2` of a file's metadata (`link` its lstat, for the type).
fn attr_of(meta: &std::fs::Metadata, symlink: bool, effective: u32) -> AttrV2 {
    let mut a = AttrV2 {
        mask: attr_valid::TYPE
            | attr_valid::SIZE
            | attr_valid::ACCESS_TIME
            | attr_valid::WRITE_TIME
            | attr_valid::CHANGE_TIME
            | attr_valid::CREATE_TIME
            | attr_valid::USERID
            | attr_valid::GROUPID
            | attr_valid::FILEID
            | attr_valid::VOLID
            | attr_valid::ALLOCATION_SIZE
            | attr_valid::EFFECTIVE_PERMS,
        file_type: if symlink {
            file_type::SYMLINK
        } else if meta.is_dir() {
            file_type::DIRECTORY
        } else {
            file_type::REGULAR
        },
        size: meta.size(),
        creation_time: hgfs::unix_to_hgfs_time(meta.mtime(), meta.mtime_nsec() as u32),
        access_time: hgfs::unix_to_hgfs_time(meta.atime(), meta.atime_nsec() as u32),
        write_time: hgfs::unix_to_hgfs_time(meta.mtime(), meta.mtime_nsec() as u32),
        attr_change_time: hgfs::unix_to_hgfs_time(meta.ctime(), meta.ctime_nsec() as u32),
        allocation_size: meta.blocks() * 512,
        user_id: meta.uid(),
        group_id: meta.gid(),
        host_file_id: meta.ino(),
        volume_id: meta.dev() as u32,
        effective_perms: effective,
        ..AttrV2::default()
    };
    a.set_mode(meta.mode() & 0o7777);
    a
}

impl HgfsServer {
    /// A server without sessions, serving the whole file system.
    pub fn new() -> HgfsServer {
        HgfsServer::with_root("/".into())
    }

    /// A server whose share `root` is the directory `root`.
    pub fn with_root(root: std::path::PathBuf) -> HgfsServer {
        HgfsServer {
            sessions: Vec::new(),
            next_handle: 0,
            root,
        }
    }

    /// The local path of a cross-platform name (`..` and other shares are
    /// refused by [`cp_name_to_path`]).
    fn path_of(&self, name: &[u8]) -> Result<String, u32> {
        let p = cp_name_to_path(name).ok_or(status::INVALID_NAME)?;
        if self.root == std::path::Path::new("/") {
            return Ok(p);
        }
        Ok(self
            .root
            .join(p.trim_start_matches('/'))
            .to_string_lossy()
            .into_owned())
    }

    /// Whether any session is open (the plugin then keeps a deadline).
    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    /// When the first idle session expires.
    pub fn deadline(&self) -> Option<Instant> {
        self.sessions.iter().map(|s| s.used + SESSION_IDLE).min()
    }

    /// Close sessions idle since before `now - SESSION_IDLE`.
    pub fn expire(&mut self, now: Instant) {
        self.sessions.retain(|s| {
            let keep = now.saturating_duration_since(s.used) < SESSION_IDLE;
            if !keep {
                log::info!(
                    "guestops: HGFS session {:x} idle, closed with {} open file(s)",
                    s.id,
                    s.handles.len()
                );
            }
            keep
        });
    }

    /// Close everything (config reload, host reset).
    pub fn clear(&mut self) {
        self.sessions.clear();
    }

    /// Answer one request packet for user `owner` (the caller impersonates
    /// that user). An unparseable packet gets an empty reply, as
    /// vmtoolsd's server gives when it cannot even read the header.
    pub fn dispatch(&mut self, packet: &[u8], owner: u32, now: Instant) -> Vec<u8> {
        if packet.len() > LARGE_PACKET_MAX {
            return Vec::new();
        }
        let Ok(p) = Packet::parse(packet) else {
            return Vec::new();
        };
        let h = p.header;
        let result = match h.op {
            op::CREATE_SESSION_V4 => return self.create_session(&h, owner, now),
            op::DESTROY_SESSION_V4 => self.destroy_session(&h, owner),
            op::GETATTR_V2 => self.getattr(&h, p.payload, owner, now),
            op::SETATTR_V2 => self.setattr(&h, p.payload, owner, now),
            op::OPEN => self.open_v1(&h, p.payload, owner, now),
            op::OPEN_V3 => self.open_v3(&h, p.payload, owner, now),
            op::CLOSE => self.close_v1(&h, p.payload, owner, now),
            op::CLOSE_V3 => self.close_v3(&h, p.payload, owner, now),
            op::READ_V3 => self.read(&h, p.payload, owner, now),
            op::WRITE_V3 => self.write(&h, p.payload, owner, now),
            _ => Err(status::OPERATION_NOT_SUPPORTED),
        };
        let (st, payload) = match result {
            Ok(payload) => (status::SUCCESS, payload),
            Err(st) => (st, Vec::new()),
        };
        build_reply(&h, st, &payload).unwrap_or_default()
    }

    fn session(&mut self, h: &Header, owner: u32, now: Instant) -> Result<&mut Session, u32> {
        let s = self
            .sessions
            .iter_mut()
            .find(|s| s.id == h.session_id && s.owner == owner)
            .ok_or(status::STALE_SESSION)?;
        s.used = now;
        Ok(s)
    }

    fn file(&mut self, h: &Header, handle: u32, owner: u32, now: Instant) -> Result<&File, u32> {
        let s = self.session(h, owner, now)?;
        s.handles
            .iter()
            .find(|(id, _)| *id == handle)
            .map(|(_, f)| f)
            .ok_or(status::INVALID_HANDLE)
    }

    fn create_session(&mut self, h: &Header, owner: u32, now: Instant) -> Vec<u8> {
        self.expire(now);
        if self.sessions.len() >= MAX_SESSIONS {
            return build_reply(h, status::TOO_MANY_SESSIONS, &[]).unwrap_or_default();
        }
        let mut id = random_u64();
        while id == 0 || self.sessions.iter().any(|s| s.id == id) {
            id = random_u64();
        }
        self.sessions.push(Session {
            id,
            owner,
            handles: Vec::new(),
            used: now,
        });
        let mut caps: Vec<Capability> = OPS.iter().map(|&op| Capability { op, flags: 1 }).collect();
        caps.sort_by_key(|c| c.op);
        let reply = CreateSessionReply {
            session_id: id,
            max_packet_size: LARGE_PACKET_MAX as u32,
            identity_offset: 0,
            flags: hgfs::SESSION_MAXPACKETSIZE_VALID,
            capabilities: caps,
        };
        // The reply's header carries the new session.
        let header = Header {
            session_id: id,
            ..*h
        };
        build_reply(&header, status::SUCCESS, &reply.encode()).unwrap_or_default()
    }

    fn destroy_session(&mut self, h: &Header, owner: u32) -> OpResult {
        let before = self.sessions.len();
        self.sessions
            .retain(|s| !(s.id == h.session_id && s.owner == owner));
        if self.sessions.len() == before {
            return Err(status::STALE_SESSION);
        }
        Ok(hgfs::destroy_session_payload())
    }

    fn getattr(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = GetattrV2Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        if req.hints & ATTR_HINT_USE_FILE_DESC != 0 {
            let f = self.file(h, req.handle, owner, now)?;
            let meta = f.metadata().map_err(io_status)?;
            let reply = GetattrV2Reply {
                id: req.id,
                status: 0,
                attr: attr_of(&meta, false, 0),
                symlink_target: Vec::new(),
            };
            return Ok(reply.encode());
        }
        let path = self.path_of(&req.name)?;
        let lmeta = std::fs::symlink_metadata(&path).map_err(io_status)?;
        let symlink = lmeta.file_type().is_symlink();
        let c = std::ffi::CString::new(path.as_bytes()).map_err(|_| status::INVALID_NAME)?;
        let effective = u32::from(access(&c, libc::R_OK)) * u32::from(hgfs::perm::READ)
            + u32::from(access(&c, libc::W_OK)) * u32::from(hgfs::perm::WRITE)
            + u32::from(access(&c, libc::X_OK)) * u32::from(hgfs::perm::EXEC);
        let target = if symlink {
            std::fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned().into_bytes())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let reply = GetattrV2Reply {
            id: req.id,
            status: 0,
            attr: attr_of(&lmeta, symlink, effective),
            symlink_target: target,
        };
        Ok(reply.encode())
    }

    fn setattr(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = SetattrV2Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        let a = req.attr;
        let by_handle = req.hints & ATTR_HINT_USE_FILE_DESC != 0;
        // Resolve the target: an open file or a path.
        let opened;
        let file: &File = if by_handle {
            self.file(h, req.handle, owner, now)?
        } else {
            let path = self.path_of(&req.name)?;
            opened = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_status)?;
            &opened
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(file);
        let proc_path = format!("/proc/self/fd/{fd}");
        if a.mask & attr_valid::SIZE != 0 {
            if by_handle {
                file.set_len(a.size).map_err(io_status)?;
            } else {
                OpenOptions::new()
                    .write(true)
                    .open(&proc_path)
                    .and_then(|f| f.set_len(a.size))
                    .map_err(io_status)?;
            }
        }
        if a.mask & (attr_valid::USERID | attr_valid::GROUPID) != 0 {
            let uid = if a.mask & attr_valid::USERID != 0 {
                a.user_id
            } else {
                u32::MAX
            };
            let gid = if a.mask & attr_valid::GROUPID != 0 {
                a.group_id
            } else {
                u32::MAX
            };
            // SAFETY: fchownat on our descriptor with AT_EMPTY_PATH.
            let r = unsafe { libc::fchownat(fd, c"".as_ptr(), uid, gid, libc::AT_EMPTY_PATH) };
            if r != 0 {
                return Err(status_of(&io::Error::last_os_error()));
            }
        }
        let perm_bits = attr_valid::SPECIAL_PERMS
            | attr_valid::OWNER_PERMS
            | attr_valid::GROUP_PERMS
            | attr_valid::OTHER_PERMS;
        if a.mask & perm_bits != 0 {
            let cur = file.metadata().map_err(io_status)?.mode();
            let mut mode = cur & 0o7777;
            let mut set = |valid: u64, shift: u32, v: u8| {
                if a.mask & valid != 0 {
                    mode = (mode & !(7 << shift)) | (u32::from(v & 7) << shift);
                }
            };
            set(attr_valid::SPECIAL_PERMS, 9, a.special_perms);
            set(attr_valid::OWNER_PERMS, 6, a.owner_perms);
            set(attr_valid::GROUP_PERMS, 3, a.group_perms);
            set(attr_valid::OTHER_PERMS, 0, a.other_perms);
            // chmod through /proc: O_PATH descriptors cannot fchmod.
            std::fs::set_permissions(&proc_path, std::fs::Permissions::from_mode(mode))
                .map_err(io_status)?;
        }
        let set_atime =
            a.mask & attr_valid::ACCESS_TIME != 0 || req.hints & ATTR_HINT_SET_ACCESS_TIME != 0;
        let set_mtime =
            a.mask & attr_valid::WRITE_TIME != 0 || req.hints & ATTR_HINT_SET_WRITE_TIME != 0;
        if set_atime || set_mtime {
            let ts = |set: bool, t: u64| {
                let (s, n) = hgfs::hgfs_time_to_unix(t);
                libc::timespec {
                    tv_sec: if set { s } else { 0 },
                    tv_nsec: if set { n as i64 } else { libc::UTIME_OMIT },
                }
            };
            let times = [ts(set_atime, a.access_time), ts(set_mtime, a.write_time)];
            let c =
                std::ffi::CString::new(proc_path.as_bytes()).map_err(|_| status::INVALID_NAME)?;
            // SAFETY: a valid C path and two timespecs.
            if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } != 0 {
                return Err(status_of(&io::Error::last_os_error()));
            }
        }
        Ok(hgfs::old_reply_payload(req.id, status::SUCCESS))
    }

    /// Open `path` and register the handle in the request's session.
    #[allow(clippy::too_many_arguments)]
    fn open_path(
        &mut self,
        h: &Header,
        owner: u32,
        now: Instant,
        path: &str,
        mode: u32,
        flags: u32,
        perms: u32,
    ) -> Result<u32, u32> {
        if self.session(h, owner, now)?.handles.len() >= MAX_HANDLES {
            return Err(status::TOO_MANY_SESSIONS);
        }
        let mut o = OpenOptions::new();
        match mode {
            open_mode::READ_ONLY => o.read(true),
            open_mode::WRITE_ONLY => o.write(true),
            open_mode::READ_WRITE => o.read(true).write(true),
            _ => return Err(status::INVALID_PARAMETER),
        };
        let writable = mode != open_mode::READ_ONLY;
        match flags {
            open_flags::OPEN => {}
            open_flags::OPEN_EMPTY if writable => {
                o.truncate(true);
            }
            open_flags::CREATE if writable => {
                o.create(true);
            }
            open_flags::CREATE_SAFE if writable => {
                o.create_new(true);
            }
            open_flags::CREATE_EMPTY if writable => {
                o.create(true).truncate(true);
            }
            _ => return Err(status::INVALID_PARAMETER),
        }
        o.mode(perms).custom_flags(libc::O_CLOEXEC);
        let f = o.open(path).map_err(io_status)?;
        if f.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(status::ACCESS_DENIED);
        }
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        let handle = self.next_handle;
        self.session(h, owner, now)?.handles.push((handle, f));
        Ok(handle)
    }

    fn open_v1(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = OpenRequest::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        let path = self.path_of(&req.name)?;
        let owner_perms = u32::from(req.permissions & 7);
        let perms = (owner_perms << 6) | (owner_perms << 3) | owner_perms;
        let handle = self.open_path(h, owner, now, &path, req.mode, req.flags, perms)?;
        Ok(OpenReply {
            id: req.id,
            status: 0,
            handle,
        }
        .encode())
    }

    fn open_v3(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = OpenV3Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        let path = self.path_of(&req.name)?;
        let mode = if req.mask & open_valid::MODE != 0 {
            req.mode
        } else {
            open_mode::READ_ONLY
        };
        let flags = if req.mask & open_valid::FLAGS != 0 {
            req.flags
        } else {
            open_flags::OPEN
        };
        // Missing permission classes default to the owner's (rw-).
        let ownerp = if req.mask & open_valid::OWNER_PERMS != 0 {
            u32::from(req.owner_perms & 7)
        } else {
            6
        };
        let pick = |valid: u64, v: u8| {
            if req.mask & valid != 0 {
                u32::from(v & 7)
            } else {
                ownerp
            }
        };
        let special = if req.mask & open_valid::SPECIAL_PERMS != 0 {
            u32::from(req.special_perms & 7)
        } else {
            0
        };
        let perms = (special << 9)
            | (ownerp << 6)
            | (pick(open_valid::GROUP_PERMS, req.group_perms) << 3)
            | pick(open_valid::OTHER_PERMS, req.other_perms);
        let handle = self.open_path(h, owner, now, &path, mode, flags, perms)?;
        Ok(OpenV3Reply {
            handle,
            acquired_lock: 0,
            flags: 0,
        }
        .encode())
    }

    fn close_handle(
        &mut self,
        h: &Header,
        handle: u32,
        owner: u32,
        now: Instant,
    ) -> Result<(), u32> {
        let s = self.session(h, owner, now)?;
        let i = s
            .handles
            .iter()
            .position(|(id, _)| *id == handle)
            .ok_or(status::INVALID_HANDLE)?;
        s.handles.swap_remove(i);
        Ok(())
    }

    fn close_v1(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = CloseRequest::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        self.close_handle(h, req.handle, owner, now)?;
        Ok(hgfs::old_reply_payload(req.id, status::SUCCESS))
    }

    fn close_v3(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = CloseV3Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        self.close_handle(h, req.handle, owner, now)?;
        Ok(vec![0; 8])
    }

    fn read(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = ReadV3Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        // What fits: the packet limit less the header and the reply's 12 bytes.
        let room = (LARGE_PACKET_MAX - HEADER_LEN - 12).min(LARGE_IO_MAX);
        let want = (req.required_size as usize).min(room);
        let f = self.file(h, req.handle, owner, now)?;
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match f.read_at(&mut buf[got..], req.offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(status_of(&e)),
            }
        }
        buf.truncate(got);
        Ok(hgfs::encode_read_v3_reply(&buf))
    }

    fn write(&mut self, h: &Header, payload: &[u8], owner: u32, now: Instant) -> OpResult {
        let req = WriteV3Request::decode(payload).map_err(|_| status::PROTOCOL_ERROR)?;
        let f = self.file(h, req.handle, owner, now)?;
        let offset = if req.flags & 1 != 0 {
            f.metadata().map_err(io_status)?.len()
        } else {
            req.offset
        };
        f.write_all_at(req.data, offset).map_err(io_status)?;
        Ok(hgfs::encode_write_v3_reply(req.data.len() as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::hgfs::{build_request, cp_name, CreateSessionRequest, OpenV3Request};

    struct Client<'a> {
        server: &'a mut HgfsServer,
        session: u64,
        id: u32,
    }

    impl Client<'_> {
        fn call(&mut self, op: i32, payload: &[u8]) -> (u32, Vec<u8>) {
            self.id += 1;
            let req = build_request(op, self.id, self.session, payload).unwrap();
            let reply = self.server.dispatch(&req, 0, Instant::now());
            let p = Packet::parse(&reply).unwrap();
            assert_eq!(p.header.request_id, self.id);
            (p.header.status, p.payload.to_vec())
        }

        fn open(&mut self, path: &str, mode: u32, flags: u32) -> Result<u32, u32> {
            let req = OpenV3Request {
                mask: open_valid::MODE | open_valid::FLAGS | open_valid::FILE_NAME,
                mode,
                flags,
                name: cp_name(path).unwrap(),
                ..OpenV3Request::default()
            };
            match self.call(op::OPEN_V3, &req.encode()) {
                (0, p) => Ok(OpenV3Reply::decode(&p).unwrap().handle),
                (st, _) => Err(st),
            }
        }
    }

    fn session(server: &mut HgfsServer) -> Client<'_> {
        let mut c = Client {
            server,
            session: 0,
            id: 0,
        };
        let req = CreateSessionRequest {
            max_packet_size: LARGE_PACKET_MAX as u32,
            ..CreateSessionRequest::default()
        };
        let (st, p) = c.call(op::CREATE_SESSION_V4, &req.encode());
        assert_eq!(st, 0);
        let r = CreateSessionReply::decode(&p).unwrap();
        assert_eq!(r.max_packet_size, LARGE_PACKET_MAX as u32);
        c.session = r.session_id;
        c
    }

    #[test]
    fn upload_then_download_byte_exact() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("f.bin");
        let ps = path.to_str().unwrap();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut server = HgfsServer::new();
        let mut c = session(&mut server);
        let h = c
            .open(ps, open_mode::WRITE_ONLY, open_flags::CREATE_EMPTY)
            .unwrap();
        for (i, chunk) in data.chunks(LARGE_IO_MAX).enumerate() {
            let w = WriteV3Request {
                handle: h,
                flags: 0,
                offset: (i * LARGE_IO_MAX) as u64,
                data: chunk,
            };
            let (st, p) = c.call(op::WRITE_V3, &w.encode());
            assert_eq!(st, 0);
            assert_eq!(
                hgfs::decode_write_v3_reply(&p).unwrap() as usize,
                chunk.len()
            );
        }
        let (st, _) = c.call(op::CLOSE_V3, &CloseV3Request { handle: h }.encode());
        assert_eq!(st, 0);
        // Attributes: size and mode 0644 minus umask at most.
        let mut attr = AttrV2::default();
        attr.set_mode(0o640);
        let set = SetattrV2Request {
            id: 1,
            hints: 0,
            attr,
            handle: 0,
            name: cp_name(ps).unwrap(),
        };
        assert_eq!(c.call(op::SETATTR_V2, &set.encode()).0, 0);
        let get = GetattrV2Request {
            id: 2,
            hints: 0,
            handle: 0,
            name: cp_name(ps).unwrap(),
        };
        let (st, p) = c.call(op::GETATTR_V2, &get.encode());
        assert_eq!(st, 0);
        let r = GetattrV2Reply::decode(&p).unwrap();
        assert_eq!(r.attr.size, data.len() as u64);
        assert_eq!(r.attr.mode(), 0o640);
        assert_eq!(r.attr.file_type, file_type::REGULAR);
        // Read it back.
        let h = c.open(ps, open_mode::READ_ONLY, open_flags::OPEN).unwrap();
        let mut back = Vec::new();
        loop {
            let r = ReadV3Request {
                handle: h,
                offset: back.len() as u64,
                required_size: LARGE_IO_MAX as u32,
            };
            let (st, p) = c.call(op::READ_V3, &r.encode());
            assert_eq!(st, 0);
            let chunk = hgfs::decode_read_v3_reply(&p).unwrap();
            if chunk.is_empty() {
                break;
            }
            back.extend_from_slice(chunk);
        }
        assert_eq!(back, data);
        let (st, _) = c.call(op::CLOSE_V3, &CloseV3Request { handle: h }.encode());
        assert_eq!(st, 0);
        let (st, _) = c.call(op::CLOSE_V3, &CloseV3Request { handle: h }.encode());
        assert_eq!(st, status::INVALID_HANDLE);
        assert_eq!(c.call(op::DESTROY_SESSION_V4, &[0; 8]).0, 0);
        assert_eq!(
            c.call(op::DESTROY_SESSION_V4, &[0; 8]).0,
            status::STALE_SESSION
        );
        assert!(!server.has_sessions());
    }

    #[test]
    fn errors_and_bounds() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        let mut server = HgfsServer::new();
        let mut c = session(&mut server);
        assert_eq!(
            c.open(
                missing.to_str().unwrap(),
                open_mode::READ_ONLY,
                open_flags::OPEN
            ),
            Err(status::NO_SUCH_FILE_OR_DIR)
        );
        let f = d.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        assert_eq!(
            c.open(
                f.to_str().unwrap(),
                open_mode::WRITE_ONLY,
                open_flags::CREATE_SAFE
            ),
            Err(status::FILE_EXISTS)
        );
        // A name outside the root share, or with "..", is refused.
        let bad = OpenV3Request {
            mask: open_valid::MODE | open_valid::FLAGS,
            name: b"root\0tmp\0..\0etc".to_vec(),
            ..OpenV3Request::default()
        };
        assert_eq!(c.call(op::OPEN_V3, &bad.encode()).0, status::INVALID_NAME);
        // Garbage payloads are protocol errors; unknown ops unsupported.
        assert_eq!(c.call(op::READ_V3, &[1, 2]).0, status::PROTOCOL_ERROR);
        assert_eq!(c.call(99, &[]).0, status::OPERATION_NOT_SUPPORTED);
        // Handles are bounded per session.
        for _ in 0..MAX_HANDLES {
            c.open(f.to_str().unwrap(), open_mode::READ_ONLY, open_flags::OPEN)
                .unwrap();
        }
        assert!(c
            .open(f.to_str().unwrap(), open_mode::READ_ONLY, open_flags::OPEN)
            .is_err());
        // Another user cannot use this session.
        let req = build_request(op::DESTROY_SESSION_V4, 1, c.session, &[0; 8]).unwrap();
        let reply = server.dispatch(&req, 1000, Instant::now());
        assert_eq!(
            Packet::parse(&reply).unwrap().header.status,
            status::STALE_SESSION
        );
        // Sessions are bounded and expire.
        for _ in 1..MAX_SESSIONS {
            session(&mut server);
        }
        let req = build_request(op::CREATE_SESSION_V4, 1, 0, &[0; 16]).unwrap();
        let reply = server.dispatch(&req, 0, Instant::now());
        assert_eq!(
            Packet::parse(&reply).unwrap().header.status,
            status::TOO_MANY_SESSIONS
        );
        server.expire(Instant::now() + SESSION_IDLE);
        assert!(!server.has_sessions());
        assert!(server.dispatch(b"short", 0, Instant::now()).is_empty());
    }
}
