//! The socket frontend: guest programs send register frames (protocol::frame)
//! to a VM's backdoor socket, one connection per guest process.
//!
//! Threat table (the guest is untrusted):
//!
//! | guest sends                        | bound                                              |
//! |------------------------------------|----------------------------------------------------|
//! | garbage or unknown header          | refused with a reason, connection closed           |
//! | HB out longer than a message       | refused before reading the bytes (64 KiB default)  |
//! | HB in longer than the pending reply| status 0, nothing sent                             |
//! | many connections                   | the VM's cap in the descriptor budget ([`crate::budget`]), extra ones refused with the reason |
//! | many channels                      | the VM's channel limit (128 like real hosts)       |
//! | vanishes mid-message               | its channels close; other guests never notice      |
//! | malformed frames, over and over    | each closes its connection; warnings rate-limited per VM |
//!
//! The VM lock is never held while writing to a guest, so a guest that stops
//! reading stalls only itself.

use std::io::{self, IoSlice, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use protocol::frame::{Op, Reply, Request, HEADER_LEN};
use protocol::Regs;

use crate::device::{self, Clock, DeviceFacts, SystemClock};
use crate::vm::Vm;

/// Concurrent guest connections per VM, at most (the descriptor budget,
/// [`crate::budget`], sets the cap in force, usually lower).
pub const MAX_CONNECTIONS_PER_VM: usize = crate::budget::MAX_PER_VM;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A fresh owner token for channels opened by one guest connection or process.
pub fn new_owner() -> u64 {
    NEXT_OWNER.fetch_add(1, Ordering::Relaxed)
}

/// Serve `listener` for `vm` until the process ends.
pub fn spawn(vm: Arc<Vm>, facts: DeviceFacts, listener: UnixListener) -> io::Result<()> {
    spawn_all(vec![(vm, facts, listener)])
}

/// Serve the backdoor sockets of many VMs until the process ends: one
/// thread waits on all of them (epoll) and accepts, each connection gets a
/// thread of its own. A VM costs its listening socket, no thread.
pub fn spawn_all(vms: Vec<(Arc<Vm>, DeviceFacts, UnixListener)>) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: epoll_create1 returns a new descriptor we own (or -1).
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh descriptor nothing else owns.
    let ep = unsafe { OwnedFd::from_raw_fd(ep) };
    for (i, (_, _, l)) in vms.iter().enumerate() {
        l.set_nonblocking(true)?;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: both descriptors are open; `ev` lives across the call.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, l.as_raw_fd(), &mut ev) }
            != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("backdoor-accept".into())
        .spawn(move || {
            let mut backoff = crate::budget::AcceptBackoff::new("backdoor sockets");
            let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 64];
            loop {
                // SAFETY: `events` has room for its length of entries.
                let n = unsafe {
                    libc::epoll_wait(ep.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, -1)
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        backoff.failed(&e);
                    }
                    continue;
                }
                for ev in &events[..n as usize] {
                    let Some((vm, facts, listener)) = vms.get(ev.u64 as usize) else {
                        continue;
                    };
                    // Take what is queued; a pause on EMFILE/ENFILE (the
                    // listener stays ready, so epoll comes back to it).
                    loop {
                        match listener.accept() {
                            Ok((conn, _)) => {
                                backoff.accepted();
                                admit(vm, *facts, conn);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                backoff.failed(&e);
                                break;
                            }
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// Serve a connection to `vm`'s backdoor socket if the VM's budget allows,
/// else tell the guest why not and close it.
fn admit(vm: &Arc<Vm>, facts: DeviceFacts, conn: UnixStream) {
    let permit = match crate::budget::global().acquire(&vm.gate, 1, &vm.info.name, "backdoor") {
        Ok(p) => p,
        Err(why) => {
            let mut c = conn;
            // Never stall the accept thread on a guest that does not read.
            let _ = c.set_nonblocking(true);
            let _ = refuse(&mut c, &format!("connection refused: {why}"));
            return;
        }
    };
    let vm2 = vm.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("bd-{}-conn", vm.info.name))
        .stack_size(256 * 1024)
        .spawn(move || {
            let vm = vm2;
            let _permit = permit;
            let owner = new_owner();
            if let Err(e) = serve_conn(&vm, &facts, &SystemClock, conn, owner) {
                log::debug!("{}: guest connection ended: {e}", vm.info.name);
            }
            let n = vm.with_channels(|t, sink| t.close_owned_by(owner, sink));
            if n > 0 {
                log::debug!(
                    "{}: closed {n} channel(s) of a departed guest",
                    vm.info.name
                );
            }
        });
    if let Err(e) = spawned {
        vm.guest_warn(
            log::Level::Error,
            format_args!("cannot start a guest connection thread: {e}"),
        );
    }
}

fn refuse(conn: &mut UnixStream, why: &str) -> io::Result<()> {
    let h = Reply {
        ok: false,
        regs: Regs::default(),
        len: why.len() as u32,
    }
    .encode();
    write_all_vectored(conn, &mut [IoSlice::new(&h), IoSlice::new(why.as_bytes())])
}

/// Write every byte of `bufs` (std's `write_all_vectored` is unstable).
pub fn write_all_vectored(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serve one guest connection until it closes or misbehaves.
fn serve_conn(
    vm: &Vm,
    facts: &DeviceFacts,
    clock: &dyn Clock,
    mut conn: UnixStream,
    owner: u64,
) -> io::Result<()> {
    let max_in = vm.limits.channels.max_in_size as u32;
    let mut header = [0u8; HEADER_LEN];
    let mut payload: Vec<u8> = Vec::new();
    loop {
        match conn.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let req = match Request::decode(&header, u32::MAX) {
            Ok(r) if r.op == Op::HbOut && r.len > max_in => {
                let why = format!(
                    "HB out of {} bytes exceeds the {max_in}-byte message limit",
                    r.len
                );
                vm.guest_warn(
                    log::Level::Warn,
                    format_args!("guest frame refused: {why}; closing its connection"),
                );
                return refuse(&mut conn, &why);
            }
            Ok(r) => r,
            Err(e) => {
                vm.guest_warn(
                    log::Level::Warn,
                    format_args!("malformed guest frame: {e}; closing its connection"),
                );
                return refuse(&mut conn, &e.to_string());
            }
        };
        match req.op {
            Op::In => {
                let out = vm.lb_call(facts, clock, owner, req.regs);
                let h = Reply {
                    ok: true,
                    regs: out,
                    len: 0,
                }
                .encode();
                conn.write_all(&h)?;
            }
            Op::HbOut => {
                vm.count_call();
                payload.resize(req.len as usize, 0);
                conn.read_exact(&mut payload)?;
                let out = vm.with_channels(|t, sink| device::hb_out(t, sink, req.regs, &payload));
                let h = Reply {
                    ok: true,
                    regs: out,
                    len: 0,
                }
                .encode();
                conn.write_all(&h)?;
            }
            Op::HbIn => {
                vm.count_call();
                let (out, data) =
                    vm.with_channels(|t, _| device::hb_in(t, req.regs, req.len as usize));
                match data {
                    Some(d) => {
                        let (a, b) = d.slices();
                        let h = Reply {
                            ok: true,
                            regs: out,
                            len: d.len() as u32,
                        }
                        .encode();
                        write_all_vectored(
                            &mut conn,
                            &mut [IoSlice::new(&h), IoSlice::new(a), IoSlice::new(b)],
                        )?;
                    }
                    None => {
                        let h = Reply {
                            ok: true,
                            regs: out,
                            len: 0,
                        }
                        .encode();
                        conn.write_all(&h)?;
                    }
                }
            }
        }
    }
}
