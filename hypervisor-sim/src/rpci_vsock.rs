//! RPCI over vsock, the host side: the request channel a VMware host offers
//! a guest on vsock CID 0, port 976 ([`protocol::datamap::RPCI_VSOCK_PORT`]).
//!
//! Each VM has an internal unix socket for it (`STATE/vsock/NAME.rpci.sock`,
//! beside the TCLO one, in a directory only serve's user may enter, made
//! with it when the first program attaches);
//! programs under `hvsim exec` reach it when they connect a vsock stream to
//! the hypervisor's port 976 (see [`crate::exec::vsock`]). open-vm-tools
//! tries this before the backdoor for every RPCI channel it opens.
//!
//! On a connection the guest sends one DATA packet per request (payload:
//! the RPCI message, e.g. `info-set guestinfo.x 1`; an int64
//! [`FIELD_FAST_CLOSE`] field asks the host to close after answering) and
//! reads one DATA packet back: `1 ` or `0 ` followed by the body, exactly
//! what the backdoor RPCI channel answers ([`crate::vm::Vm::vsock_rpci`]:
//! the same handler, the same side effects). Many requests per connection,
//! at most [`MAX_CONNECTIONS`] connections per VM (one thread each). A
//! malformed packet, a request over the VM's message limit, or a VM that is
//! off closes that connection (logged); serve keeps serving.

use std::io::{self, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::Duration;

use protocol::datamap::{read_map, Packet, PacketKind, FIELD_FAST_CLOSE};

use crate::vm::Vm;

/// Most RPCI-over-vsock connections one VM may hold at once (vmtoolsd
/// keeps one per service; each `vmware-rpctool` opens its own); a guest
/// that opens more gets the new ones closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// A guest that does not take its reply within this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept RPCI-over-vsock connections for `vm` on `listener` from a new
/// thread, for as long as serve runs.
pub fn spawn(vm: Arc<Vm>, listener: UnixListener) -> io::Result<()> {
    crate::vsock::spawn_endpoint(
        vm,
        listener,
        "RPCI",
        "rpcivs",
        MAX_CONNECTIONS,
        1,
        |vm, c| serve_conn(vm, c, false),
    )
}

/// [`spawn`] for the connections from a privileged source port (below
/// 1024, root in the guest): their requests may use privileged commands.
pub fn spawn_privileged(vm: Arc<Vm>, listener: UnixListener) -> io::Result<()> {
    crate::vsock::spawn_endpoint(
        vm,
        listener,
        "RPCI",
        "rpcivs",
        MAX_CONNECTIONS,
        1,
        |vm, c| serve_conn(vm, c, true),
    )
}

/// One connection: answer its requests in order until it closes.
fn serve_conn(vm: &Vm, conn: UnixStream, privileged: bool) {
    let name = &vm.info.name;
    let _ = conn.set_write_timeout(Some(WRITE_TIMEOUT));
    log::debug!("{name}: guest connected RPCI over vsock");
    let mut r = io::BufReader::new(&conn);
    let mut w = &conn;
    loop {
        let map = match read_map(&mut r) {
            Ok(Some(m)) => m,
            Ok(None) => {
                log::debug!("{name}: guest closed an RPCI vsock connection");
                break;
            }
            Err(e) => {
                vm.guest_warn(
                    log::Level::Warn,
                    format_args!("RPCI vsock connection: {e}; closing it"),
                );
                break;
            }
        };
        let msg = match Packet::from_map(&map) {
            Ok(Packet {
                kind: PacketKind::Data,
                payload,
            }) => payload.unwrap_or_default(),
            Ok(Packet {
                kind: PacketKind::Ping,
                ..
            }) => continue,
            Err(e) => {
                vm.guest_warn(
                    log::Level::Warn,
                    format_args!("RPCI vsock connection: {e}; closing it"),
                );
                break;
            }
        };
        let limit = vm.limits.channels.max_in_size;
        if msg.len() > limit {
            vm.guest_warn(
                log::Level::Warn,
                format_args!(
                    "RPCI vsock request of {} bytes is over the {limit}-byte message limit; closing the connection",
                    msg.len()
                ),
            );
            break;
        }
        let Some(reply) = vm.vsock_rpci_as(&msg, privileged) else {
            vm.guest_warn(
                log::Level::Info,
                format_args!("RPCI vsock request while the VM is off; closing the connection"),
            );
            break;
        };
        if let Err(e) = w.write_all(&Packet::data(&reply).encode()) {
            log::info!("{name}: RPCI vsock connection: cannot send a reply: {e}");
            break;
        }
        if map.int64(FIELD_FAST_CLOSE).is_some_and(|v| v != 0) {
            break;
        }
    }
    let _ = conn.shutdown(std::net::Shutdown::Both);
}
