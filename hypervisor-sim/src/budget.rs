//! The process's descriptor budget: every open file counts against one
//! limit (RLIMIT_NOFILE), so one guest holding connections, or one network
//! client, must not take what the control socket and the other VMs need.
//!
//! At start [`raise_nofile`] lifts the soft limit to the hard one (systemd
//! gives services 1024 soft by default). [`check_start`] says, before any
//! socket is bound, whether the VMs of the config fit, and if not, exactly
//! what to set. Once everything is bound, [`plan`] splits what is left:
//!
//! | share                | size                                             | who takes it |
//! |----------------------|--------------------------------------------------|--------------|
//! | fixed                | descriptors open after start (measured)          | listeners, state, stdio |
//! | control              | [`CONTROL_CONNECTIONS`] × 2                      | `hvsim vm`, `hvsim exec` |
//! | misc                 | [`MISC_RESERVE`]                                 | media, exec sessions, log rotation, SQLite |
//! | network              | each listener's cap ([`Budget::listener_cap`]) | CIM, Redfish, NBD connections |
//! | guests               | the rest                                         | backdoor and vsock connections |
//!
//! The guest share is split again: each VM is guaranteed a few connections
//! ([`Plan::guaranteed`]) no other VM can take, the rest is shared, and one
//! VM may hold at most [`Plan::per_vm_cap`] (half the shared part plus its
//! guarantee). A connection over a cap is refused with a reason, counted
//! per VM (`hvsim vm show --json`, `connections.refused`) and logged once
//! per [`REPORT_INTERVAL`].
//!
//! Accept loops use [`AcceptBackoff`]: when the process or the system is
//! out of descriptors (EMFILE, ENFILE) the pending connection stays queued
//! and the loop sleeps, doubling up to a second, instead of spinning.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::ratelimit::Every;

/// Concurrent control connections (each holds two descriptors).
pub const CONTROL_CONNECTIONS: usize = 32;
/// Descriptors kept for everything that is neither a listener nor a
/// connection: virtual media images, `hvsim exec` sessions (pidfds,
/// seccomp listeners), SQLite's journal, log rotation, /proc reads.
pub const MISC_RESERVE: usize = 64;
/// Most connections one VM may hold, whatever the limit (one thread each).
pub const MAX_PER_VM: usize = 1024;
/// Most connections a VM is guaranteed.
pub const MAX_GUARANTEED: usize = 4;
/// How often refusals and accept errors are logged, at most.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Why the budget cannot hold the configuration.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// Too few descriptors for the VMs and services configured.
    #[error("{vms} VMs need at least {need} open files ({vms} backdoor sockets, {vms} for one guest connection each, {bmcs} for the BMCs configured with ipmi.listen, {host} for the host: state, control socket and connections, network listeners and their connections), but the open-file limit is {soft} (hard limit {hard}, which hvsim cannot raise). Set LimitNOFILE={suggest} or more in hvsim.service (`systemctl edit hvsim`), or run `ulimit -n {suggest}` (or `prlimit --nofile={suggest}`) before `hvsim serve`; at this limit at most {fit} VMs fit")]
    TooFew {
        /// VMs configured.
        vms: usize,
        /// BMC sockets they need.
        bmcs: usize,
        /// Host share.
        host: usize,
        /// Total need.
        need: usize,
        /// Soft limit after raising.
        soft: u64,
        /// Hard limit.
        hard: u64,
        /// A limit to set.
        suggest: usize,
        /// VMs that fit at this limit.
        fit: usize,
    },
}

/// The open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit (what counts).
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
    /// The soft limit before [`raise_nofile`] raised it.
    pub was: u64,
}

/// The current open-file limit.
pub fn nofile() -> io::Result<Nofile> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `r`, which we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Nofile {
        soft: r.rlim_cur,
        hard: r.rlim_max,
        was: r.rlim_cur,
    })
}

/// Raise the soft open-file limit to the hard limit (capped at what the
/// kernel allows a process, `fs.nr_open`); when that is not allowed, keep
/// the soft limit (logged).
pub fn raise_nofile() -> io::Result<Nofile> {
    let mut n = nofile()?;
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    let target = n.hard.min(nr_open);
    if target > n.soft {
        let r = libc::rlimit {
            rlim_cur: target,
            rlim_max: n.hard,
        };
        // SAFETY: setrlimit reads one rlimit we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } == 0 {
            n.soft = target;
        } else {
            // A sandbox may forbid it (systemd's ~@resources filter): the
            // budget works with what there is.
            log::warn!(
                "cannot raise the open-file limit from {} to {}: {}",
                n.soft,
                target,
                io::Error::last_os_error()
            );
        }
    }
    Ok(n)
}

