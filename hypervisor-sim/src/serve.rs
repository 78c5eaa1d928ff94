//! `hvsim serve`: build the inventory from the config and start every endpoint.

use std::collections::BTreeMap;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use protocol::host::HostLimits;

use crate::config::{self, Config};
use crate::device::DeviceFacts;
use crate::store::{DirLock, Store};
use crate::vm::{Vm, VmInfo, VmLimits};
use crate::{control, socket};

/// Where things are, after the config and the flags are combined.
#[derive(Debug)]
pub struct Server {
    /// The VMs by name.
    pub vms: control::Inventory,
    /// The control socket.
    pub control_socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The CIM-XML listeners, when started.
    pub cim: Option<crate::cim::CimServer>,
    /// The Redfish service (and its NBD server), when started.
    pub redfish: Option<crate::redfish::RedfishServer>,
    _lock: DirLock,
    sockets: Vec<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
    }
}

/// Unix socket paths are limited to 107 bytes on Linux.
const SUN_PATH_MAX: usize = 107;

fn bind(path: &Path, what: &str) -> Result<UnixListener> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        bail!(
            "{what} path {} is {} bytes; unix sockets allow {SUN_PATH_MAX}: choose a shorter --state-dir or socket path",
            path.display(),
            path.as_os_str().len()
        );
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} for the {what}", dir.display()))?;
    }
    // A socket left by a server that died; the state-dir lock says none runs.
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if md.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        } else {
            bail!("{what} path {} exists and is not a socket", path.display());
        }
    }
    UnixListener::bind(path).with_context(|| format!("cannot listen on {what} {}", path.display()))
}

/// Start VM `vm`'s internal vsock endpoints in `STATE/vsock` (a directory
/// only serve's user may enter): TCLO ([`crate::vsock`], `NAME.sock`) and
/// RPCI ([`crate::rpci_vsock`], `NAME.rpci.sock`). Programs under
/// `hvsim exec` reach them through their emulated vsock; one that cannot
/// start is left out (programs fall back to the backdoor), and serve runs
/// on. Returns the vsock port and path of each one started.
fn vsock_endpoints(
    state_dir: &Path,
    vm: &Arc<Vm>,
    sockets: &mut Vec<PathBuf>,
) -> Vec<(u32, PathBuf)> {
    use protocol::datamap::{RPCI_VSOCK_PORT, TCLO_VSOCK_PORT};
    use std::os::unix::fs::PermissionsExt;
    type Spawn = fn(Arc<Vm>, UnixListener) -> std::io::Result<()>;
    let dir = state_dir.join("vsock");
    let kinds: [(u32, &str, &str, Spawn); 2] = [
        (TCLO_VSOCK_PORT, "sock", "TCLO", crate::vsock::spawn),
        (
            RPCI_VSOCK_PORT,
            "rpci.sock",
            "RPCI",
            crate::rpci_vsock::spawn,
        ),
    ];
    let mut started = Vec::new();
    for (port, ext, what, spawn) in kinds {
        let path = dir.join(format!("{}.{ext}", vm.info.name));
        let r = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(anyhow::Error::from)
            .and_then(|()| bind(&path, &format!("{what} vsock endpoint")))
            .and_then(|l| Ok(spawn(vm.clone(), l)?));
        match r {
            Ok(()) => {
                sockets.push(path.clone());
                started.push((port, path));
            }
            Err(e) => log::warn!(
                "{}: no {what} over vsock for programs under hvsim exec (they use the backdoor): {e:#}",
                vm.info.name
            ),
        }
    }
    started
}

/// Processor speed from /proc/cpuinfo, for GETMHZ.
fn host_mhz() -> u32 {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map_or(2000, |m| m.round() as u32)
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 ^ (std::process::id() as u64) << 32;
    }
    u64::from_le_bytes(b)
}

