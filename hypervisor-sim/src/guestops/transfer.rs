//! File data through the guest's HGFS server, one packet per VIX opcode 84:
//! a V4 session, open (V3), reads or writes (V3) of [`CHUNK`] bytes, close,
//! attributes (V2) for the mode, end of session. Memory stays at one chunk
//! whatever the file size.

use std::io::{self, Read, Write};

use protocol::hgfs::{self, op, status};
use protocol::vix::{self, FileInfo};

use super::{Guest, GuestOpsError, TcloChannel};

/// Bytes per READ_V3/WRITE_V3: HGFS's legacy large I/O size, which keeps
/// each request and reply under the 64 KiB message limit.
pub const CHUNK: usize = hgfs::LARGE_IO_MAX;

/// How an upload treats the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Replace an existing file.
    pub overwrite: bool,
    /// Unix mode to give the file (`None`: the guest's default).
    pub mode: Option<u32>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            overwrite: true,
            mode: None,
        }
    }
}

/// How HGFS packets reach the guest's server.
#[derive(Clone, Copy)]
enum Via<'g, 'a> {
    /// VIX opcode 84, as the user the [`Guest`] logs in as.
    Vix(&'g Guest<'a>),
    /// TCLO `f PACKET` (HGFS_SYNC_REQREP_CMD), the host's own channel
    /// deployPkg copies its package with; the guest runs it as root.
    Tclo(&'g dyn TcloChannel, std::time::Duration),
}

/// One HGFS session over opcode 84 or TCLO `f`.
struct Session<'g, 'a> {
    via: Via<'g, 'a>,
    id: u64,
    next_request: u32,
    what: String,
}

impl<'g, 'a> Session<'g, 'a> {
    fn open(via: Via<'g, 'a>, what: String) -> Result<Self, GuestOpsError> {
        let mut s = Session {
            via,
            id: 0,
            next_request: 1,
            what,
        };
        let req = hgfs::CreateSessionRequest {
            max_packet_size: hgfs::LARGE_PACKET_MAX as u32,
            flags: hgfs::SESSION_MAXPACKETSIZE_VALID,
            capabilities: Vec::new(),
        };
        let reply = s.packet(op::CREATE_SESSION_V4, &req.encode())?;
        let r = hgfs::CreateSessionReply::decode(&reply).map_err(|e| s.bad(e))?;
        s.id = r.session_id;
        Ok(s)
    }

    fn bad(&self, e: impl std::fmt::Display) -> GuestOpsError {
        GuestOpsError::BadReply {
            what: self.what.clone(),
            detail: format!("HGFS: {e}"),
        }
    }

    /// Send one HGFS request; the reply payload of a successful reply.
    fn packet(&mut self, opcode: i32, payload: &[u8]) -> Result<Vec<u8>, GuestOpsError> {
        let id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1);
        let pkt = hgfs::build_request(opcode, id, self.id, payload).map_err(|e| {
            GuestOpsError::Request {
                what: self.what.clone(),
                detail: e.to_string(),
            }
        })?;
        let reply = match self.via {
            Via::Vix(guest) => {
                let body = vix::HgfsPacket {
                    timeout: 0,
                    packet: &pkt,
                }
                .encode();
                let what = self.what.clone();
                guest.call(vix::op::HGFS_SEND_PACKET, &body, true, &|| what.clone())?
            }
            Via::Tclo(chan, timeout) => {
                let mut cmd = b"f ".to_vec();
                cmd.extend_from_slice(&pkt);
                let r = chan
                    .send(&cmd, timeout)
                    .map_err(|e| GuestOpsError::Request {
                        what: self.what.clone(),
                        detail: e,
                    })?;
                match r.strip_prefix(b"OK ") {
                    Some(p) => p.to_vec(),
                    None => {
                        return Err(self.bad(format!(
                            "TCLO f answered {:?}",
                            String::from_utf8_lossy(&r[..r.len().min(64)])
                        )))
                    }
                }
            }
        };
        let p = hgfs::Packet::parse(&reply).map_err(|e| self.bad(e))?;
        if p.header.request_id != id {
            return Err(self.bad(format!(
                "reply to request {} while waiting for {id}",
                p.header.request_id
            )));
        }
        if p.header.status != status::SUCCESS {
            return Err(GuestOpsError::Hgfs {
                what: self.what.clone(),
                status: p.header.status,
            });
        }
        Ok(p.payload.to_vec())
    }

    /// V1/V2 replies repeat the status in their old header.
    fn check_old(&self, payload: &[u8]) -> Result<(), GuestOpsError> {
        let (_, st) = hgfs::decode_old_reply(payload).map_err(|e| self.bad(e))?;
        if st != status::SUCCESS {
            return Err(GuestOpsError::Hgfs {
                what: self.what.clone(),
                status: st,
            });
        }
        Ok(())
    }

    fn open_file(&mut self, name: &[u8], write: bool, mode: u32) -> Result<u32, GuestOpsError> {
        let req = hgfs::OpenV3Request {
            mask: hgfs::open_valid::MODE
                | hgfs::open_valid::FLAGS
                | hgfs::open_valid::FILE_NAME
                | if write {
                    hgfs::open_valid::OWNER_PERMS
                        | hgfs::open_valid::GROUP_PERMS
                        | hgfs::open_valid::OTHER_PERMS
                } else {
                    0
                },
            mode: if write {
                hgfs::open_mode::WRITE_ONLY
            } else {
                hgfs::open_mode::READ_ONLY
            },
            flags: if write {
                hgfs::open_flags::CREATE_EMPTY
            } else {
                hgfs::open_flags::OPEN
            },
            owner_perms: ((mode >> 6) & 7) as u8,
            group_perms: ((mode >> 3) & 7) as u8,
            other_perms: (mode & 7) as u8,
            name: name.to_vec(),
            ..Default::default()
        };
        let reply = self.packet(op::OPEN_V3, &req.encode())?;
        let r = hgfs::OpenV3Reply::decode(&reply).map_err(|e| self.bad(e))?;
        Ok(r.handle)
    }

