//! The VM model: one VM's guest variables, what its guest reported, its TCLO
//! queue and its message channels. Every frontend and host service reads and
//! changes a VM through this.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protocol::host::{ChannelRef, ChannelTable, HostLimits, HostMessage, MessageSink};
use protocol::proto;

use crate::rpci;
use crate::store::Store;

/// Facts about a VM that do not change while it runs.
#[derive(Debug, Clone)]
pub struct VmInfo {
    /// Unique name.
    pub name: String,
    /// BIOS UUID.
    pub uuid: [u8; 16],
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Where the socket frontend listens.
    pub backdoor_socket: PathBuf,
    /// Copy/paste allowed.
    pub clipboard: bool,
    /// SMBIOS product name (DMI `product_name` under `hvsim exec`).
    pub model: String,
}

/// Guest-facing limits of a VM.
#[derive(Debug, Clone, Copy)]
pub struct VmLimits {
    /// Message channel limits.
    pub channels: HostLimits,
    /// Guest variables the VM may hold.
    pub max_guest_vars: usize,
}

/// Power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    /// Running.
    On,
    /// Off.
    Off,
}

/// A power request from a host service (IPMI, Redfish, CIM, the control socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    /// Power on (no-op when on).
    On,
    /// Power off at once, like pulling the plug (no-op when off).
    Off,
    /// Hard reset: the guest starts over; the VM stays on.
    Reset,
    /// Power cycle: off, then on.
    Cycle,
    /// Graceful shutdown: TCLO `OS_Halt` to the guest agent; the VM goes off
    /// when the agent reports the halt done.
    SoftOff,
    /// Graceful reboot: TCLO `OS_Reboot` to the guest agent.
    SoftReboot,
}

/// Boot device for the next boot (IPMI bootdev, Redfish Boot override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootTarget {
    /// No override.
    #[default]
    None,
    /// Network (PXE).
    Pxe,
    /// Hard disk.
    Hdd,
    /// CD/DVD (virtual media Cd).
    Cd,
    /// USB (virtual media Usb).
    Usb,
    /// Firmware setup.
    BiosSetup,
}

/// The boot override of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BootOverride {
    /// Device.
    pub target: BootTarget,
    /// Applies to every boot, not just the next one.
    pub persistent: bool,
    /// UEFI boot rather than legacy BIOS.
    pub uefi: bool,
}

/// Something that happened to a VM, for event consumers (IPMI SEL, CIM
/// indications, Redfish events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    /// The VM powered on; `source` names who asked ("ipmi", "guest", ...).
    PowerOn {
        /// Who asked.
        source: String,
    },
    /// The VM powered off.
    PowerOff {
        /// Who asked ("guest" for a completed graceful shutdown).
        source: String,
    },
    /// The VM was reset or power-cycled, or the guest rebooted.
    Reset {
        /// Who asked.
        source: String,
    },
    /// The guest agent reported a state change (`halt`, `reboot`, ...).
    GuestStateChange {
        /// The state's name.
        state: String,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Guest info (hostname, OS, NICs, disks) changed.
    GuestInfoChanged,
    /// A guest agent started or stopped polling TCLO.
    ToolsStatus {
        /// Now running.
        running: bool,
    },
}

/// Why a power request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    /// The request needs the VM on.
    #[error("VM {0} is powered off")]
    PoweredOff(String),
    /// A graceful request needs a guest agent.
    #[error(
        "no guest agent is running in VM {0} to shut it down gracefully; use a hard power off"
    )]
    NoAgent(String),
    /// A graceful request is already under way.
    #[error("a graceful state change is already in progress in VM {0}")]
    InProgress(String),
}

/// What the guest's tools told the host.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    /// `tools.set.version`.
    pub version: Option<String>,
    /// `tools.set.versiontype`.
    pub version_type: Option<String>,
    /// `tools.capability.*` name → arguments.
    pub capabilities: BTreeMap<String, String>,
    /// Last `tools.os.statechange.status`: success and state.
    pub last_state_change: Option<(bool, String)>,
    /// `vmx.capability.unified_loop` argument.
    pub unified_loop: Option<String>,
}

/// The outcome of a queued TCLO command.
pub type TcloResult = Result<Vec<u8>, String>;

/// A TCLO channel: a backdoor message channel (by its id) or a
/// TCLO-over-vsock connection (by its serial number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TcloChan {
    Backdoor(u16),
    Vsock(u64),
}

/// One TCLO-over-vsock connection.
#[derive(Debug, Default)]
struct VsockConn {
    /// The ticket of the command sent and not answered yet: the guest
    /// answers in order, so nothing more is sent until it does (even when
    /// the host stopped waiting for that answer).
    outstanding: Option<u64>,
    /// The host closes it (power off, reset): its writer ends.
    closing: bool,
}

/// Which transport carries a VM's TCLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcloTransport {
    /// Backdoor message channels polled by the guest.
    Backdoor,
    /// A vsock stream the host pushes commands on.
    Vsock,
}

#[derive(Debug, Default)]
struct Tclo {
    queue: VecDeque<(u64, Vec<u8>)>,
    /// Delivered, awaiting the guest's reply: ticket and channel.
    in_flight: Option<(u64, TcloChan)>,
    done: BTreeMap<u64, TcloResult>,
    next_ticket: u64,
    last_poll: Option<Instant>,
    open_channels: usize,
    /// Tickets whose replies nobody waits for: graceful power requests
    /// (true), the start-up commands a new TCLO channel gets and option
    /// changes (`Set_Option`) from the host (false).
    fire_and_forget: Vec<(u64, bool)>,
    /// Start-up commands still owed to a newly opened TCLO channel.
    startup: BTreeMap<TcloChan, VecDeque<Vec<u8>>>,
    /// Open TCLO-over-vsock connections by serial number.
    vsock: BTreeMap<u64, VsockConn>,
    next_vsock: u64,
}

impl Tclo {
    /// A new TCLO channel; `options` are the VM's tools options, sent
    /// after the handshake as a VMX sends them (`Set_Option KEY VALUE`).
    fn open(&mut self, chan: TcloChan, options: &BTreeMap<String, String>) {
        self.open_channels += 1;
        let mut cmds = VecDeque::from([b"reset".to_vec(), b"Capabilities_Register".to_vec()]);
        cmds.extend(
            options
                .iter()
                .map(|(k, v)| format!("Set_Option {k} {v}").into_bytes()),
        );
        self.startup.insert(chan, cmds);
    }

    /// The next command for `chan`, marked in flight: its start-up
    /// commands first, then the queue's. None while one is in flight.
    fn next_for(&mut self, chan: TcloChan) -> Option<(u64, Vec<u8>)> {
        if self.in_flight.is_some() {
            return None;
        }
        // A new tools channel first gets what a VMX sends it: `reset`,
        // then `Capabilities_Register` (vmtoolsd only switches to JSON
        // disk info and registers its version after these).
        let startup = self.startup.get_mut(&chan).and_then(VecDeque::pop_front);
        let (ticket, cmd) = if let Some(cmd) = startup {
            let ticket = self.next_ticket;
            self.next_ticket += 1;
            self.fire_and_forget.push((ticket, false));
            (ticket, cmd)
        } else {
            self.queue.pop_front()?
        };
        self.in_flight = Some((ticket, chan));
        Some((ticket, cmd))
    }
}

