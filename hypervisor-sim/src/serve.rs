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
use crate::{budget, control, socket};

/// Where things are, after the config and the flags are combined.
#[derive(Debug)]
pub struct Server {
    /// The VMs by name.
    pub vms: control::Inventory,
    /// The control socket.
    pub control_socket: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
    /// The WBEM service (CIM-XML and WS-Management listeners).
    pub wbem: Arc<crate::wbem::Wbem>,
    /// The Redfish service (and its NBD server), when started.
    pub redfish: Option<crate::redfish::RedfishServer>,
    /// The vSphere API, when started.
    pub vsphere: Option<crate::vsphere::VsphereServer>,
    _lock: DirLock,
    sockets: Vec<PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        // The vsock endpoints made on demand (crate::exec).
        if let Ok(d) = std::fs::read_dir(self.state_dir.join("vsock")) {
            for e in d.flatten() {
                if e.file_type().is_ok_and(|t| t.is_socket()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

/// Unix socket paths are limited to 107 bytes on Linux.
const SUN_PATH_MAX: usize = 107;

/// Bind a unix socket at `path` (`what` names it in errors), replacing a
/// socket a dead server left.
pub(crate) fn bind(path: &Path, what: &str) -> Result<UnixListener> {
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
    // The descriptor budget (crate::budget): raise the soft limit, then
    // check that the VMs fit before binding anything.
    let nofile = budget::raise_nofile().context("cannot read or raise the open-file limit")?;
    if nofile.soft > nofile.was {
        log::info!(
            "open-file limit raised from {} to {} (the hard limit)",
            nofile.was,
            nofile.soft
        );
    }
    let limit = usize::try_from(nofile.soft).unwrap_or(usize::MAX);
    budget::global().set_limit(limit);
    let explicit_bmcs = cfg
        .vm
        .iter()
        .filter(|v| v.ipmi.as_ref().is_some_and(|i| i.listen.is_some()))
        .count();
    let listeners = [
        cfg.cim.enabled != Some(false),
        cfg.cim.enabled != Some(false),
        cfg.redfish.enabled != Some(false),
        cfg.redfish.enabled != Some(false),
        cfg.wsman.enabled != Some(false) && cfg.wsman.listen.as_deref() != Some(""),
        cfg.vsphere.listen.as_deref() != Some(""),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    let check = budget::check_start(
        nofile,
        budget::open_fds(),
        cfg.vm.len(),
        explicit_bmcs,
        cfg.vm.len() - explicit_bmcs,
        listeners,
    )?;
    if !check.default_bmcs {
        log::warn!(
            "the open-file limit ({}) leaves no room for a default BMC per VM: only VMs with ipmi.listen get one (raise LimitNOFILE, see docs/hvsim-limits.md)",
            nofile.soft
        );
    }
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
    exec.set_vsock_dir(state_dir.join("vsock"));
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
            hw_version: vc.hw_version.unwrap_or(crate::vmhost::DEFAULT_HW_VERSION),
        };
        let mut settings = crate::vmhost::HostSettings::defaults(vm.info.memory_mb);
        settings.hw_version = facts.hw_version;
        settings.disk_shrink = vc.disk_shrink;
        settings.device_connectable = vc.device_connectable;
        settings.resources =
            crate::vmhost::Resources::from_config(&vc.resources, vm.info.memory_mb);
        settings.host_mhz = mhz;
        settings.namespaces = vc.namespaces.clone();
        vm.configure_host(
            settings,
            crate::vmhost::devices(vc.devices.as_deref(), &uuid),
            &vc.options,
        )?;
        exec.add(vm.clone(), facts);
        listeners.push((
            vm.clone(),
            facts,
            bind(&backdoor_socket, "backdoor socket")?,
        ));
        sockets.push(backdoor_socket);
        vms.insert(vc.name.clone(), vm);
    }
    let inv: control::Inventory = Arc::new(vms);
    for (vm, _, _) in &listeners {
        log::info!(
            "{}: backdoor socket {}",
            vm.info.name,
            vm.info.backdoor_socket.display()
        );
    }
    socket::spawn_all(listeners)?;
    let users = Arc::new(crate::users::UserStore::load(&cfg.user, store.clone())?);
    let wbem = crate::wbem::Wbem::start(cfg, inv.clone(), &state_dir, users.clone())?;
    crate::ipmi::start(cfg, &inv, store.clone(), users.clone(), check.default_bmcs)?;
    let vsphere = crate::vsphere::start(cfg, inv.clone(), users.clone(), &state_dir)?;
    let redfish = crate::redfish::start(cfg, inv.clone(), users, &state_dir, crate::webui::front)?;
    // The control socket comes last: clients (and tests) take it as the
    // sign that every listener of the host is bound.
    let control_listener = bind(&control_socket, "control socket")?;
    sockets.push(control_socket.clone());
    let plan = budget::plan(
        limit,
        budget::open_fds(),
        budget::global().network_reserve(),
        inv.len(),
    );
    budget::global().set_plan(plan);
    log::info!(
        "descriptor budget: limit {}, {} open, {} kept for control, {} for network clients, {} for the rest; guests: {} ({} per VM guaranteed, at most {} per VM)",
        plan.limit,
        plan.fixed,
        plan.control,
        plan.network,
        plan.misc,
        plan.guests,
        plan.guaranteed,
        plan.per_vm_cap
    );
    control::spawn(
        inv.clone(),
        control_listener,
        Arc::new(exec),
        Some(wbem.clone()),
    )?;
    log::info!("control socket {}", control_socket.display());
    Ok(Server {
        vms: inv,
        control_socket,
        state_dir,
        wbem,
        redfish,
        vsphere,
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
