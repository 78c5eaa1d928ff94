//! Test doubles: a fake backdoor socket endpoint on a thread, speaking the
//! frame format, either scripted by the test or backed by the real host-side
//! channel state machine of `protocol::host`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::thread::JoinHandle;

use protocol::frame::{Op, Reply, Request, HEADER_LEN};
use protocol::host::{ChannelRef, ChannelTable, HostLimits, HostMessage, MessageSink};
use protocol::regs::lo;
use protocol::{cmd, Regs, BDOOR_MAGIC, BDOOR_UNKNOWN, BDOOR_VERSION};

/// A listening socket in a private directory and the thread serving it.
pub(crate) struct Server {
    _dir: tempfile::TempDir,
    pub(crate) path: PathBuf,
    handle: JoinHandle<()>,
}

impl Server {
    /// Wait for the server thread; its assertion failures fail the test.
    pub(crate) fn join(self) {
        if let Err(panic) = self.handle.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Listen on a fresh socket; `serve` gets the first connection.
pub(crate) fn spawn(serve: impl FnOnce(UnixStream) + Send + 'static) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backdoor.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        serve(stream);
    });
    Server {
        _dir: dir,
        path,
        handle,
    }
}

/// The next request and its HB out bytes; `None` when the guest hung up.
pub(crate) fn read_request(s: &mut UnixStream) -> Option<(Request, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    if s.read_exact(&mut h).is_err() {
        return None;
    }
    let req = Request::decode(&h, u32::MAX).unwrap();
    let mut data = Vec::new();
    if req.op == Op::HbOut {
        data.resize(req.len as usize, 0);
        s.read_exact(&mut data).unwrap();
    }
    Some((req, data))
}

/// Send a reply header and its bytes.
pub(crate) fn write_reply(s: &mut UnixStream, ok: bool, regs: Regs, data: &[u8]) {
    let reply = Reply {
        ok,
        regs,
        len: data.len() as u32,
    };
    s.write_all(&reply.encode()).unwrap();
    s.write_all(data).unwrap();
}

struct FnSink<F>(F);

impl<F: FnMut(&[u8]) -> Vec<u8>> MessageSink for FnSink<F> {
    fn message(&mut self, _chan: ChannelRef, msg: &[u8]) -> HostMessage {
        HostMessage::from((self.0)(msg))
    }
}

/// Serve a host whose RPCI answers come from `answer`, until the guest hangs up.
pub(crate) fn serve_host(
    mut s: UnixStream,
    limits: HostLimits,
    answer: impl FnMut(&[u8]) -> Vec<u8>,
) {
    let mut table = ChannelTable::new(limits, 7);
    let mut sink = FnSink(answer);
    while let Some((req, data)) = read_request(&mut s) {
        match req.op {
            Op::In => {
                let regs = req.regs;
                let out = match lo(regs.ecx) {
                    cmd::MESSAGE => table.message(regs, 1, &mut sink),
                    cmd::GETVERSION => Regs {
                        eax: BDOOR_VERSION,
                        ebx: BDOOR_MAGIC,
                        ..regs
                    },
                    _ => Regs {
                        eax: BDOOR_UNKNOWN,
                        ..regs
                    },
                };
                write_reply(&mut s, true, out, &[]);
            }
            Op::HbOut => {
                let out = table.hb_out(req.regs, &data, &mut sink);
                write_reply(&mut s, true, out, &[]);
            }
            Op::HbIn => {
                let (out, bytes) = table.hb_in(req.regs, req.len as usize);
                let bytes = bytes.map(|b| {
                    let (a, b) = b.slices();
                    [a, b].concat()
                });
                write_reply(&mut s, true, out, bytes.as_deref().unwrap_or(&[]));
            }
        }
    }
}