/// The mutable part of a VM, behind one lock.
#[derive(Debug)]
pub struct VmData {
    /// guestinfo.* variables (values shared with replies, never copied).
    pub vars: BTreeMap<String, Arc<[u8]>>,
    /// Tools status.
    pub tools: Tools,
    /// Raw textual `SetGuestInfo` reports by key number.
    pub guest: BTreeMap<u32, Vec<u8>>,
    /// Decoded NIC report (keys 9 and 10).
    pub nics: Option<protocol::nicinfo::NicInfoV3>,
    /// Why the last NIC report did not decode, if it did not.
    pub nic_error: Option<String>,
    /// Uptime in hundredths of a second and when it was reported (key 7).
    pub uptime: Option<(u64, Instant)>,
    /// `SetGuestDiskInfo` JSON.
    pub disks: Option<serde_json::Value>,
    /// The latest memory statistics (key 8) and when they came.
    pub memory: Option<(protocol::gueststats::GuestStats, Instant)>,
    /// Why the last memory statistics did not decode, if they did not.
    pub memory_error: Option<String>,
    /// The copy/paste selection.
    pub clipboard: crate::clipboard::Clipboard,
    /// Detailed OS data (key 11): short name, full name, details.
    pub os_detailed: Option<(String, String, String)>,
    /// Power state.
    pub power: Power,
    /// Boot override.
    pub boot: BootOverride,
    /// When the VM last powered on or reset.
    pub booted_at: Instant,
    /// A graceful action sent to the agent, awaiting its status.
    pub pending_soft: Option<PowerAction>,
    /// A power change decided inside a guest call, applied after it.
    deferred: Option<(PowerAction, String)>,
    /// Tools options, devices, guest SDK values, the namespace DB.
    pub host: crate::vmhost::HostState,
    /// The latest guest customization (deployPkg).
    pub customization: Option<crate::customize::Customization>,
    tclo: Tclo,
    /// Quiesced snapshots: the operation in progress and the records.
    pub backup: crate::snapshot::BackupState,
}

/// Channels and data of a VM.
#[derive(Debug)]
pub struct VmState {
    /// The message channel table.
    pub channels: ChannelTable,
    /// Everything else.
    pub data: VmData,
}

/// A VM.
#[derive(Debug)]
pub struct Vm {
    /// Fixed facts.
    pub info: VmInfo,
    /// Limits.
    pub limits: VmLimits,
    state: Mutex<VmState>,
    tclo_cv: Condvar,
    /// Signalled on each vmbackup event from the guest.
    backup_cv: Condvar,
    store: Arc<Store>,
    subscribers: Mutex<Vec<Subscriber>>,
    revision: std::sync::atomic::AtomicU64,
    calls: std::sync::atomic::AtomicU64,
    /// RPCI messages answered over vsock.
    vsock_rpci: std::sync::atomic::AtomicU64,
    /// The serial console, when a program runs under `hvsim exec --console`.
    pub console: Arc<crate::console::Slot>,
    /// Its guest connections in the descriptor budget ([`crate::budget`]).
    pub gate: Arc<crate::budget::Gate>,
    /// Bound on the bytes its guest's `log` messages add to hvsim's log.
    guest_log: crate::ratelimit::RateLimiter,
    /// Bound on the warnings its guest's malformed traffic adds.
    warnings: crate::ratelimit::RateLimiter,
    /// The VM's `vmware.log` (guest `log` messages and the like).
    pub vmware_log: crate::vmlog::VmLog,
}

/// Where a VM's events go.
#[derive(Debug)]
enum Subscriber {
    Own(std::sync::mpsc::Sender<VmEvent>),
    Tagged(usize, std::sync::mpsc::Sender<(usize, VmEvent)>),
}

/// Bytes a second a VM's guest `log` messages may add to hvsim's log (the
/// limit a whole-host bound of about 1 MiB/s per guest comes from).
pub const GUEST_LOG_RATE: u64 = 256 << 10;
/// Bytes of guest `log` messages passed at once before the rate applies.
pub const GUEST_LOG_BURST: u64 = 512 << 10;
/// Bytes a second of warnings about one VM's guest traffic.
pub const WARN_RATE: u64 = 16 << 10;
/// Bytes of such warnings passed at once.
pub const WARN_BURST: u64 = 64 << 10;

/// A guest whose TCLO poll is older than this counts as not running
/// (vmtoolsd polls at least every second, backing off to 100 ms when busy).
const TOOLS_ALIVE: Duration = Duration::from_secs(5);

impl Vm {
    /// A VM with its variables loaded from `store`.
    pub fn new(
        info: VmInfo,
        limits: VmLimits,
        store: Arc<Store>,
        seed: u64,
    ) -> Result<Vm, crate::store::StoreError> {
        let vars = store
            .vars(&info.name)?
            .into_iter()
            .map(|(k, v)| (k, Arc::from(v)))
            .collect();
        let snapshots = store.snapshots(&info.name, 100)?;
        Ok(Vm {
            state: Mutex::new(VmState {
                channels: ChannelTable::new(limits.channels, seed),
                data: VmData {
                    vars,
                    tools: Tools::default(),
                    guest: BTreeMap::new(),
                    nics: None,
                    nic_error: None,
                    uptime: None,
                    disks: None,
                    memory: None,
                    memory_error: None,
                    clipboard: crate::clipboard::Clipboard::new(info.clipboard),
                    os_detailed: None,
                    power: Power::On,
                    boot: BootOverride::default(),
                    booted_at: Instant::now(),
                    pending_soft: None,
                    deferred: None,
                    host: crate::vmhost::HostState::new(
                        crate::vmhost::HostSettings::defaults(info.memory_mb),
                        crate::vmhost::devices(None, &info.uuid),
                    ),
                    customization: None,
                    tclo: Tclo::default(),
                    backup: crate::snapshot::BackupState {
                        snapshots,
                        ..Default::default()
                    },
                },
            }),
            info,
            limits,
            tclo_cv: Condvar::new(),
            backup_cv: Condvar::new(),
            store,
            subscribers: Mutex::new(Vec::new()),
            revision: std::sync::atomic::AtomicU64::new(1),
            calls: std::sync::atomic::AtomicU64::new(0),
            vsock_rpci: std::sync::atomic::AtomicU64::new(0),
            console: Arc::default(),
            gate: Arc::default(),
            guest_log: crate::ratelimit::RateLimiter::new(GUEST_LOG_RATE, GUEST_LOG_BURST),
            warnings: crate::ratelimit::RateLimiter::new(WARN_RATE, WARN_BURST),
            vmware_log: crate::vmlog::VmLog::default(),
        })
    }

