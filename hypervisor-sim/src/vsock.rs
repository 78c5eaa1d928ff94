//! TCLO over vsock, the host side: the push channel a VMware host offers a
//! guest on vsock CID 0, port 975 ([`protocol::datamap::TCLO_VSOCK_PORT`]).
//!
//! Each VM has an internal unix socket for it (`STATE/vsock/NAME.sock`, in
//! a directory only serve's user may enter), made when the first program
//! under `hvsim exec` attaches to the VM (VMs that never run one hold no
//! descriptor for it); programs reach it when they connect a vsock stream
//! to the hypervisor (see [`crate::exec::vsock`]). Each connection takes
//! two descriptors from the VM's share of the budget ([`crate::budget`]). A connection is a new TCLO
//! channel of the VM: it gets `reset` and `Capabilities_Register` first,
//! then every queued command, each pushed as a DATA packet the moment it is
//! queued (the writer sleeps on the VM's TCLO condition variable: no
//! polling). The guest answers each command with a DATA packet and, after
//! its first answer, sends a PING every second; the VM counts tools running
//! while these arrive. One command is in flight per connection.
//!
//! A malformed or oversized packet closes that connection (logged); serve
//! keeps serving, and queued commands wait for the next TCLO channel.

use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use protocol::datamap::{read_packet, Packet, PacketKind};

use crate::vm::Vm;

/// Most TCLO-over-vsock connections one VM may hold at once (each is two
/// threads); a guest that opens more gets them closed at once.
pub const MAX_CONNECTIONS: usize = 8;

/// A guest that does not take a pushed command within this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept TCLO-over-vsock connections for `vm` on `listener` from a new
/// thread, for as long as serve runs.
pub fn spawn(vm: Arc<Vm>, listener: UnixListener) -> io::Result<()> {
    // Two descriptors a connection: the reader's and the writer's clone.
    spawn_endpoint(
        vm,
        listener,
        "TCLO",
        "vsock",
        MAX_CONNECTIONS,
        2,
        serve_conn,
    )
}

/// The accept loop of a per-VM vsock endpoint (TCLO here, RPCI in
/// [`crate::rpci_vsock`]): a thread named `{thread}-VM` accepts, each
/// connection gets a thread running `serve`, at most `max` at once (more are
/// closed at once, logged as `what`). Each connection takes `fds`
/// descriptors from the VM's share of the budget ([`crate::budget`]).
pub(crate) fn spawn_endpoint(
    vm: Arc<Vm>,
    listener: UnixListener,
    what: &'static str,
    thread: &'static str,
    max: usize,
    fds: usize,
    serve: fn(&Arc<Vm>, UnixStream),
) -> io::Result<()> {
    let live = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name(format!("{thread}-{}", vm.info.name))
        .spawn(move || {
            let mut backoff = crate::budget::AcceptBackoff::new(&format!(
                "{}: {what} vsock endpoint",
                vm.info.name
            ));
            loop {
                let conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(e) => {
                        backoff.failed(&e);
                        continue;
                    }
                };
                backoff.accepted();
                if live.fetch_add(1, Ordering::AcqRel) >= max {
                    live.fetch_sub(1, Ordering::AcqRel);
                    vm.guest_warn(
                        log::Level::Warn,
                        format_args!(
                            "more than {max} {what} vsock connections; closing the new one"
                        ),
                    );
                    continue;
                }
                let permit =
                    match crate::budget::global().acquire(&vm.gate, fds, &vm.info.name, what) {
                        Ok(p) => p,
                        Err(_) => {
                            live.fetch_sub(1, Ordering::AcqRel);
                            continue;
                        }
                    };
                let vm2 = vm.clone();
                let live2 = live.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("{thread}-{}-c", vm.info.name))
                    .spawn(move || {
                        let _permit = permit;
                        serve(&vm2, conn);
                        live2.fetch_sub(1, Ordering::AcqRel);
                    });
                if let Err(e) = spawned {
                    live.fetch_sub(1, Ordering::AcqRel);
                    vm.guest_warn(
                        log::Level::Error,
                        format_args!("{what} vsock: cannot start a connection thread: {e}"),
                    );
                }
            }
        })?;
    Ok(())
}

/// One connection: this thread reads the guest's packets, a second one
/// pushes commands.
fn serve_conn(vm: &Arc<Vm>, conn: UnixStream) {
    let name = &vm.info.name;
    let writer = match conn.try_clone() {
        Ok(w) => w,
        Err(e) => {
            log::warn!("{name}: TCLO vsock connection: {e}");
            return;
        }
    };
    let _ = writer.set_write_timeout(Some(WRITE_TIMEOUT));
    let Some(id) = vm.vsock_tclo_open() else {
        vm.guest_warn(
            log::Level::Info,
            format_args!("TCLO vsock connection refused: the VM is off"),
        );
        return;
    };
    vm.guest_warn(
        log::Level::Info,
        format_args!("guest connected TCLO over vsock (connection {id})"),
    );
    let vm2 = vm.clone();
    let pusher = std::thread::Builder::new()
        .name(format!("vsock-{name}-w"))
        .spawn(move || push(&vm2, id, writer));
    if let Err(e) = pusher {
        log::error!("{name}: TCLO vsock: cannot start the writer thread: {e}");
        vm.vsock_tclo_close(id);
        return;
    }
    let mut r = io::BufReader::new(&conn);
    loop {
        match read_packet(&mut r) {
            Ok(Some(Packet {
                kind: PacketKind::Data,
                payload,
            })) => vm.vsock_tclo_reply(id, payload.as_deref().unwrap_or_default()),
            Ok(Some(Packet {
                kind: PacketKind::Ping,
                ..
            })) => vm.vsock_tclo_ping(id),
            Ok(None) => {
                vm.guest_warn(
                    log::Level::Info,
                    format_args!("guest closed its TCLO vsock connection {id}"),
                );
                break;
            }
            Err(e) => {
                vm.guest_warn(
                    log::Level::Warn,
                    format_args!("TCLO vsock connection {id}: {e}; closing it"),
                );
                break;
            }
        }
    }
    // Wakes the writer (its connection is gone from the VM) and ends it.
    vm.vsock_tclo_close(id);
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// Push each command for connection `id` as it comes.
fn push(vm: &Vm, id: u64, mut w: UnixStream) {
    while let Some(cmd) = vm.vsock_tclo_next(id) {
        // At most the start: an HGFS upload's commands are 62 KiB of file
        // data each, and formatting them whole slowed uploads 60-fold.
        log::debug!(
            "{}: TCLO over vsock ({} bytes): {:?}",
            vm.info.name,
            cmd.len(),
            String::from_utf8_lossy(&cmd[..cmd.len().min(120)])
        );
        if let Err(e) = w.write_all(&Packet::data(&cmd).encode()) {
            log::info!(
                "{}: TCLO vsock connection {id}: cannot push a command: {e}",
                vm.info.name
            );
            break;
        }
    }
    // Closed by the host (power off, reset) or broken: the reader sees
    // the end of the stream and closes the connection in the VM.
    let _ = w.shutdown(std::net::Shutdown::Both);
}
