//! `hvsim exec`: the trap frontend. Runs an unmodified guest program under
//! ptrace against a VM of a running `hvsim serve`.
//!
//! The tracer runs inside `hvsim serve`: `hvsim exec` asks it over the
//! control socket (`{"op":"exec-attach","vm":..,"pid":..}`) to seize the
//! `hvsim exec` process itself, waits for the answer, installs a seccomp
//! filter and execs the program ([`launch`]). So the program is the caller's
//! own child (exit status, signals and terminal need no forwarding), and an
//! emulated instruction is one ptrace round trip plus a function call into
//! the VM's device ([`vmdev`]), not a second round trip to a socket.
//!
//! The program's `in`/`out`/`rep insb`/`rep outsb` on the backdoor ports
//! fault in user space (no I/O privilege); the tracer emulates them against
//! the device, writes the registers and memory back and steps past the
//! instruction. CPUID says "VMwareVMware": each CPUID in the program's
//! executable code is rewritten to UD2 and answered by the tracer. See
//! [`tracer`] for the ptrace side.
//!
//! * [`emulate`]: decoding and emulating the I/O instructions (pure).
//! * [`cpuid`]: the CPUID answers (pure).
//! * [`patch`]: finding CPUID instructions by disassembly (pure).
//! * [`elf`]: executable sections of a program file (pure).
//! * [`cache`]: CPUID sites per file, shared by all sessions of one serve.
//! * [`dmi`]: VMware's DMI files (`/sys/class/dmi/id`) for the program, in
//!   a private mount namespace `hvsim exec` enters before the exec.
//! * [`vmdev`]: the VM's device as the emulator calls it.
//! * [`launch`]: the `hvsim exec` side: attach, seccomp, exec.
//! * [`tracer`]: the ptrace loop, one thread per session in serve.
//! * [`vsock`]: vsock emulation (seccomp user notification), so programs
//!   reach the VM's TCLO- and RPCI-over-vsock endpoints ([`crate::vsock`],
//!   [`crate::rpci_vsock`]).
//!
//! Lifetimes: the tracer thread lives until the program's whole tree has
//! exited. If `hvsim serve` stops or dies, every program under `hvsim exec`
//! is killed (`PTRACE_O_EXITKILL`): its CPUIDs are UD2 now, so it could not
//! run on untraced anyway.
//!
//! Threat table: the traced program is the guest and untrusted, but it runs
//! with the user's own privileges, while the tracer runs with serve's; what
//! the program can make the tracer do is bounded:
//!
//! | program does                        | bound                                            |
//! |-------------------------------------|--------------------------------------------------|
//! | asks serve to trace another process | refused: the pid must be the control peer's own (SO_PEERCRED) |
//! | string I/O with a huge rcx          | refused above [`emulate::MAX_STRING`]; hvsim caps messages |
//! | string I/O on unmapped memory       | the fault is delivered, as a real page fault     |
//! | I/O on other ports, real crashes    | the signal is delivered unchanged                |
//! | a SIGSEGV sent by kill() while at a backdoor instruction | taken for the fault and emulated (no GETSIGINFO per trap); only the program itself is affected |
//! | crafted ELF section tables          | checked parser ([`elf`]), fuzzed; sections over 256 MiB are not read |
//! | endless exec mappings, many files   | each is scanned once per mmap/mprotect call; the site cache holds at most [`cache::MAX_FILES`] files |
//! | rewrites a cached file in place     | new ctime, new cache entry; UD2 is written only where memory holds CPUID |
//! | maps files it cannot read           | serve opens them through /proc/PID/map_files: only what the program mapped |
//! | hands serve another process's listener, or a non-listener fd | refused: the pid must be the caller's; the fd must be a seccomp listener |
//! | vsock calls                         | serve makes unix sockets for it, reads at most 128 bytes of a sockaddr, connects only its emulated sockets, only to its own VM's endpoint |
//! | floods the TCLO endpoint            | [`crate::vsock::MAX_CONNECTIONS`] per VM; packets over the DataMap limit close the connection |
//! | floods the RPCI endpoint            | [`crate::rpci_vsock::MAX_CONNECTIONS`] per VM; malformed packets and requests over the VM's message limit close the connection |