/// Start every endpoint of `cfg`; they run on their own threads until the
/// process exits (dropping the server removes the sockets).
pub fn start(cfg: &Config, state_dir_flag: Option<&Path>) -> Result<Server> {
    let state_dir = state_dir_flag
        .map(Path::to_path_buf)
        .or_else(|| cfg.state_dir.as_ref().map(|p| cfg.resolve(p)))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_STATE_DIR));
    std::fs::create_dir_all(&state_dir).with_context(|| {
        format!(
            "cannot create state dir {} (use --state-dir DIR)",
            state_dir.display()
        )
    })?;
    let state_dir = std::fs::canonicalize(&state_dir)?;
    let lock = DirLock::acquire(&state_dir).map_err(anyhow::Error::msg)?;
    let store = Arc::new(Store::open(&state_dir)?);

    let control_socket = cfg
        .control_socket
        .as_ref()
        .map(|p| cfg.resolve(p))
        .or_else(|| {
            std::env::var_os("HVSIM_CONTROL")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_CONTROL_SOCKET));

    let limits = VmLimits {
        channels: HostLimits {
            max_channels: cfg.backdoor.max_channels,
            max_in_size: cfg.backdoor.max_message,
            high_bandwidth: cfg.backdoor.high_bandwidth,
        },
        max_guest_vars: cfg.backdoor.max_guest_vars,
    };
    let mhz = host_mhz();
    let mut vms = BTreeMap::new();
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    let mut exec = crate::exec::Service::new();
    for vc in &cfg.vm {
        let uuid = match &vc.uuid {
            Some(u) => config::parse_uuid(u).context("uuid was validated")?,
            None => config::uuid_from_name(&vc.name),
        };
        let backdoor_socket = vc
            .backdoor_socket
            .as_ref()
            .map(|p| cfg.resolve(p))
            .unwrap_or_else(|| state_dir.join("vms").join(&vc.name).join("backdoor.sock"));
        let info = VmInfo {
            name: vc.name.clone(),
            uuid,
            memory_mb: vc.memory_mb.unwrap_or(2048),
            backdoor_socket: backdoor_socket.clone(),
            clipboard: vc.clipboard,
            model: vc
                .model
                .clone()
                .unwrap_or_else(|| crate::exec::dmi::DEFAULT_MODEL.to_string()),
        };
        let vm = Arc::new(Vm::new(info, limits, store.clone(), seed())?);
        let log_path = state_dir.join("vms").join(&vc.name).join("vmware.log");
        vm.vmware_log
            .open(
                &log_path,
                &format!(
                    "Log for VMware ESX pid={} version={} build=build-{BUILD_NUMBER} option=Release (hvsim)",
                    std::process::id(),
                    env!("CARGO_PKG_VERSION")
                ),
            )
            .with_context(|| format!("vm {}: cannot open {}", vc.name, log_path.display()))?;
        if let Some(ovf) = &vc.ovf_env {
            let path = cfg.resolve(ovf);
            let text = std::fs::read(&path).with_context(|| {
                format!(
                    "vm {}: cannot read ovf_env file {}",
                    vc.name,
                    path.display()
                )
            })?;
            if vm.get_var("guestinfo.ovfEnv").as_deref() != Some(&text[..]) {
                vm.set_var("guestinfo.ovfEnv", &text)
                    .map_err(anyhow::Error::msg)?;
            }
        }
        for (k, v) in &vc.guestinfo {
            if vm.get_var(k).is_none() {
                vm.set_var(k, v.as_bytes()).map_err(anyhow::Error::msg)?;
            }
        }
        let facts = DeviceFacts {
            uuid,
            memory_mb: vm.info.memory_mb,
            mhz,
            tsc_hz: mhz as u64 * 1_000_000,
            build: BUILD_NUMBER,
            clock_offset_secs: vc.clock_offset_secs,
        };
        exec.add(vm.clone(), facts);
        for (port, path) in vsock_endpoints(&state_dir, &vm, &mut sockets) {
            exec.set_vsock_endpoint(&vm.info.name, port, path);
        }
        listeners.push((
            vm.clone(),
            facts,
            bind(&backdoor_socket, "backdoor socket")?,
        ));
        sockets.push(backdoor_socket);
        vms.insert(vc.name.clone(), vm);
    }
    let inv: control::Inventory = Arc::new(vms);
    for (vm, facts, l) in listeners {
        log::info!(
            "{}: backdoor socket {}",
            vm.info.name,
            vm.info.backdoor_socket.display()
        );
        socket::spawn(vm, facts, l)?;
    }
    let users = Arc::new(crate::users::UserStore::load(&cfg.user, store.clone())?);
    let cim = crate::cim::start(cfg, inv.clone(), &state_dir, users.clone())?;
    crate::ipmi::start(cfg, &inv, store.clone(), users.clone())?;
    let redfish = crate::redfish::start(cfg, inv.clone(), users, &state_dir)?;
    // The control socket comes last: clients (and tests) take it as the
    // sign that every listener of the host is bound.
    let control_listener = bind(&control_socket, "control socket")?;
    sockets.push(control_socket.clone());
    control::spawn(inv.clone(), control_listener, Arc::new(exec))?;
    log::info!("control socket {}", control_socket.display());
    Ok(Server {
        vms: inv,
        control_socket,
        state_dir,
        cim,
        redfish,
        _lock: lock,
        sockets,
    })
}

/// Host build number reported by GETBUILDNUM (an ESXi 8.0 U3 build).
pub const BUILD_NUMBER: u32 = 24_022_510;

/// Block until SIGINT, SIGTERM or SIGHUP; returns the signal.
///
/// Call [`block_signals`] first, before any thread starts, so that every
/// thread inherits the mask and the signal waits here.
pub fn wait_for_signal() -> i32 {
    let set = signal_set();
    let mut sig = 0;
    // SAFETY: `set` is an initialised sigset_t and `sig` a valid out pointer.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Block the shutdown signals in this thread (and the threads it starts).
pub fn block_signals() {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Unblock them again (in a child before exec).
pub fn unblock_signals() {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut()) };
}