/// Descriptors this process has open now.
pub fn open_fds() -> usize {
    // The directory handle read_dir holds is one of the entries.
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// What [`check_start`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartCheck {
    /// Start the default BMCs (false: the limit leaves no room for them).
    pub default_bmcs: bool,
}

/// Before binding: do `vms` VMs (with `explicit_bmcs` configured BMCs and
/// `default_bmcs` default ones) and `listeners` network listeners fit in
/// `limit`, with `open` descriptors open now?
pub fn check_start(
    limit: Nofile,
    open: usize,
    vms: usize,
    explicit_bmcs: usize,
    default_bmcs: usize,
    listeners: usize,
) -> Result<StartCheck, BudgetError> {
    let soft = usize::try_from(limit.soft).unwrap_or(usize::MAX);
    let cap = listener_cap_for(soft, usize::MAX);
    // Listener sockets, the control socket, the state lock and SQLite's
    // files, then the reserves.
    let host = open + listeners + 8 + 2 * CONTROL_CONNECTIONS + MISC_RESERVE + listeners * cap * 2;
    let need = |bmcs: usize| host + 2 * vms + bmcs;
    let all = explicit_bmcs + default_bmcs;
    if need(all) <= soft {
        return Ok(StartCheck { default_bmcs: true });
    }
    if need(explicit_bmcs) <= soft {
        return Ok(StartCheck {
            default_bmcs: false,
        });
    }
    let total = need(explicit_bmcs);
    let suggest = (total * 5 / 4).div_ceil(1024) * 1024;
    Err(BudgetError::TooFew {
        vms,
        bmcs: explicit_bmcs,
        host,
        need: total,
        soft: limit.soft,
        hard: limit.hard,
        suggest,
        fit: soft.saturating_sub(host) / 2,
    })
}

/// How the descriptors are shared out (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The soft limit.
    pub limit: usize,
    /// Descriptors open once every listener was bound.
    pub fixed: usize,
    /// Kept for control connections.
    pub control: usize,
    /// Kept for the network listeners' connections.
    pub network: usize,
    /// Kept for everything else.
    pub misc: usize,
    /// For guest connections (backdoor and vsock), all VMs together.
    pub guests: usize,
    /// VMs sharing [`Plan::guests`].
    pub vms: usize,
    /// Connections each VM can always open.
    pub guaranteed: usize,
    /// Most connections one VM may hold.
    pub per_vm_cap: usize,
}

impl Plan {
    /// No limits worth the name (before [`plan`], and in unit tests).
    pub const fn unlimited() -> Plan {
        Plan {
            limit: usize::MAX,
            fixed: 0,
            control: 0,
            network: 0,
            misc: 0,
            guests: usize::MAX / 2,
            vms: 0,
            guaranteed: 0,
            per_vm_cap: MAX_PER_VM,
        }
    }

    fn shared(&self) -> usize {
        self.guests
            .saturating_sub(self.vms.saturating_mul(self.guaranteed))
    }
}

/// Share `limit` out, with `fixed` descriptors open, `network` kept for the
/// listeners' connections and `vms` VMs.
pub fn plan(limit: usize, fixed: usize, network: usize, vms: usize) -> Plan {
    let control = 2 * CONTROL_CONNECTIONS;
    let guests = limit
        .saturating_sub(fixed)
        .saturating_sub(control)
        .saturating_sub(MISC_RESERVE)
        .saturating_sub(network);
    let guaranteed = if vms == 0 {
        0
    } else {
        (guests / (2 * vms)).clamp(1, MAX_GUARANTEED)
    };
    let mut p = Plan {
        limit,
        fixed,
        control,
        network,
        misc: MISC_RESERVE,
        guests,
        vms,
        guaranteed,
        per_vm_cap: 0,
    };
    p.per_vm_cap = (guaranteed + p.shared() / 2).clamp(guaranteed.max(1), MAX_PER_VM);
    p
}

/// Connection counts of one VM.
#[derive(Debug)]
pub struct Gate {
    used: AtomicUsize,
    refused: AtomicU64,
    report: Every,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            report: Every::new(REPORT_INTERVAL),
        }
    }
}

impl Gate {
    /// Descriptors its connections hold now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The VM holds its cap.
    #[error("this VM holds {0} connections, its cap")]
    VmCap(usize),
    /// The shared part of the guest share is taken.
    #[error("the host's {0} shared guest connections are taken")]
    Shared(usize),
}