use std::collections::HashMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::device::DeviceFacts;
use crate::vm::Vm;

pub mod cache;
pub mod cpuid;
pub mod dmi;
pub mod elf;
pub mod emulate;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod launch;
pub mod patch;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod tracer;
pub mod vmdev;
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub mod vsock;

/// Whether this build's serve emulates vsock for programs under `hvsim
/// exec` (told to `hvsim exec` in the `exec-attach` answer).
pub const VSOCK_SUPPORTED: bool = cfg!(all(target_os = "linux", target_arch = "x86_64"));

/// Why `hvsim exec` could not run the program.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// `hvsim serve` did not take the program on.
    #[error("cannot run under VM {vm:?}: {source}")]
    Control {
        /// The VM.
        vm: String,
        /// What the control request said.
        source: crate::control::ControlError,
    },
    /// The program is not on PATH.
    #[error("{program:?}: command not found (give a path, or check PATH)")]
    NotFound {
        /// As given.
        program: OsString,
    },
    /// An argument holds a NUL byte.
    #[error("an argument contains a NUL byte")]
    BadArgument,
    /// The tracer thread could not start.
    #[error("cannot start the tracer: {0}")]
    Spawn(io::Error),
    /// execve failed in the child.
    #[error("cannot execute {program}: {source}")]
    Exec {
        /// The resolved path.
        program: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The seccomp filter that reports new executable mappings was refused.
    #[error("cannot install the seccomp filter that reports new code mappings: {0} (is seccomp disabled in this kernel or container?)")]
    Seccomp(io::Error),
    /// A ptrace request failed.
    #[error("{what}: {source} (ptrace may be forbidden here: check /proc/sys/kernel/yama/ptrace_scope and the container's seccomp profile)")]
    Ptrace {
        /// The request.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The console pty could not be set up.
    #[error("cannot set up the console pty: {0}")]
    Pty(io::Error),
    /// The VM's DMI could not be put in place.
    #[error("cannot present the VM's DMI: {0}")]
    Dmi(dmi::DmiError),
    /// Not x86_64 Linux.
    #[error("hvsim exec needs x86_64 Linux (ptrace and port I/O); use the socket frontend (VM_BACKDOOR=unix:PATH) here")]
    Unsupported,
}

/// Run `program` with `args` against VM `vm` of the `hvsim serve` behind the
/// control socket `control`: this process is traced by serve and becomes the
/// program. `console`: the program runs on a pty that serve attaches as the
/// VM's serial console (see [`crate::console`]). `dmi`: the program sees
/// the VM's DMI ([`dmi`]). Returns only when that failed.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
pub fn run(
    control: &Path,
    vm: &str,
    program: &OsString,
    args: &[OsString],
    console: bool,
    dmi: bool,
) -> Result<Infallible, ExecError> {
    launch::run(control, vm, program, args, console, dmi)
}

/// Run `program` with `args` against VM `vm` (x86_64 Linux only).
#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
pub fn run(
    _control: &Path,
    _vm: &str,
    _program: &OsString,
    _args: &[OsString],
    _console: bool,
    _dmi: bool,
) -> Result<Infallible, ExecError> {
    Err(ExecError::Unsupported)
}

/// A VM's vsock endpoints, bound for as long as serve runs.
#[derive(Debug, Default)]
struct VsockEndpoints {
    ports: HashMap<u32, PathBuf>,
    _permit: Option<crate::budget::Permit>,
}

impl VsockEndpoints {
    /// Bind `vm`'s TCLO, RPCI and privileged RPCI endpoints in `dir`; one that cannot
    /// start is left out (logged), and programs use the backdoor for it.
    fn start(dir: &Path, vm: &Arc<Vm>) -> VsockEndpoints {
        use protocol::datamap::{RPCI_VSOCK_PORT, TCLO_VSOCK_PORT};
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::net::UnixListener;
        type Spawn = fn(Arc<Vm>, UnixListener) -> std::io::Result<()>;
        let name = &vm.info.name;
        // Three listeners, from the VM's share of the descriptor budget.
        let permit = match crate::budget::global().acquire(&vm.gate, 3, name, "vsock endpoint") {
            Ok(p) => p,
            Err(e) => {
                log::warn!("{name}: no vsock endpoints for programs under hvsim exec (they use the backdoor): {e}");
                return VsockEndpoints::default();
            }
        };
        let kinds: [(u32, &str, &str, Spawn); 3] = [
            (TCLO_VSOCK_PORT, "sock", "TCLO", crate::vsock::spawn),
            (
                RPCI_VSOCK_PORT,
                "rpci.sock",
                "RPCI",
                crate::rpci_vsock::spawn,
            ),
            // Connections from a privileged source port (root in the
            // guest) may use the privileged commands (namespace DB).
            (
                RPCI_VSOCK_PORT | vsock::PRIVILEGED,
                "rpci-priv.sock",
                "privileged RPCI",
                crate::rpci_vsock::spawn_privileged,
            ),
        ];
        let mut ports = HashMap::new();
        for (port, ext, what, spawn) in kinds {
            let path = dir.join(format!("{name}.{ext}"));
            let r = std::fs::create_dir_all(dir)
                .and_then(|()| {
                    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                })
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    crate::serve::bind(&path, &format!("{what} vsock endpoint"))
                        .map_err(|e| format!("{e:#}"))
                })
                .and_then(|l| spawn(vm.clone(), l).map_err(|e| e.to_string()));
            match r {
                Ok(()) => {
                    log::info!("{name}: {what} over vsock for programs under hvsim exec: {}", path.display());
                    ports.insert(port, path);
                }
                Err(e) => log::warn!(
                    "{name}: no {what} over vsock for programs under hvsim exec (they use the backdoor): {e}"
                ),
            }
        }
        VsockEndpoints {
            ports,
            _permit: Some(permit),
        }
    }
}