    /// Log a guest `log` message: at most
    /// [`crate::ratelimit::GUEST_LINE_MAX`] bytes of it, and while the
    /// guest stays under [`GUEST_LOG_RATE`]; dropped lines are counted
    /// and summed up in the next line that passes.
    /// Returns whether the line passed (was logged).
    pub fn guest_log(&self, msg: &[u8]) -> bool {
        let max = crate::ratelimit::GUEST_LINE_MAX;
        let kept = &msg[..msg.len().min(max)];
        let text = String::from_utf8_lossy(kept);
        let text = text.trim_end_matches(['\0', '\n']);
        // One guest message is one log line: it cannot forge others.
        let text = if text.contains(['\n', '\r']) {
            std::borrow::Cow::Owned(text.replace('\n', "\\n").replace('\r', "\\r"))
        } else {
            std::borrow::Cow::Borrowed(text)
        };
        let cost = text.len() + self.info.name.len() + 48;
        match self.guest_log.check(cost) {
            crate::ratelimit::Verdict::Drop => false,
            crate::ratelimit::Verdict::Pass { suppressed } => {
                if suppressed > 0 {
                    log::warn!(
                        "{}: guest log: suppressed {suppressed} lines (over {} KiB/s)",
                        self.info.name,
                        GUEST_LOG_RATE >> 10
                    );
                }
                if msg.len() > max {
                    log::info!(
                        "{}: guest log: {text}... [{} bytes cut]",
                        self.info.name,
                        msg.len() - max
                    );
                } else {
                    log::info!("{}: guest log: {text}", self.info.name);
                }
                true
            }
        }
    }

    /// Log a warning about this VM's guest traffic (malformed frames,
    /// refused requests) at `level`, while under [`WARN_RATE`]; dropped
    /// ones are counted and summed up in the next that passes.
    pub fn guest_warn(&self, level: log::Level, args: std::fmt::Arguments<'_>) {
        if !log::log_enabled!(level) {
            return;
        }
        let line = args.to_string();
        let line = crate::ratelimit::cut(&line, crate::ratelimit::GUEST_LINE_MAX);
        match self.warnings.check(line.len() + self.info.name.len() + 48) {
            crate::ratelimit::Verdict::Drop => {}
            crate::ratelimit::Verdict::Pass { suppressed } => {
                if suppressed > 0 {
                    log::warn!(
                        "{}: suppressed {suppressed} messages about the guest's traffic (over {} KiB/s)",
                        self.info.name,
                        WARN_RATE >> 10
                    );
                }
                log::log!(level, "{}: {line}", self.info.name);
            }
        }
    }

    /// Guest log lines and traffic warnings dropped so far.
    pub fn suppressed(&self) -> (u64, u64) {
        (
            self.guest_log.total_suppressed(),
            self.warnings.total_suppressed(),
        )
    }

    /// Lock the VM's state. A panic elsewhere never makes the VM unusable.
    pub fn lock(&self) -> MutexGuard<'_, VmState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `f` with the channel table and a sink wired to this VM.
    pub fn with_channels<R>(
        &self,
        f: impl FnOnce(&mut ChannelTable, &mut dyn MessageSink) -> R,
    ) -> R {
        self.with_sink(false, |t, s| f(t, s))
    }

    fn with_sink<R>(
        &self,
        privileged: bool,
        f: impl FnOnce(&mut ChannelTable, &mut Sink<'_>) -> R,
    ) -> R {
        let mut st = self.lock();
        let VmState { channels, data } = &mut *st;
        let running = tools_running(data);
        let mut sink = Sink {
            vm: self,
            data,
            privileged,
        };
        let r = f(channels, &mut sink);
        // A graceful shutdown completes inside the guest's status call; the
        // power change waits until that call is answered.
        if let Some((action, source)) = st.data.deferred.take() {
            self.apply_power(&mut st, action, &source);
        }
        let now = tools_running(&st.data);
        if now != running {
            self.emit(VmEvent::ToolsStatus { running: now });
        }
        r
    }

    /// Handle `in eax, dx` on the LB port: the selection (copy/paste)
    /// commands use this VM's clipboard, everything else the device.
    pub fn lb_call(
        &self,
        facts: &crate::device::DeviceFacts,
        clock: &dyn crate::device::Clock,
        owner: u64,
        regs: protocol::Regs,
    ) -> protocol::Regs {
        use protocol::regs::lo;
        self.count_call();
        if regs.eax == protocol::BDOOR_MAGIC && lo(regs.edx) == protocol::BDOOR_PORT {
            let mut st = self.lock();
            if let Some(eax) = st.data.clipboard.call(lo(regs.ecx), regs.ebx) {
                return protocol::Regs { eax, ..regs };
            }
            if let Some(out) = self.host_call(&mut st.data, regs) {
                return out;
            }
        }
        self.with_channels(|t, sink| crate::device::lb_call(facts, clock, t, sink, owner, regs))
    }

    /// The backdoor commands answered from the VM's host state: tools
    /// options and removable devices.
    fn host_call(&self, d: &mut VmData, regs: protocol::Regs) -> Option<protocol::Regs> {
        use protocol::cmd;
        use protocol::regs::lo;
        let mut out = regs;
        match lo(regs.ecx) {
            cmd::GETGUIOPTIONS => out.eax = d.host.gui_options(d.clipboard.enabled()),
            cmd::SETGUIOPTIONS => {
                // Of the GUI bits, a guest may change only time sync.
                let on = regs.ebx & protocol::gui_option::SYNC_TIME != 0;
                let v = if on { "1" } else { "0" };
                if let Err(e) = set_option(self, d, crate::vmhost::OPTION_SYNCTIME, v) {
                    log::warn!("{}: SETGUIOPTIONS: {e}", self.info.name);
                }
                out.eax = 1;
            }
            cmd::GETDEVICELISTELEMENT => {
                let (id, offset) = ((regs.ebx >> 16) as u16, regs.ebx as u16);
                match d.host.device_word(id, offset) {
                    Some(w) => {
                        out.eax = 1;
                        out.ebx = w;
                    }
                    None => out.eax = 0,
                }
            }
            cmd::TOGGLEDEVICE => {
                let (id, connect) = (regs.ebx as u16, regs.ebx & 0x8000_0000 != 0);
                let done = d.host.toggle_device(id, connect);
                if done {
                    log::info!(
                        "{}: guest {} device {id}",
                        self.info.name,
                        if connect { "connected" } else { "disconnected" }
                    );
                    self.touch();
                }
                out.eax = u32::from(done);
            }
            _ => return None,
        }
        Some(out)
    }

    /// Apply the VM's host settings from its config: devices, guest SDK
    /// values, namespaces; options from the store, else `initial`.
    pub fn configure_host(
        &self,
        settings: crate::vmhost::HostSettings,
        devices: Vec<crate::vmhost::Device>,
        initial: &BTreeMap<String, String>,
    ) -> Result<(), crate::store::StoreError> {
        let stored = self.store.options(&self.info.name)?;
        let mut namespaces = BTreeMap::new();
        for ns in &settings.namespaces {
            namespaces.insert(ns.clone(), self.store.namespace(&self.info.name, ns)?);
        }
        let mut st = self.lock();
        let h = &mut st.data.host;
        h.settings = settings;
        h.devices = devices;
        h.options = initial.clone();
        h.options.extend(stored);
        h.namespaces = namespaces;
        Ok(())
    }

    /// Set a tools option from the host side (persisted first); a running
    /// guest agent is told with TCLO `Set_Option KEY VALUE`.
    pub fn set_option(&self, key: &str, value: &str) -> Result<(), String> {
        let mut st = self.lock();
        set_option(self, &mut st.data, key, value)?;
        if tools_running(&st.data) {
            let cmd = format!("Set_Option {key} {value}");
            let t = &mut st.data.tclo;
            let ticket = t.next_ticket;
            t.next_ticket += 1;
            t.fire_and_forget.push((ticket, false));
            t.queue.push_back((ticket, cmd.into_bytes()));
            self.tclo_cv.notify_all();
        }
        Ok(())
    }

    /// Set (`Some`) or delete (`None`) a key of namespace `ns` from the host
    /// side, as the vSphere API's namespace manager does (persisted first).
    pub fn namespace_set(&self, ns: &str, key: &str, value: Option<&[u8]>) -> Result<(), String> {
        let mut st = self.lock();
        let d = &mut st.data;
        let Some(space) = d.host.namespaces.get_mut(ns) else {
            let names: Vec<&str> = d.host.namespaces.keys().map(String::as_str).collect();
            return Err(format!(
                "VM {} has no namespace {ns:?} (namespaces: {})",
                self.info.name,
                names.join(", ")
            ));
        };
        let op = crate::namespace::SetOp {
            conditional: false,
            key,
            value: value.unwrap_or_default(),
            old: b"",
        };
        if key.is_empty() || key.len() > crate::namespace::MAX_KEY || key.contains(char::is_control)
        {
            return Err(format!(
                "namespace key {key:?} is empty, too long or has control characters"
            ));
        }
        if value.is_some_and(|v| v.is_empty() || v.contains(&0)) {
            return Err("a namespace value is not empty and has no NUL".into());
        }
        let req = crate::namespace::SetRequest {
            namespace: ns,
            ops: vec![op],
        };
        let changes = crate::namespace::plan(Some(space), &req).map_err(|e| e.to_string())?;
        self.store
            .namespace_apply(&self.info.name, ns, &changes)
            .map_err(|e| e.to_string())?;
        crate::namespace::apply(space, &changes);
        self.touch();
        Ok(())
    }

    /// Count one backdoor instruction of this VM's guest (any frontend).
    pub fn count_call(&self) {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Backdoor instructions handled so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Answer one RPCI message that came over vsock ([`crate::rpci_vsock`])
    /// the way a message completed on a backdoor RPCI channel is answered:
    /// the same sink, so the same reply (`1 ` or `0 ` and the body) and the
    /// same side effects. Counted as `vsock.rpci_messages`, not as backdoor
    /// calls. `None` while the VM is off (no guest runs to ask).
    pub fn vsock_rpci(&self, msg: &[u8]) -> Option<Vec<u8>> {
        self.vsock_rpci_as(msg, false)
    }

    /// [`Vm::vsock_rpci`] for a connection from a privileged source port
    /// (root in the guest): privileged commands (the namespace DB) work.
    pub fn vsock_rpci_as(&self, msg: &[u8], privileged: bool) -> Option<Vec<u8>> {
        if self.power_state() == Power::Off {
            return None;
        }
        self.vsock_rpci
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let chan = ChannelRef {
            id: u16::MAX,
            proto: proto::RPCI,
            owner: 0,
        };
        Some(self.with_sink(privileged, |_, sink| sink.message(chan, msg).to_vec()))
    }

    /// The clipboard text; with `set`, replace it first (host copy).
    pub fn clipboard(&self, set: Option<&str>) -> Result<Vec<u8>, String> {
        let mut st = self.lock();
        if let Some(t) = set {
            st.data.clipboard.set_host(t)?;
        }
        Ok(st.data.clipboard.text().to_vec())
    }

    /// The state database the VM's variables (and its BMC's SEL) live in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Receive this VM's events from now on.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<VmEvent> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Subscriber::Own(tx));
        rx
    }

    /// Send this VM's events to `tx` tagged with `tag`, so one thread can
    /// follow many VMs (no thread per VM).
    pub fn subscribe_tagged(&self, tag: usize, tx: std::sync::mpsc::Sender<(usize, VmEvent)>) {
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Subscriber::Tagged(tag, tx));
    }