/// Descriptors held for one connection; given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: &'static Budget,
    gate: Arc<Gate>,
    n: usize,
    /// How many of the `n` came from the shared part.
    shared: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.budget.release(&self.gate, self.n, self.shared);
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

#[derive(Debug)]
struct State {
    plan: Plan,
    shared_used: usize,
    network: usize,
}

/// The process-wide budget ([`global`]).
#[derive(Debug)]
pub struct Budget {
    state: Mutex<State>,
    limit: AtomicUsize,
}

/// The budget of this process.
pub fn global() -> &'static Budget {
    static B: OnceLock<Budget> = OnceLock::new();
    B.get_or_init(Budget::new)
}

fn listener_cap_for(limit: usize, configured: usize) -> usize {
    configured.min((limit / 32).clamp(8, 256))
}

impl Budget {
    /// A budget with no limits until [`Budget::set_plan`].
    pub fn new() -> Budget {
        Budget {
            state: Mutex::new(State {
                plan: Plan::unlimited(),
                shared_used: 0,
                network: 0,
            }),
            limit: AtomicUsize::new(usize::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Set the limit network listener caps derive from (before they start).
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The connection cap of a network listener configured for
    /// `configured`: at most a 32nd of the limit (8 to 256). `fds` is what
    /// one connection holds; the listener's share is kept from the guests'.
    pub fn listener_cap(&self, configured: usize, fds: usize) -> usize {
        let cap = listener_cap_for(self.limit.load(Ordering::Relaxed), configured);
        self.lock().network += cap * fds;
        cap
    }

    /// Descriptors kept for the network listeners so far.
    pub fn network_reserve(&self) -> usize {
        self.lock().network
    }

    /// Put `plan` in force.
    pub fn set_plan(&self, plan: Plan) {
        self.lock().plan = plan;
    }

    /// The plan in force.
    pub fn plan(&self) -> Plan {
        self.lock().plan
    }

    /// Take `n` descriptors for a connection of the VM behind `gate`;
    /// refused ones are counted and reported (`what` names the endpoint,
    /// `vm` the VM) once per [`REPORT_INTERVAL`].
    pub fn acquire(
        &'static self,
        gate: &Arc<Gate>,
        n: usize,
        vm: &str,
        what: &str,
    ) -> Result<Permit, Refused> {
        let r = {
            let mut s = self.lock();
            let used = gate.used.load(Ordering::Relaxed);
            let g = s.plan.guaranteed;
            let extra = (used + n).saturating_sub(g) - used.saturating_sub(g);
            if used + n > s.plan.per_vm_cap {
                Err(Refused::VmCap(s.plan.per_vm_cap))
            } else if s.shared_used + extra > s.plan.shared() {
                Err(Refused::Shared(s.plan.shared()))
            } else {
                s.shared_used += extra;
                gate.used.store(used + n, Ordering::Relaxed);
                Ok(extra)
            }
        };
        match r {
            Ok(shared) => Ok(Permit {
                budget: self,
                gate: gate.clone(),
                n,
                shared,
            }),
            Err(why) => {
                gate.refused.fetch_add(1, Ordering::Relaxed);
                if let Some(k) = gate.report.hit() {
                    log::warn!(
                        "{vm}: refused {k} {what} connection(s) in the last {} s: {why} (hvsim vm show {vm} --json: connections)",
                        REPORT_INTERVAL.as_secs()
                    );
                }
                Err(why)
            }
        }
    }

    fn release(&self, gate: &Gate, n: usize, shared: usize) {
        let mut s = self.lock();
        s.shared_used = s.shared_used.saturating_sub(shared);
        let used = gate.used.load(Ordering::Relaxed);
        gate.used.store(used.saturating_sub(n), Ordering::Relaxed);
    }
}

/// A cap on concurrent connections of one listener, and on those of each
/// peer address, so one client cannot hold them all.
#[derive(Debug)]
pub struct Slots {
    name: String,
    cap: usize,
    per_peer: usize,
    state: Mutex<(usize, HashMap<IpAddr, usize>)>,
    freed: std::sync::Condvar,
    refused: AtomicU64,
    report: Every,
}

/// One connection's place in [`Slots`]; given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.slots.lock();
        s.0 = s.0.saturating_sub(1);
        if let Some(ip) = self.peer {
            if let Some(c) = s.1.get_mut(&ip) {
                *c -= 1;
                if *c == 0 {
                    s.1.remove(&ip);
                }
            }
        }
        drop(s);
        self.slots.freed.notify_one();
    }
}

impl Slots {
    /// `cap` connections at once, at most `per_peer` from one address;
    /// `name` is for log lines.
    pub fn new(name: &str, cap: usize, per_peer: usize) -> Arc<Slots> {
        Arc::new(Slots {
            name: name.to_string(),
            cap,
            per_peer: per_peer.clamp(1, cap.max(1)),
            state: Mutex::new((0, HashMap::new())),
            freed: std::sync::Condvar::new(),
            refused: AtomicU64::new(0),
            report: Every::new(REPORT_INTERVAL),
        })
    }