/// The serve side: the VMs a traced program may run against, and the CPUID
/// sites of every file seen so far.
#[derive(Debug, Default)]
pub struct Service {
    vms: HashMap<String, (Arc<Vm>, DeviceFacts)>,
    /// The vsock endpoints of each VM that has had a program under
    /// `hvsim exec`: hypervisor port → unix socket, and the descriptors
    /// its listeners hold in the VM's budget.
    vsock: std::sync::Mutex<HashMap<String, VsockEndpoints>>,
    /// Where endpoints are made, on first use ([`Service::set_vsock_dir`]).
    vsock_dir: Option<PathBuf>,
    cache: Arc<cache::SiteCache>,
    tsc_khz: u32,
}

impl Service {
    /// No VMs yet.
    pub fn new() -> Service {
        Service {
            tsc_khz: cpuid::tsc_khz(),
            ..Service::default()
        }
    }

    /// Offer `vm`, whose device reports `facts`.
    pub fn add(&mut self, vm: Arc<Vm>, facts: DeviceFacts) {
        self.vms.insert(vm.info.name.clone(), (vm, facts));
    }

    /// Programs under `hvsim exec` against a VM that connect a vsock
    /// stream to the hypervisor reach endpoints made in `dir` (a directory
    /// only serve's user may enter) when the first such program asks: TCLO
    /// ([`crate::vsock`]) and RPCI ([`crate::rpci_vsock`]). VMs without
    /// such programs hold no descriptors for them.
    pub fn set_vsock_dir(&mut self, dir: PathBuf) {
        self.vsock_dir = Some(dir);
    }

    /// The vsock endpoints of `vm`, made now if they are not yet; empty
    /// when they cannot be (programs fall back to the backdoor).
    fn vsock_endpoints(&self, vm: &Arc<Vm>) -> HashMap<u32, PathBuf> {
        let mut all = self.vsock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = all.get(&vm.info.name) {
            return e.ports.clone();
        }
        let Some(dir) = &self.vsock_dir else {
            return HashMap::new();
        };
        let e = VsockEndpoints::start(dir, vm);
        let ports = e.ports.clone();
        all.insert(vm.info.name.clone(), e);
        ports
    }