    /// A number that grows whenever anything `show_json` reports changes
    /// (guest info, power, tools, variables), so views can cache renderings:
    /// equal revisions mean equal data.
    pub fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Mark the VM's data changed. Call with the VM lock held, after the change.
    pub(crate) fn touch(&self) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    fn emit(&self, ev: VmEvent) {
        self.touch();
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|s| match s {
            Subscriber::Own(tx) => tx.send(ev.clone()).is_ok(),
            Subscriber::Tagged(tag, tx) => tx.send((*tag, ev.clone())).is_ok(),
        });
    }

    /// Power state.
    pub fn power_state(&self) -> Power {
        self.lock().data.power
    }

    /// The boot override.
    pub fn boot_override(&self) -> BootOverride {
        self.lock().data.boot
    }

    /// Set the boot override.
    pub fn set_boot_override(&self, b: BootOverride) {
        self.lock().data.boot = b;
        self.touch();
    }

    /// Carry out a power request from `source` ("ipmi", "redfish", "cim", ...).
    /// Graceful requests return once the command is queued for the agent.
    pub fn power(&self, action: PowerAction, source: &str) -> Result<(), PowerError> {
        let mut st = self.lock();
        let name = || self.info.name.clone();
        match action {
            PowerAction::SoftOff | PowerAction::SoftReboot => {
                if st.data.power == Power::Off {
                    return Err(PowerError::PoweredOff(name()));
                }
                if !tools_running(&st.data) {
                    return Err(PowerError::NoAgent(name()));
                }
                if st.data.pending_soft.is_some() {
                    return Err(PowerError::InProgress(name()));
                }
                st.data.pending_soft = Some(action);
                let cmd: &[u8] = if action == PowerAction::SoftOff {
                    b"OS_Halt"
                } else {
                    b"OS_Reboot"
                };
                let t = &mut st.data.tclo;
                let ticket = t.next_ticket;
                t.next_ticket += 1;
                t.queue.push_back((ticket, cmd.to_vec()));
                t.fire_and_forget.push((ticket, true));
                self.tclo_cv.notify_all();
                log::info!(
                    "{}: graceful {} requested by {source}",
                    self.info.name,
                    String::from_utf8_lossy(cmd)
                );
                Ok(())
            }
            PowerAction::Reset | PowerAction::Cycle if st.data.power == Power::Off => {
                Err(PowerError::PoweredOff(name()))
            }
            _ => {
                self.apply_power(&mut st, action, source);
                Ok(())
            }
        }
    }

    fn apply_power(&self, st: &mut VmState, action: PowerAction, source: &str) {
        let was_on = st.data.power == Power::On;
        let VmState { channels, data } = st;
        match action {
            PowerAction::On if !was_on => {
                channels.set_accepting(true);
                data.power = Power::On;
                data.booted_at = Instant::now();
                data.host.session_id = crate::vmhost::new_session_id();
                data.pending_soft = None;
                consume_boot_override(data);
                self.emit(VmEvent::PowerOn {
                    source: source.into(),
                });
            }
            PowerAction::Off | PowerAction::SoftOff if was_on => {
                // The guest is gone, and its channels with it.
                channels.reset(&mut Sink {
                    vm: self,
                    data,
                    privileged: false,
                });
                channels.set_accepting(false);
                data.power = Power::Off;
                data.pending_soft = None;
                data.tclo.queue.clear();
                self.close_vsock_conns(data);
                self.emit(VmEvent::PowerOff {
                    source: source.into(),
                });
            }
            PowerAction::Reset | PowerAction::Cycle | PowerAction::SoftReboot if was_on => {
                channels.reset(&mut Sink {
                    vm: self,
                    data,
                    privileged: false,
                });
                self.close_vsock_conns(data);
                data.booted_at = Instant::now();
                data.host.session_id = crate::vmhost::new_session_id();
                data.pending_soft = None;
                consume_boot_override(data);
                self.emit(VmEvent::Reset {
                    source: source.into(),
                });
            }
            _ => {}
        }
        log::info!(
            "{}: power {:?} by {source}: now {:?}",
            self.info.name,
            action,
            data.power
        );
    }

    /// Set a guest variable from the host side (persisted first).
    pub fn set_var(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let mut st = self.lock();
        set_var(self, &mut st.data, key, value)
    }

    /// A guest variable.
    pub fn get_var(&self, key: &str) -> Option<Arc<[u8]>> {
        self.lock().data.vars.get(key).cloned()
    }

    /// True when a guest agent polls TCLO.
    pub fn tools_running(&self) -> bool {
        let st = self.lock();
        tools_running(&st.data)
    }

    /// Take a snapshot (`hvsim vm snapshot`): the record, also kept in the
    /// VM's state and the store.
    pub fn take_snapshot(
        &self,
        req: &crate::snapshot::SnapshotRequest,
    ) -> Result<serde_json::Value, String> {
        crate::snapshot::take(self, &self.store, req)
    }

    /// Start taking guest vmbackup events; false when an operation runs.
    pub fn backup_begin(&self) -> bool {
        let mut st = self.lock();
        let b = &mut st.data.backup;
        if b.active {
            return false;
        }
        b.active = true;
        b.events.clear();
        b.keep_alives = 0;
        b.last_event = Some(Instant::now());
        true
    }

    /// Stop taking guest vmbackup events: those of the operation and the
    /// number of keep-alives.
    pub fn backup_end(&self) -> (Vec<crate::snapshot::GuestEvent>, u64) {
        let mut st = self.lock();
        let b = &mut st.data.backup;
        b.active = false;
        (std::mem::take(&mut b.events), b.keep_alives)
    }

    /// Keep a snapshot record (at most `max`, the oldest dropped).
    pub fn backup_record(&self, rec: serde_json::Value, max: usize) {
        let mut st = self.lock();
        let v = &mut st.data.backup.snapshots;
        v.push(rec);
        if v.len() > max {
            let extra = v.len() - max;
            v.drain(..extra);
        }
        self.touch();
    }

    /// Wait until `f` gives something or `deadline` passes.
    pub fn backup_wait<R>(
        &self,
        deadline: Instant,
        mut f: impl FnMut(&mut crate::snapshot::BackupState) -> Option<R>,
    ) -> Option<R> {
        let mut st = self.lock();
        loop {
            if let Some(r) = f(&mut st.data.backup) {
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            // Wake at least every second for liveness checks.
            let wait = (deadline - now).min(Duration::from_secs(1));
            st = self
                .backup_cv
                .wait_timeout(st, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Queue a TCLO command and wait up to `timeout` for the guest's reply.
    /// vmtoolsd counts the C terminator into its text replies; it is
    /// dropped here ([`Vm::tclo_raw`] keeps it, for binary replies).
    pub fn tclo(&self, command: &[u8], timeout: Duration) -> TcloResult {
        self.tclo_raw(command, timeout).map(|mut r| {
            if r.last() == Some(&0) {
                r.pop();
            }
            r
        })
    }

    /// Like [`Vm::tclo`], the reply exactly as the guest sent it (VIX
    /// binary results end in whatever byte they end in).
    pub fn tclo_raw(&self, command: &[u8], timeout: Duration) -> TcloResult {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        let t = &mut st.data.tclo;
        let ticket = t.next_ticket;
        t.next_ticket += 1;
        t.queue.push_back((ticket, command.to_vec()));
        // A vsock TCLO connection's writer waits for this.
        self.tclo_cv.notify_all();
        loop {
            if let Some(r) = st.data.tclo.done.remove(&ticket) {
                return r;
            }
            let now = Instant::now();
            if now >= deadline {
                let t = &mut st.data.tclo;
                t.queue.retain(|(k, _)| *k != ticket);
                let delivered = matches!(t.in_flight, Some((k, _)) if k == ticket);
                if delivered {
                    // The reply, when it comes, is dropped.
                    t.in_flight = None;
                }
                let running = tools_running(&st.data);
                return Err(if delivered {
                    format!(
                        "the guest took the command but did not reply within {:.1} s",
                        timeout.as_secs_f64()
                    )
                } else if running {
                    format!(
                        "the guest agent did not pick up the command within {:.1} s",
                        timeout.as_secs_f64()
                    )
                } else {
                    format!(
                        "no guest agent is polling TCLO on {} (tools not running); start vm-agent or vmtoolsd in the guest",
                        self.info.name
                    )
                });
            }
            st = self
                .tclo_cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A TCLO-over-vsock connection opened: a new TCLO channel (start-up
    /// commands first). Returns its serial number for the calls below;
    /// `None` while the VM is off (no guest can connect).
    pub fn vsock_tclo_open(&self) -> Option<u64> {
        let mut st = self.lock();
        if st.data.power == Power::Off {
            return None;
        }
        let running = tools_running(&st.data);
        let VmData { tclo: t, host, .. } = &mut st.data;
        let id = t.next_vsock;
        t.next_vsock += 1;
        t.vsock.insert(id, VsockConn::default());
        t.open(TcloChan::Vsock(id), &host.options);
        // Connected is alive until heartbeats say otherwise.
        t.last_poll = Some(Instant::now());
        self.tools_changed(&st.data, running);
        self.touch();
        self.tclo_cv.notify_all();
        Some(id)
    }

    /// Wait for the next command to push on vsock connection `id`; `None`
    /// once the host closes the connection (power off, reset) or it is gone.
    pub fn vsock_tclo_next(&self, id: u64) -> Option<Vec<u8>> {
        let mut st = self.lock();
        loop {
            let t = &mut st.data.tclo;
            let conn = t.vsock.get(&id)?;
            if conn.closing {
                return None;
            }
            if conn.outstanding.is_none() {
                if let Some((ticket, cmd)) = t.next_for(TcloChan::Vsock(id)) {
                    if let Some(c) = t.vsock.get_mut(&id) {
                        c.outstanding = Some(ticket);
                    }
                    return Some(cmd);
                }
            }
            st = self.tclo_cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The guest answered the command last pushed on connection `id`.
    pub fn vsock_tclo_reply(&self, id: u64, msg: &[u8]) {
        let mut st = self.lock();
        let running = tools_running(&st.data);
        let VmState { data, .. } = &mut *st;
        data.tclo.last_poll = Some(Instant::now());
        match data.tclo.vsock.get_mut(&id) {
            Some(c) if c.outstanding.is_some() => c.outstanding = None,
            _ => {
                log::debug!(
                    "{}: vsock TCLO reply with no command sent: {:?}",
                    self.info.name,
                    String::from_utf8_lossy(msg)
                );
                return;
            }
        }
        record_reply(self, data, TcloChan::Vsock(id), msg);
        self.tclo_cv.notify_all();
        self.tools_changed(data, running);
    }

    /// A heartbeat on connection `id`.
    pub fn vsock_tclo_ping(&self, id: u64) {
        let mut st = self.lock();
        let running = tools_running(&st.data);
        if st.data.tclo.vsock.contains_key(&id) {
            st.data.tclo.last_poll = Some(Instant::now());
        }
        self.tools_changed(&st.data, running);
    }

    /// Connection `id` closed; its queued commands stay queued for the
    /// next TCLO channel, a command in flight on it fails.
    pub fn vsock_tclo_close(&self, id: u64) {
        let mut st = self.lock();
        let running = tools_running(&st.data);
        let t = &mut st.data.tclo;
        if t.vsock.remove(&id).is_none() {
            return;
        }
        tclo_closed(self, t, TcloChan::Vsock(id));
        self.tclo_cv.notify_all();
        self.tools_changed(&st.data, running);
        self.touch();
    }

    /// Which transport the guest's TCLO uses now, if any.
    pub fn tclo_transport(&self) -> Option<TcloTransport> {
        transport(&self.lock().data)
    }

    fn close_vsock_conns(&self, data: &mut VmData) {
        for c in data.tclo.vsock.values_mut() {
            c.closing = true;
        }
        self.tclo_cv.notify_all();
    }

    fn tools_changed(&self, data: &VmData, before: bool) {
        let now = tools_running(data);
        if now != before {
            self.emit(VmEvent::ToolsStatus { running: now });
        }
    }
}

fn consume_boot_override(d: &mut VmData) {
    if !d.boot.persistent {
        d.boot.target = BootTarget::None;
    }
}

fn transport(d: &VmData) -> Option<TcloTransport> {
    let t = &d.tclo;
    if !t.vsock.is_empty() {
        Some(TcloTransport::Vsock)
    } else if t.open_channels > 0 {
        Some(TcloTransport::Backdoor)
    } else {
        None
    }
}

fn tools_running(d: &VmData) -> bool {
    d.tclo.open_channels > 0 && d.tclo.last_poll.is_some_and(|t| t.elapsed() < TOOLS_ALIVE)
}

/// Validate, persist, then publish a guest variable.
fn set_var(vm: &Vm, d: &mut VmData, key: &str, value: &[u8]) -> Result<(), String> {
    if !key.starts_with("guestinfo.") || key.len() <= "guestinfo.".len() {
        return Err(format!("key {key:?} is not a guestinfo.* variable"));
    }
    if !d.vars.contains_key(key) && d.vars.len() >= vm.limits.max_guest_vars {
        return Err(format!(
            "too many guest variables (limit {})",
            vm.limits.max_guest_vars
        ));
    }
    vm.store.set_var(&vm.info.name, key, value).map_err(|e| {
        log::error!("{}: {e}", vm.info.name);
        "the host could not store the variable".to_string()
    })?;
    d.vars.insert(key.to_string(), Arc::from(value));
    vm.touch();
    Ok(())
}

/// Validate, persist, then apply a tools option.
fn set_option(vm: &Vm, d: &mut VmData, key: &str, value: &str) -> Result<(), String> {
    if !crate::vmhost::valid_option_key(key) {
        return Err(format!(
            "option {key:?} must be 1-64 characters of A-Z a-z 0-9 . _ -"
        ));
    }
    if value.len() > 1024 || value.contains(['\0', '\n']) {
        return Err("an option value is one line of at most 1024 bytes".into());
    }
    if d.host.options.get(key).map(String::as_str) == Some(value) {
        return Ok(());
    }
    if !d.host.options.contains_key(key) && d.host.options.len() >= 256 {
        return Err("too many options (limit 256)".into());
    }
    vm.store
        .set_option(&vm.info.name, key, value)
        .map_err(|e| {
            log::error!("{}: {e}", vm.info.name);
            "the host could not store the option".to_string()
        })?;
    d.host.options.insert(key.to_string(), value.to_string());
    vm.touch();
    Ok(())
}

/// The VM as a [`MessageSink`]: RPCI goes to [`rpci::handle`], TCLO to the queue.
#[derive(Debug)]
pub struct Sink<'a> {
    vm: &'a Vm,
    data: &'a mut VmData,
    privileged: bool,
}

impl Sink<'_> {
    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.vm.info.name
    }

    /// The VM's `vmware.log`.
    pub fn vmware_log(&self) -> &crate::vmlog::VmLog {
        &self.vm.vmware_log
    }

    /// Mutable VM data.
    pub fn data(&mut self) -> &mut VmData {
        self.data
    }

    /// Set a guest variable (persisted).
    pub fn set_var(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        set_var(self.vm, self.data, key, value)
    }

    /// The message came over a privileged channel (RPCI over vsock from a
    /// privileged port).
    pub fn privileged(&self) -> bool {
        self.privileged
    }

    /// The VM's fixed facts.
    pub fn info(&self) -> &VmInfo {
        &self.vm.info
    }

    /// Set a tools option (persisted).
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<(), String> {
        set_option(self.vm, self.data, key, value)
    }

    /// Apply planned changes to namespace `ns` (persisted first).
    pub fn namespace_apply(
        &mut self,
        ns: &str,
        changes: &crate::namespace::Changes,
    ) -> Result<(), String> {
        let Some(space) = self.data.host.namespaces.get_mut(ns) else {
            return Err("Namespace not found".into());
        };
        self.vm
            .store
            .namespace_apply(&self.vm.info.name, ns, changes)
            .map_err(|e| {
                log::error!("{}: {e}", self.vm.info.name);
                "the host could not store the namespace".to_string()
            })?;
        crate::namespace::apply(space, changes);
        self.vm.touch();
        Ok(())
    }

    /// Log a guest `log` message ([`Vm::guest_log`]).
    pub fn guest_log(&mut self, msg: &[u8]) -> bool {
        self.vm.guest_log(msg)
    }

    /// Log a warning about the guest's traffic ([`Vm::guest_warn`]).
    pub fn guest_warn(&mut self, args: std::fmt::Arguments<'_>) {
        self.vm.guest_warn(log::Level::Warn, args);
    }

    /// Log something the guest did at info level, under the same bound
    /// as [`Sink::guest_warn`].
    pub fn guest_info(&mut self, args: std::fmt::Arguments<'_>) {
        self.vm.guest_warn(log::Level::Info, args);
    }

    /// Mark the VM's data changed without an event (tools version, ...).
    pub fn touch(&mut self) {
        self.vm.touch();
    }

    /// Hand a vmbackup event to the operation in progress (`f` says
    /// whether it was taken); wakes the snapshot driver.
    pub fn backup_event(
        &mut self,
        f: impl FnOnce(&mut crate::snapshot::BackupState) -> bool,
    ) -> bool {
        let taken = f(&mut self.data.backup);
        self.vm.backup_cv.notify_all();
        taken
    }

    /// Tell event consumers that guest info changed.
    pub fn guest_info_changed(&mut self) {
        self.vm.emit(VmEvent::GuestInfoChanged);
    }

    /// The agent reported the outcome of a state change (`tools.os.statechange.status`).
    /// States as open-vm-tools numbers them: 1 halt, 2 reboot, 3 power on,
    /// 4 resume, 5 suspend.
    pub fn guest_state_change(&mut self, ok: bool, state: u32) {
        let name = match state {
            1 => "halt",
            2 => "reboot",
            3 => "poweron",
            4 => "resume",
            5 => "suspend",
            _ => "unknown",
        };
        self.data.tools.last_state_change = Some((ok, name.to_string()));
        self.vm.emit(VmEvent::GuestStateChange {
            state: name.into(),
            ok,
        });
        let pending = self.data.pending_soft.take();
        match (ok, state, pending) {
            (true, 1, _) => self.data.deferred = Some((PowerAction::SoftOff, "guest".into())),
            (true, 2, _) => self.data.deferred = Some((PowerAction::SoftReboot, "guest".into())),
            (false, _, Some(_)) => {
                log::warn!("{}: the guest agent failed to {name}", self.vm.info.name)
            }
            _ => {}
        }
    }

    fn tclo_message(&mut self, chan: ChannelRef, msg: &[u8]) -> HostMessage {
        let chan = TcloChan::Backdoor(chan.id);
        self.data.tclo.last_poll = Some(Instant::now());
        record_reply(self.vm, self.data, chan, msg);
        match self.data.tclo.next_for(chan) {
            Some((_, cmd)) => HostMessage::from(cmd),
            None => HostMessage::default(),
        }
    }
}

/// The guest's answer `msg` on `chan`: completes the command in flight there.
fn record_reply(vm: &Vm, data: &mut VmData, chan: TcloChan, msg: &[u8]) {
    // The raw reply is kept for the waiter; messages below go without the
    // C terminator vmtoolsd counts into its replies.
    let raw = msg;
    let msg = msg.strip_suffix(b"\0").unwrap_or(msg);
    let t = &mut data.tclo;
    match t.in_flight {
        Some((ticket, c)) if c == chan => {
            t.in_flight = None;
            if let Some(i) = t.fire_and_forget.iter().position(|&(k, _)| k == ticket) {
                let (_, power) = t.fire_and_forget.swap_remove(i);
                if !msg.starts_with(b"OK") && !power {
                    log::warn!(
                        "{}: the guest agent answered a start-up command or option change with {:?}",
                        vm.info.name,
                        String::from_utf8_lossy(msg)
                    );
                } else if !msg.starts_with(b"OK") {
                    log::warn!(
                        "{}: the guest refused a graceful power request: {}",
                        vm.info.name,
                        String::from_utf8_lossy(msg)
                    );
                    data.pending_soft = None;
                }
            } else {
                t.done.insert(ticket, Ok(raw.to_vec()));
            }
            // Reply waiters, and vsock writers waiting to send the next one.
            vm.tclo_cv.notify_all();
        }
        Some(_) => {}
        None if !msg.is_empty() => {
            log::debug!(
                "{}: TCLO reply with no command outstanding: {:?}",
                vm.info.name,
                String::from_utf8_lossy(msg)
            );
        }
        None => {}
    }
}

/// `chan` closed: a command in flight there fails.
fn tclo_closed(vm: &Vm, t: &mut Tclo, chan: TcloChan) {
    t.open_channels = t.open_channels.saturating_sub(1);
    t.startup.remove(&chan);
    if let Some((ticket, c)) = t.in_flight {
        if c == chan {
            t.in_flight = None;
            if let Some(i) = t.fire_and_forget.iter().position(|&(k, _)| k == ticket) {
                t.fire_and_forget.swap_remove(i);
            } else {
                t.done.insert(
                    ticket,
                    Err("the guest closed its TCLO channel before replying".into()),
                );
            }
            vm.tclo_cv.notify_all();
        }
    }
}

impl MessageSink for Sink<'_> {
    fn message(&mut self, chan: ChannelRef, msg: &[u8]) -> HostMessage {
        match chan.proto {
            proto::TCLO => self.tclo_message(chan, msg),
            _ => rpci::handle(self, msg),
        }
    }

    fn opened(&mut self, chan: ChannelRef) {
        if chan.proto == proto::TCLO {
            let options = &self.data.host.options;
            self.data.tclo.open(TcloChan::Backdoor(chan.id), options);
        }
    }

    fn closed(&mut self, chan: ChannelRef) {
        if chan.proto == proto::TCLO {
            tclo_closed(self.vm, &mut self.data.tclo, TcloChan::Backdoor(chan.id));
        }
    }
}

/// A snapshot of a VM for `hvsim vm show` (the contract's fields).
pub fn show_json(vm: &Vm) -> serde_json::Value {
    use protocol::guestinfo_key as k;
    let st = vm.lock();
    let d = &st.data;
    let text = |key: u32| {
        d.guest.get(&key).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .to_string()
        })
    };
    let vars: serde_json::Map<String, serde_json::Value> = d
        .vars
        .iter()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned().into()))
        .collect();
    let raw: serde_json::Map<String, serde_json::Value> = d
        .guest
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v).into_owned().into(),
            )
        })
        .collect();
    serde_json::json!({
        "name": vm.info.name,
        "uuid": crate::config::format_uuid(&vm.info.uuid),
        "model": vm.info.model,
        "power": match d.power { Power::On => "on", Power::Off => "off" },
        "boot": {
            "target": format!("{:?}", d.boot.target).to_lowercase(),
            "persistent": d.boot.persistent,
            "uefi": d.boot.uefi,
        },
        "pending_graceful": d.pending_soft.map(|a| format!("{a:?}")),
        "clipboard": { "enabled": d.clipboard.enabled(), "length": d.clipboard.text().len() },
        "tools": {
            "status": if tools_running(d) { "running" } else { "not-running" },
            "tclo_transport": transport(d).map(|t| match t { TcloTransport::Backdoor => "backdoor", TcloTransport::Vsock => "vsock" }),
            "version": d.tools.version,
            "version_type": d.tools.version_type,
            "unified_loop": d.tools.unified_loop,
            "version_string": d.tools.version.as_deref().and_then(|v| v.parse::<u32>().ok()).map(|v| format!("{}.{}.{}", v >> 10, (v >> 5) & 0x1f, v & 0x1f)),
            "capabilities": d.tools.capabilities,
            "last_state_change": d.tools.last_state_change.as_ref().map(|(ok, s)| serde_json::json!({"ok": ok, "state": s})),
        },
        "guest": {
            "hostname": text(k::DNS_NAME),
            "os_name": text(k::OS_NAME).or_else(|| d.os_detailed.as_ref().map(|o| o.0.clone())),
            "os_full_name": text(k::OS_NAME_FULL).or_else(|| d.os_detailed.as_ref().map(|o| o.1.clone())),
            "nics": d.nics.as_ref().map(|n| n.nics.iter().map(nic_json).collect::<Vec<_>>()).unwrap_or_default(),
            "routes": d.nics.as_ref().map(|n| n.routes.iter().map(|r| route_json(r, &n.nics)).collect::<Vec<_>>()).unwrap_or_default(),
            "dns": d.nics.as_ref().and_then(|n| n.dns.as_ref()).map(dns_json),
            "nic_error": d.nic_error,
            "uptime_s": d.uptime.map(|(h, at)| h / 100 + at.elapsed().as_secs()),
            "os_detailed": d.os_detailed.as_ref().map(|o| o.2.clone()),
            "disks": d.disks,
            "memory": d.memory.as_ref().map(|(m, at)| memory_json(m, *at)),
            "memory_error": d.memory_error,
            "raw": raw,
        },
        "guestinfo": vars,
        "snapshots": d.backup.snapshots,
        "vmbackup": {
            "active": d.backup.active,
            "events": d.backup.events.iter().map(|e| format!("{} {}", e.name, e.code)).collect::<Vec<_>>(),
            "keep_alives": d.backup.keep_alives,
        },
        "appinfo": appinfo_json(d.vars.get(protocol::appinfo::KEY).map(|v| &v[..])),
        "customization": d.customization.as_ref().map(crate::customize::Customization::json),
        "backdoor_socket": vm.info.backdoor_socket,
        "channels": st.channels.open_count(),
        "backdoor": { "calls": vm.calls() },
        "vsock": { "rpci_messages": vm.vsock_rpci.load(std::sync::atomic::Ordering::Relaxed) },
        "memory_mb": vm.info.memory_mb,
        "hw_version": d.host.settings.hw_version,
        "options": d.host.options,
        "devices": d.host.devices.iter().map(|dev| serde_json::json!({
            "name": dev.name,
            "connected": dev.connected,
            "mac": dev.mac.as_ref().map(crate::vmhost::format_mac),
        })).collect::<Vec<_>>(),
        "namespaces": d.host.namespaces.iter().map(|(ns, kv)| {
            let m: serde_json::Map<String, serde_json::Value> = kv
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned().into()))
                .collect();
            (ns.clone(), serde_json::Value::Object(m))
        }).collect::<serde_json::Map<_, _>>(),
        "guest_sdk": {
            "session_id": format!("0x{:x}", d.host.session_id),
            "enabled": d.host.settings.resources.guest_sdk,
        },
        "connections": {
            "descriptors": vm.gate.used(),
            "cap": crate::budget::global().plan().per_vm_cap,
            "guaranteed": crate::budget::global().plan().guaranteed,
            "refused": vm.gate.refused(),
        },
        "log": {
            "suppressed_guest_lines": vm.suppressed().0,
            "suppressed_warnings": vm.suppressed().1,
        },
        "vmware_log": vm.vmware_log.path(),
    })
}