    /// The per-peer cap for a listener of `cap` connections: a quarter,
    /// at least 2.
    pub fn per_peer_for(cap: usize) -> usize {
        (cap / 4).max(2)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, HashMap<IpAddr, usize>)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take a place for a connection from `peer` (`None`: not counted per
    /// peer); the reason when it is refused (counted, logged once per
    /// [`REPORT_INTERVAL`]).
    pub fn take(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Slot, String> {
        let why = {
            let mut s = self.lock();
            let from_peer = peer.map_or(0, |ip| s.1.get(&ip).copied().unwrap_or(0));
            if s.0 >= self.cap {
                format!("{} connections, the limit", self.cap)
            } else if peer.is_some() && from_peer >= self.per_peer {
                format!(
                    "{} connections from this address, the per-client limit",
                    self.per_peer
                )
            } else {
                s.0 += 1;
                if let Some(ip) = peer {
                    *s.1.entry(ip).or_default() += 1;
                }
                return Ok(Slot {
                    slots: self.clone(),
                    peer,
                });
            }
        };
        self.refused.fetch_add(1, Ordering::Relaxed);
        if let Some(k) = self.report.hit() {
            let who = peer.map_or(String::new(), |p| format!(" (last from {p})"));
            log::warn!(
                "{}: refused {k} connection(s) in the last {} s{who}: {why}",
                self.name,
                REPORT_INTERVAL.as_secs()
            );
        }
        Err(why)
    }

    /// Like [`Slots::take`] without a per-peer cap, but when every place
    /// is taken, wait up to `wait` for one to free (the connection waits
    /// in the listen backlog meanwhile) before refusing: for the control
    /// socket, whose clients are local and whose bursts are short.
    pub fn take_waiting(self: &Arc<Self>, wait: Duration) -> Result<Slot, String> {
        let deadline = std::time::Instant::now() + wait;
        let mut s = self.lock();
        while s.0 >= self.cap {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                drop(s);
                return self.take(None);
            }
            s = self
                .freed
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.0 += 1;
        Ok(Slot {
            slots: self.clone(),
            peer: None,
        })
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The caps: (all, per peer).
    pub fn caps(&self) -> (usize, usize) {
        (self.cap, self.per_peer)
    }
}

/// Pacing for an accept loop: no pause after a success, a growing one
/// (10 ms doubling to 1 s) while the process or system is out of
/// descriptors, 10 ms after other errors; errors are logged once per
/// [`REPORT_INTERVAL`] with their count.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: String,
    delay: Duration,
    report: Every,
}

/// Accept errors of every loop, for the benchmark and tests.
static ACCEPT_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Accept errors seen by every loop so far.
pub fn accept_errors() -> u64 {
    ACCEPT_ERRORS.load(Ordering::Relaxed)
}

impl AcceptBackoff {
    /// Pacing for the loop of `what` (a name for log lines).
    pub fn new(what: &str) -> AcceptBackoff {
        AcceptBackoff {
            what: what.to_string(),
            delay: Duration::ZERO,
            report: Every::new(REPORT_INTERVAL),
        }
    }

    /// An accept succeeded.
    pub fn accepted(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// An accept failed with `e`: log (maybe) and sleep.
    pub fn failed(&mut self, e: &io::Error) {
        ACCEPT_ERRORS.fetch_add(1, Ordering::Relaxed);
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        self.delay = if exhausted {
            (self.delay * 2).clamp(Duration::from_millis(10), Duration::from_secs(1))
        } else {
            Duration::from_millis(10)
        };
        if let Some(n) = self.report.hit() {
            let hint = if exhausted {
                "; out of descriptors: new connections wait (raise LimitNOFILE, see docs/hvsim-limits.md)"
            } else {
                ""
            };
            log::warn!(
                "{}: {n} accept error(s) in the last {} s: {e}{hint}",
                self.what,
                REPORT_INTERVAL.as_secs()
            );
        }
        std::thread::sleep(self.delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lim(soft: u64, hard: u64) -> Nofile {
        Nofile {
            soft,
            hard,
            was: soft,
        }
    }

    #[test]
    fn a_thousand_vms_do_not_fit_in_1024_and_the_error_says_what_to_set() {
        let e = check_start(lim(1024, 1024), 10, 1000, 0, 1000, 4).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("1000 VMs need at least"), "{msg}");
        assert!(msg.contains("open-file limit is 1024"), "{msg}");
        assert!(msg.contains("LimitNOFILE="), "{msg}");
        let BudgetError::TooFew { suggest, fit, .. } = e;
        assert!(suggest >= 2000 && suggest % 1024 == 0, "{suggest}");
        assert!(fit > 100 && fit < 500, "{fit}");
        // With the hard limit raised they fit, BMCs included.
        assert_eq!(
            check_start(lim(8192, 8192), 10, 1000, 0, 1000, 4).unwrap(),
            StartCheck { default_bmcs: true }
        );
        // Without room for default BMCs, the VMs start without them.
        assert_eq!(
            check_start(lim(1024, 1024), 10, 300, 0, 300, 2).unwrap(),
            StartCheck {
                default_bmcs: false
            }
        );
    }

    #[test]
    fn plan_keeps_a_guarantee_per_vm_and_caps_each_vm() {
        let p = plan(1024, 40, 100, 3);
        assert_eq!(p.guests, 1024 - 40 - 64 - 64 - 100);
        assert_eq!(p.guaranteed, MAX_GUARANTEED);
        assert!(p.per_vm_cap < p.guests, "{p:?}");
        // Two VMs at their cap still leave the third its guarantee.
        assert!(2 * (p.per_vm_cap - p.guaranteed) <= p.shared());
        let p = plan(20_000, 1100, 500, 1000);
        assert_eq!(p.per_vm_cap, MAX_PER_VM);
        assert!(p.guaranteed >= 4);
    }

    #[test]
    fn a_vm_at_its_cap_is_refused_and_others_keep_their_guarantee() {
        let b: &'static Budget = Box::leak(Box::new(Budget::new()));
        b.set_plan(Plan {
            limit: 100,
            fixed: 0,
            control: 0,
            network: 0,
            misc: 0,
            guests: 12,
            vms: 2,
            guaranteed: 2,
            per_vm_cap: 10,
        });
        let a = Arc::new(Gate::default());
        let c = Arc::new(Gate::default());
        let mut held = Vec::new();
        while let Ok(p) = b.acquire(&a, 1, "a", "test") {
            held.push(p);
        }
        assert_eq!(held.len(), 10);
        assert_eq!(a.refused(), 1);
        let c1 = b.acquire(&c, 1, "c", "test").expect("guaranteed");
        let c2 = b.acquire(&c, 1, "c", "test").expect("guaranteed");
        assert!(b.acquire(&c, 1, "c", "test").is_err(), "shared part taken");
        held.pop();
        let c3 = b.acquire(&c, 1, "c", "test").expect("one shared back");
        drop((c1, c2, c3));
        drop(held);
        assert_eq!(a.used(), 0);
        assert_eq!(b.lock().shared_used, 0);
    }

    #[test]
    fn accept_backoff_grows_while_out_of_descriptors_and_resets_on_success() {
        let mut b = AcceptBackoff::new("test");
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        let ms = Duration::from_millis;
        for want in [10, 20, 40] {
            b.failed(&emfile);
            assert_eq!(b.delay, ms(want));
        }
        b.accepted();
        assert_eq!(b.delay, Duration::ZERO);
        // Other errors: a short pause, no growth.
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        b.failed(&aborted);
        b.failed(&aborted);
        assert_eq!(b.delay, ms(10));
        assert!(accept_errors() >= 5);
    }

    #[test]
    fn slots_cap_each_peer() {
        let s = Slots::new("t", 4, 2);
        let p1: IpAddr = "127.0.0.2".parse().unwrap();
        let p2: IpAddr = "127.0.0.1".parse().unwrap();
        let a = s.take(Some(p1)).unwrap();
        let _b = s.take(Some(p1)).unwrap();
        assert!(s.take(Some(p1)).unwrap_err().contains("per-client"));
        let _c = s.take(Some(p2)).unwrap();
        let _d = s.take(Some(p2)).unwrap();
        assert!(s.take(None).unwrap_err().contains("the limit"));
        drop(a);
        let _e = s.take(Some(p1)).unwrap();
        assert_eq!(s.refused(), 2);
        // Waiting for a place: refused after the wait, served once one frees.
        assert!(s.take_waiting(Duration::from_millis(10)).is_err());
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.take_waiting(Duration::from_secs(60)).is_ok());
        drop(_e);
        assert!(t.join().unwrap());
    }
}