    /// Answer the vsock calls of process `pid` (which asked through a control
    /// connection from process `caller`), reported on its seccomp listener
    /// `fd` ([`vsock`]).
    pub fn vsock(&self, vm: &str, pid: i32, caller: Option<i32>, fd: i32) -> Result<(), String> {
        if !self.vms.contains_key(vm) {
            return Err(format!("no VM named {vm:?}"));
        }
        if caller != Some(pid) {
            return Err(format!(
                "exec-vsock: process {pid} is not the caller; a process can only hand over its own listener"
            ));
        }
        self.vsock_checked(vm, pid, fd)
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn vsock_checked(&self, vm: &str, pid: i32, fd: i32) -> Result<(), String> {
        let endpoints = match self.vms.get(vm) {
            Some((v, _)) => self.vsock_endpoints(v),
            None => HashMap::new(),
        };
        vsock::start(vm, pid, fd, endpoints)
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn vsock_checked(&self, _vm: &str, _pid: i32, _fd: i32) -> Result<(), String> {
        Err(ExecError::Unsupported.to_string())
    }

    /// What the `exec-attach` answer tells `hvsim exec` about VM `vm`:
    /// whether vsock is emulated, and the VM's UUID and model for its DMI.
    pub fn offer(&self, vm: &str) -> serde_json::Value {
        let mut v = serde_json::json!({"vsock": VSOCK_SUPPORTED});
        if let Some((vm, _)) = self.vms.get(vm) {
            v["dmi"] = serde_json::json!({
                "uuid": crate::config::format_uuid(&vm.info.uuid),
                "model": vm.info.model,
            });
        }
        v
    }

    /// Trace process `pid` (which asked through a control connection from
    /// process `caller`) against VM `vm`; returns once it is seized.
    /// `stats`: print the tracer's counts on its stderr when it exits.
    /// `console`: a pty master to attach as the VM's serial console once
    /// the process is seized (`hvsim exec --console`).
    pub fn attach(
        &self,
        vm: &str,
        pid: i32,
        caller: Option<i32>,
        stats: bool,
        console: Option<std::os::fd::OwnedFd>,
    ) -> Result<(), String> {
        let Some((vm, facts)) = self.vms.get(vm) else {
            let mut names: Vec<&str> = self.vms.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(format!("no VM named {vm:?} (VMs: {})", names.join(", ")));
        };
        if caller != Some(pid) {
            return Err(format!(
                "exec-attach: process {pid} is not the caller ({}); a process can only ask to be traced itself",
                caller.map_or("unknown".to_string(), |c| c.to_string())
            ));
        }
        // Its vsock endpoints are made now, before the program runs, so
        // they are there when it connects (and for the life of serve).
        self.vsock_endpoints(vm);
        if console.is_some() && vm.console.is_attached() {
            return Err(format!(
                "VM {:?} already has a console attached (one program per VM may use --console)",
                vm.info.name
            ));
        }
        self.attach_checked(vm.clone(), *facts, pid, stats)
            .map_err(|e| e.to_string())?;
        match console {
            Some(fd) => vm.console.attach(&vm.info.name, fd),
            None => Ok(()),
        }
    }

    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    fn attach_checked(
        &self,
        vm: Arc<Vm>,
        facts: DeviceFacts,
        pid: i32,
        stats: bool,
    ) -> Result<(), ExecError> {
        tracer::attach(tracer::Session {
            vm,
            facts,
            cache: self.cache.clone(),
            pid,
            stats,
            tsc_khz: self.tsc_khz,
        })
    }

    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    fn attach_checked(
        &self,
        _vm: Arc<Vm>,
        _facts: DeviceFacts,
        _pid: i32,
        _stats: bool,
    ) -> Result<(), ExecError> {
        Err(ExecError::Unsupported)
    }
}