/// The guest's applications for `hvsim vm show` (`guestinfo.appInfo`,
/// parsed): null before any report, `{"enabled": false}` when the guest
/// cleared it, else the report (or why it could not be read).
fn appinfo_json(v: Option<&[u8]>) -> serde_json::Value {
    use protocol::appinfo;
    let Some(v) = v else {
        return serde_json::Value::Null;
    };
    match appinfo::parse(v) {
        Ok(None) => serde_json::json!({"enabled": false}),
        Ok(Some(a)) => serde_json::json!({
            "enabled": true,
            "update_counter": a.update_counter,
            "publish_time": a.publish_time,
            "count": a.applications.len(),
            "applications": a.applications.iter().map(|x| serde_json::json!({"name": x.name, "version": x.version})).collect::<Vec<_>>(),
        }),
        Err(e) => serde_json::json!({"enabled": true, "error": e.to_string()}),
    }
}

/// Memory statistics for `hvsim vm show`: the legacy header, each stat by
/// its vSphere name with value and unit, and the age of the report.
fn memory_json(m: &protocol::gueststats::GuestStats, at: Instant) -> serde_json::Value {
    use protocol::gueststats::{legacy_flag, unit_name, Value};
    let stats: serde_json::Map<String, serde_json::Value> = m
        .stats
        .iter()
        .map(|s| {
            let value = match &s.value {
                None => serde_json::Value::Null,
                Some(Value::Unsigned(v)) => (*v).into(),
                Some(Value::Signed(v)) => (*v).into(),
                Some(Value::Float(v)) => serde_json::Number::from_f64(*v)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number),
                Some(Value::Text(t)) => t.clone().into(),
                Some(v @ Value::Bytes(_)) => v.to_string().into(),
            };
            let unit = s
                .unit_text
                .clone()
                .or_else(|| s.unit.map(unit_name))
                .unwrap_or_default();
            (s.name(), serde_json::json!({"value": value, "unit": unit}))
        })
        .collect();
    serde_json::json!({
        "version": m.version,
        "legacy_total_kib": (m.flags & legacy_flag::MEMTOTAL != 0).then_some(m.mem_total_kib),
        "legacy_huge_pages_total": (m.flags & legacy_flag::HUGEPAGESTOTAL != 0).then_some(m.huge_pages_total),
        "age_s": at.elapsed().as_secs(),
        "stats": stats,
    })
}