    fn close_file(&mut self, handle: u32) -> Result<(), GuestOpsError> {
        let id = self.next_request;
        let reply = self.packet(op::CLOSE, &hgfs::CloseRequest { id, handle }.encode())?;
        self.check_old(&reply)
    }

    fn set_mode(&mut self, name: &[u8], mode: u32) -> Result<(), GuestOpsError> {
        let mut attr = hgfs::AttrV2::default();
        attr.set_mode(mode);
        let req = hgfs::SetattrV2Request {
            id: self.next_request,
            hints: 0,
            attr,
            handle: 0,
            name: name.to_vec(),
        };
        let reply = self.packet(op::SETATTR_V2, &req.encode())?;
        self.check_old(&reply)
    }

    fn close(mut self) -> Result<(), GuestOpsError> {
        self.packet(op::DESTROY_SESSION_V4, &hgfs::destroy_session_payload())
            .map(|_| ())
    }
}

fn io_err(what: &str, source: io::Error) -> GuestOpsError {
    GuestOpsError::Io {
        what: what.to_string(),
        source,
    }
}

fn name_of(what: &str, path: &str) -> Result<Vec<u8>, GuestOpsError> {
    hgfs::cp_name(path).map_err(|e| GuestOpsError::Request {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// Read until `buf` is full or the end.
fn fill(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(super) fn upload(
    guest: &Guest<'_>,
    src: &mut dyn Read,
    guest_path: &str,
    opts: &UploadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, GuestOpsError> {
    let what = format!("upload {guest_path}");
    let name = name_of(&what, guest_path)?;
    guest.prepare_upload(guest_path, opts.overwrite)?;
    let s = Session::open(Via::Vix(guest), what.clone())?;
    write_file(s, &what, &name, src, opts, progress)
}

/// Write `src` to the guest file `guest_path` through TCLO `f` packets (no
/// VIX, no login: the host's own channel, as deployPkg's copy).
pub(crate) fn upload_direct(
    chan: &dyn TcloChannel,
    timeout: std::time::Duration,
    src: &mut dyn Read,
    guest_path: &str,
    opts: &UploadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, GuestOpsError> {
    let what = format!("upload {guest_path}");
    let name = name_of(&what, guest_path)?;
    let s = Session::open(Via::Tclo(chan, timeout), what.clone())?;
    write_file(s, &what, &name, src, opts, progress)
}

/// Create (or truncate) `name` and write `src` into it in one session,
/// then end the session.
fn write_file(
    mut s: Session<'_, '_>,
    what: &str,
    name: &[u8],
    src: &mut dyn Read,
    opts: &UploadOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, GuestOpsError> {
    let result = (|| {
        let handle = s.open_file(name, true, opts.mode.unwrap_or(0o644))?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        let copied = (|| loop {
            let n = fill(src, &mut buf).map_err(|e| io_err(what, e))?;
            if n == 0 {
                return Ok(offset);
            }
            let mut done = 0;
            while done < n {
                let req = hgfs::WriteV3Request {
                    handle,
                    flags: 0,
                    offset: offset + done as u64,
                    data: &buf[done..n],
                };
                let reply = s.packet(op::WRITE_V3, &req.encode())?;
                let w = hgfs::decode_write_v3_reply(&reply).map_err(|e| s.bad(e))? as usize;
                if w == 0 || w > n - done {
                    return Err(s.bad(format!("wrote {w} of {} bytes", n - done)));
                }
                done += w;
            }
            offset += n as u64;
            progress(offset);
        })();
        let closed = s.close_file(handle);
        let size = copied?;
        closed?;
        if let Some(mode) = opts.mode {
            s.set_mode(name, mode & 0o7777)?;
        }
        Ok(size)
    })();
    let ended = s.close();
    let size = result?;
    ended?;
    Ok(size)
}

pub(super) fn download(
    guest: &Guest<'_>,
    guest_path: &str,
    dst: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> Result<(u64, FileInfo), GuestOpsError> {
    let what = format!("download {guest_path}");
    let name = name_of(&what, guest_path)?;
    let info = guest.stat_for_download(guest_path)?;
    let mut s = Session::open(Via::Vix(guest), what.clone())?;
    let result = (|| {
        let handle = s.open_file(&name, false, 0)?;
        let mut offset = 0u64;
        let copied = (|| loop {
            let req = hgfs::ReadV3Request {
                handle,
                offset,
                required_size: CHUNK as u32,
            };
            let reply = s.packet(op::READ_V3, &req.encode())?;
            let data = hgfs::decode_read_v3_reply(&reply).map_err(|e| s.bad(e))?;
            if data.len() > CHUNK {
                return Err(s.bad(format!("{} bytes for a {CHUNK}-byte read", data.len())));
            }
            if data.is_empty() {
                return Ok(offset);
            }
            dst.write_all(data).map_err(|e| io_err(&what, e))?;
            offset += data.len() as u64;
            progress(offset);
        })();
        let closed = s.close_file(handle);
        let size = copied?;
        closed?;
        dst.flush().map_err(|e| io_err(&what, e))?;
        Ok(size)
    })();
    let ended = s.close();
    let size = result?;
    ended?;
    Ok((size, info))
}