fn addr_json(a: &protocol::nicinfo::TypedAddr) -> serde_json::Value {
    match a.to_ip() {
        Some(ip) => ip.to_string().into(),
        None => String::from_utf8_lossy(&a.addr).into_owned().into(),
    }
}

fn nic_json(n: &protocol::nicinfo::GuestNicV3) -> serde_json::Value {
    use protocol::nicinfo::{origin_name, status_name};
    serde_json::json!({
        "mac": n.mac,
        "ips": n.ips.iter().map(|ip| serde_json::json!({
            "addr": addr_json(&ip.addr),
            "prefix": ip.prefix,
            "origin": ip.origin.map(origin_name),
            "status": ip.status.map(status_name),
        })).collect::<Vec<_>>(),
        "dns": n.dns.as_ref().map(dns_json),
        "dhcp_v4": n.dhcp_v4.as_ref().map(|d| d.enabled),
        "dhcp_v6": n.dhcp_v6.as_ref().map(|d| d.enabled),
    })
}

fn route_json(
    r: &protocol::nicinfo::Route,
    nics: &[protocol::nicinfo::GuestNicV3],
) -> serde_json::Value {
    serde_json::json!({
        "dest": addr_json(&r.dest),
        "prefix": r.prefix,
        "gateway": r.next_hop.as_ref().map(addr_json),
        "nic": nics.get(r.if_index as usize).map(|n| n.mac.clone()),
        "metric": (r.metric != u32::MAX).then_some(r.metric),
    })
}

fn dns_json(d: &protocol::nicinfo::DnsConfig) -> serde_json::Value {
    serde_json::json!({
        "host_name": d.host_name,
        "domain_name": d.domain_name,
        "servers": d.servers.iter().map(addr_json).collect::<Vec<_>>(),
        "search": d.search,
    })
}
