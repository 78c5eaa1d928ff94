//! timesync: set the guest clock from the host's, like open-vm-tools'
//! timeSync plugin: a one-shot sync when the host asks for one (at start,
//! after resume) and, optionally, a periodic one.
//!
//! The host can also ask for one sync with the TCLO command
//! `Time_Synchronize N` (vmtoolsd's `TimeSyncTcloHandler`): N = 1 allows
//! stepping the clock back when the guest is ahead; any other number only
//! steps it forward. The reply is `OK ` when the clock is in sync (stepped
//! or close enough), `ERROR Unable to sync time` when the host time could
//! not be read or the clock not set, and `ERROR Unable to tokenize TimeSync
//! RPC data` without a number. With `enabled = false` the reply is `OK `
//! and nothing is done, as vmtoolsd answers with `[timeSync] disable-all`.
//!
//! The host's time comes from backdoor `GETTIMEFULL_WITH_LAG` (falling back
//! to `GETTIMEFULL`). Setting the clock goes through [`ClockSetter`], so tests
//! (and cautious admins) replace the real `clock_settime` with a stub or a
//! command. With `enabled = false` the clock is never touched, whatever the
//! host says.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::rpc::tclo_reply;
use protocol::{cmd, Regs, BDOOR_UNKNOWN};
use serde::Deserialize;

use crate::{Context, HostCallError, HostEvent, Plugin};

/// The `[timesync]` config section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeSyncConfig {
    /// Master switch: when false the guest clock is never changed.
    pub enabled: bool,
    /// Sync periodically even if the host does not ask (`synctime`).
    pub periodic: bool,
    /// Period of the periodic sync, seconds (vmtoolsd: 60).
    pub period_secs: u64,
    /// Step the clock only when it is off by more than this, ms.
    pub threshold_ms: u64,
    /// Instead of setting the clock, run this (`/bin/sh -c`) with the host
    /// time as `$1` (seconds since the epoch, with microseconds).
    pub set_clock_command: Option<String>,
}

impl Default for TimeSyncConfig {
    fn default() -> Self {
        TimeSyncConfig {
            enabled: true,
            periodic: false,
            period_secs: 60,
            threshold_ms: 1000,
            set_clock_command: None,
        }
    }
}

/// Reads and sets the guest clock.
pub trait ClockSetter: std::fmt::Debug {
    /// The guest's current time.
    fn now(&self) -> SystemTime;
    /// Step the guest clock to `t`.
    fn set(&mut self, t: SystemTime) -> std::io::Result<()>;
}

/// The real clock (`CLOCK_REALTIME`; needs CAP_SYS_TIME).
#[derive(Debug, Default)]
pub struct SystemClock;

impl ClockSetter for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn set(&mut self, t: SystemTime) -> std::io::Result<()> {
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(std::io::Error::other)?;
        let ts = libc::timespec {
            tv_sec: d.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
        };
        // SAFETY: `ts` is a valid timespec.
        if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A clock set by running a command (`set_clock_command`).
#[derive(Debug)]
pub struct CommandClock(pub String);

impl ClockSetter for CommandClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn set(&mut self, t: SystemTime) -> std::io::Result<()> {
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(std::io::Error::other)?;
        let arg = format!("{}.{:06}", d.as_secs(), d.subsec_micros());
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", &self.0, "set-clock", &arg])
            .stdin(std::process::Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "`{}` ended with {status}",
                self.0
            )))
        }
    }
}

/// The host's clock as the backdoor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTime {
    /// Host time.
    pub time: SystemTime,
    /// How far behind the guest's virtual time is, µs (0 without WITH_LAG).
    pub lag_us: u32,
}

/// Decode a GETTIMEFULL(_WITH_LAG) answer: seconds in esi:edx, µs in ebx.
/// `None` when the host does not know the command.
pub fn decode_time(r: &Regs, with_lag: bool) -> Option<HostTime> {
    if r.eax == BDOOR_UNKNOWN {
        return None;
    }
    let secs = (u64::from(r.esi) << 32) | u64::from(r.edx);
    let micros = u64::from(r.ebx);
    if micros >= 1_000_000 {
        return None;
    }
    Some(HostTime {
        time: UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
        lag_us: if with_lag { r.edi } else { 0 },
    })
}

/// Ask the host for its time.
pub fn host_time(ctx: &mut dyn Context) -> Result<Option<HostTime>, HostCallError> {
    let r = ctx.backdoor(Regs::command(cmd::GETTIMEFULL_WITH_LAG, 0))?;
    if let Some(t) = decode_time(&r, true) {
        return Ok(Some(t));
    }
    let r = ctx.backdoor(Regs::command(cmd::GETTIMEFULL, 0))?;
    Ok(decode_time(&r, false))
}

/// The timesync plugin.
#[derive(Debug)]
pub struct TimeSync {
    cfg: TimeSyncConfig,
    clock: Box<dyn ClockSetter + Send>,
    /// The host asked for periodic sync (`Set_Option synctime 1`).
    host_periodic: bool,
    /// Sync once at start (`time.synchronize.tools.startup`).
    sync_at_startup: bool,
    /// Sync once after resume (`time.synchronize.resume.disk`).
    sync_on_resume: bool,
    started: bool,
    next: Option<Instant>,
}

impl TimeSync {
    /// A plugin with this config, setting the clock as the config says.
    pub fn new(cfg: TimeSyncConfig) -> TimeSync {
        let clock: Box<dyn ClockSetter + Send> = match &cfg.set_clock_command {
            Some(c) => Box::new(CommandClock(c.clone())),
            None => Box::new(SystemClock),
        };
        TimeSync::with_clock(cfg, clock)
    }

    /// A plugin with an explicit clock (tests use a stub).
    pub fn with_clock(cfg: TimeSyncConfig, clock: Box<dyn ClockSetter + Send>) -> TimeSync {
        let mut t = TimeSync {
            cfg: TimeSyncConfig::default(),
            clock,
            host_periodic: false,
            sync_at_startup: true,
            sync_on_resume: true,
            started: false,
            next: None,
        };
        t.apply(cfg);
        t
    }

    /// Apply a new config (SIGHUP).
    pub fn set_config(&mut self, cfg: TimeSyncConfig) {
        let clock: Box<dyn ClockSetter + Send> = match &cfg.set_clock_command {
            Some(c) => Box::new(CommandClock(c.clone())),
            None => Box::new(SystemClock),
        };
        self.clock = clock;
        self.apply(cfg);
    }

    fn apply(&mut self, cfg: TimeSyncConfig) {
        self.cfg = cfg;
        self.reschedule(Instant::now());
    }

    fn periodic(&self) -> bool {
        self.cfg.enabled && (self.cfg.periodic || self.host_periodic)
    }

    fn reschedule(&mut self, now: Instant) {
        self.next = self
            .periodic()
            .then(|| now + Duration::from_secs(self.cfg.period_secs.max(1)));
    }

    /// Sync once: step the clock when it is off by more than the threshold.
    /// Returns the correction applied (guest behind is positive), if any.
    pub fn sync(&mut self, ctx: &mut dyn Context) -> Option<Duration> {
        if !self.cfg.enabled {
            log::debug!("timesync: disabled; clock left alone");
            return None;
        }
        self.sync_once(ctx, true).ok().flatten()
    }

    /// One sync (the plugin is enabled): step the clock when the guest is
    /// behind by more than the threshold, or ahead by more and
    /// `allow_backward`. `Ok(None)`: no step was needed; `Err`: the host
    /// time could not be read or the clock not set.
    fn sync_once(
        &mut self,
        ctx: &mut dyn Context,
        allow_backward: bool,
    ) -> Result<Option<Duration>, ()> {
        let host = match host_time(ctx) {
            Ok(Some(h)) => h,
            Ok(None) => {
                log::warn!("timesync: the host does not report its time");
                return Err(());
            }
            Err(e) => {
                log::debug!("timesync: {e}");
                return Err(());
            }
        };
        let guest = self.clock.now();
        let (off, ahead) = match host.time.duration_since(guest) {
            Ok(d) => (d, false),
            Err(e) => (e.duration(), true),
        };
        if off <= Duration::from_millis(self.cfg.threshold_ms) {
            log::debug!(
                "timesync: guest within {off:?} of the host (lag {} µs)",
                host.lag_us
            );
            return Ok(None);
        }
        if ahead && !allow_backward {
            log::info!("timesync: guest {off:?} ahead of the host; not stepping back");
            return Ok(None);
        }
        match self.clock.set(host.time) {
            Ok(()) => {
                log::info!(
                    "timesync: stepped the clock {} by {off:?}",
                    if ahead { "back" } else { "forward" }
                );
                Ok(Some(off))
            }
            Err(e) => {
                log::error!("timesync: cannot set the clock: {e}");
                Err(())
            }
        }
    }

    /// `Time_Synchronize N`: the TCLO reply.
    pub fn synchronize_command(&mut self, ctx: &mut dyn Context, args: &[u8]) -> Vec<u8> {
        let Some(n) = first_uint(args) else {
            return tclo_reply(false, b"Unable to tokenize TimeSync RPC data");
        };
        if !self.cfg.enabled {
            log::info!("timesync: Time_Synchronize {n} ignored: time sync is disabled");
            return tclo_reply(true, b"");
        }
        match self.sync_once(ctx, n == 1) {
            Ok(_) => tclo_reply(true, b""),
            Err(()) => tclo_reply(false, b"Unable to sync time"),
        }
    }
}

/// The first space-separated token as a u32 (decimal, or hex with 0x, as
/// strtoul with base 0 reads it in vmtoolsd's StrUtil_StrToUint).
fn first_uint(args: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(args).ok()?.trim_end_matches('\0');
    let tok = text.split(' ').find(|t| !t.is_empty())?;
    match tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None if tok.bytes().all(|b| b.is_ascii_digit()) => tok.parse().ok(),
        None => None,
    }
}

fn on_off(v: &str) -> Option<bool> {
    match v {
        "1" | "TRUE" | "true" => Some(true),
        "0" | "FALSE" | "false" => Some(false),
        _ => None,
    }
}

impl Plugin for TimeSync {
    fn name(&self) -> &'static str {
        "timesync"
    }

    fn tclo_commands(&self) -> &'static [&'static str] {
        &["Time_Synchronize"]
    }

    fn on_tclo(&mut self, ctx: &mut dyn Context, _cmd: &str, args: &[u8]) -> Vec<u8> {
        self.synchronize_command(ctx, args)
    }

    fn set_option(&mut self, ctx: &mut dyn Context, key: &str, value: &str) -> Option<bool> {
        let known = matches!(
            key,
            "synctime"
                | "time.synchronize.tools.startup"
                | "time.synchronize.resume.disk"
                | "time.synchronize.continue"
                | "time.synchronize.restore"
                | "time.synchronize.shrink"
                | "time.synchronize.tools.enable"
        );
        if !known {
            return None;
        }
        let Some(on) = on_off(value) else {
            return Some(false);
        };
        match key {
            "synctime" => {
                let was = self.host_periodic;
                self.host_periodic = on;
                if on && !was {
                    // Turning periodic sync on syncs at once, as vmtoolsd does.
                    self.sync(ctx);
                }
                self.reschedule(Instant::now());
            }
            "time.synchronize.tools.startup" => {
                self.sync_at_startup = on;
                if on && !self.started {
                    self.started = true;
                    self.sync(ctx);
                }
            }
            "time.synchronize.resume.disk" => self.sync_on_resume = on,
            _ => {}
        }
        Some(true)
    }

    fn on_event(&mut self, ctx: &mut dyn Context, event: HostEvent) {
        match event {
            HostEvent::Resumed if self.sync_on_resume => {
                self.sync(ctx);
            }
            HostEvent::Resumed | HostEvent::Frozen | HostEvent::Thawed => {}
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.next
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        self.sync(ctx);
        self.reschedule(now);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A guest clock `offset` behind real time that records what it was set to.
    #[derive(Debug)]
    struct StubClock {
        behind: Duration,
        set_to: Arc<Mutex<Vec<SystemTime>>>,
    }

    impl ClockSetter for StubClock {
        fn now(&self) -> SystemTime {
            SystemTime::now() - self.behind
        }
        fn set(&mut self, t: SystemTime) -> std::io::Result<()> {
            self.set_to.lock().unwrap().push(t);
            Ok(())
        }
    }

    /// A host answering GETTIMEFULL_WITH_LAG with real time.
    #[derive(Debug, Default)]
    struct Host {
        calls: usize,
        unknown_with_lag: bool,
    }

    impl Context for Host {
        fn rpci(&mut self, _: &[u8]) -> Result<Vec<u8>, HostCallError> {
            Ok(Vec::new())
        }
        fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError> {
            self.calls += 1;
            let c = regs.ecx as u16;
            if c == cmd::GETTIMEFULL_WITH_LAG && self.unknown_with_lag {
                return Ok(Regs {
                    eax: BDOOR_UNKNOWN,
                    ..regs
                });
            }
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            Ok(Regs {
                eax: 0,
                ebx: d.subsec_micros(),
                ecx: 1_000_000,
                edx: d.as_secs() as u32,
                esi: (d.as_secs() >> 32) as u32,
                edi: 250,
                ebp: 0,
            })
        }
    }

    fn plugin(cfg: TimeSyncConfig, behind: Duration) -> (TimeSync, Arc<Mutex<Vec<SystemTime>>>) {
        let set_to = Arc::new(Mutex::new(Vec::new()));
        let clock = StubClock {
            behind,
            set_to: set_to.clone(),
        };
        (TimeSync::with_clock(cfg, Box::new(clock)), set_to)
    }

    #[test]
    fn steps_a_clock_that_is_off() {
        let (mut t, set_to) = plugin(TimeSyncConfig::default(), Duration::from_secs(30));
        let mut host = Host::default();
        let fix = t.sync(&mut host).unwrap();
        assert!(fix >= Duration::from_secs(29), "{fix:?}");
        let set = set_to.lock().unwrap()[0];
        let err = SystemTime::now().duration_since(set).unwrap();
        assert!(err < Duration::from_secs(1), "{err:?}");
        // Fallback to GETTIMEFULL on a host without WITH_LAG.
        let mut old = Host {
            unknown_with_lag: true,
            ..Host::default()
        };
        assert!(t.sync(&mut old).is_some());
        assert_eq!(old.calls, 2);
    }

    #[test]
    fn leaves_a_close_clock_alone() {
        let (mut t, set_to) = plugin(TimeSyncConfig::default(), Duration::ZERO);
        assert!(t.sync(&mut Host::default()).is_none());
        assert!(set_to.lock().unwrap().is_empty());
    }

    #[test]
    fn disabled_never_touches_the_clock() {
        let cfg = TimeSyncConfig {
            enabled: false,
            periodic: true,
            ..TimeSyncConfig::default()
        };
        let (mut t, set_to) = plugin(cfg, Duration::from_secs(3600));
        let mut host = Host::default();
        assert_eq!(t.set_option(&mut host, "synctime", "1"), Some(true));
        assert_eq!(
            t.set_option(&mut host, "time.synchronize.tools.startup", "1"),
            Some(true)
        );
        t.on_event(&mut host, HostEvent::Resumed);
        t.on_deadline(&mut host, Instant::now());
        assert!(t.deadline().is_none());
        assert!(set_to.lock().unwrap().is_empty());
        assert_eq!(host.calls, 0);
    }

    #[test]
    fn host_options() {
        let (mut t, set_to) = plugin(TimeSyncConfig::default(), Duration::from_secs(10));
        let mut host = Host::default();
        assert_eq!(t.set_option(&mut host, "synctime", "maybe"), Some(false));
        assert_eq!(t.set_option(&mut host, "other", "1"), None);
        assert!(t.deadline().is_none());
        assert_eq!(t.set_option(&mut host, "synctime", "1"), Some(true));
        assert!(t.deadline().is_some());
        assert_eq!(set_to.lock().unwrap().len(), 1);
        t.on_event(&mut host, HostEvent::Resumed);
        assert_eq!(set_to.lock().unwrap().len(), 2);
    }

    #[test]
    fn time_synchronize_command() {
        // Guest 30 s behind: any argument steps it forward.
        let (mut t, set_to) = plugin(TimeSyncConfig::default(), Duration::from_secs(30));
        let mut host = Host::default();
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"0"), b"OK ");
        assert_eq!(set_to.lock().unwrap().len(), 1);
        // Arguments as vmtoolsd tokenizes them.
        for bad in [&b""[..], b" ", b"x", b"-1", b"1x"] {
            assert_eq!(
                t.on_tclo(&mut host, "Time_Synchronize", bad),
                b"ERROR Unable to tokenize TimeSync RPC data",
                "{bad:?}"
            );
        }
        assert_eq!(set_to.lock().unwrap().len(), 1);

        // Guest 30 s ahead: only "1" steps it back.
        let ahead = StubClock {
            behind: Duration::ZERO,
            set_to: set_to.clone(),
        };
        #[derive(Debug)]
        struct Ahead(StubClock);
        impl ClockSetter for Ahead {
            fn now(&self) -> SystemTime {
                SystemTime::now() + Duration::from_secs(30)
            }
            fn set(&mut self, t: SystemTime) -> std::io::Result<()> {
                self.0.set(t)
            }
        }
        let mut t = TimeSync::with_clock(TimeSyncConfig::default(), Box::new(Ahead(ahead)));
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"0"), b"OK ");
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"2 x"), b"OK ");
        assert_eq!(set_to.lock().unwrap().len(), 1);
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"1\0"), b"OK ");
        assert_eq!(set_to.lock().unwrap().len(), 2);
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"0x1"), b"OK ");
        assert_eq!(set_to.lock().unwrap().len(), 3);

        // A host without the time, or a clock that cannot be set.
        #[derive(Debug)]
        struct NoHost;
        impl Context for NoHost {
            fn rpci(&mut self, _: &[u8]) -> Result<Vec<u8>, HostCallError> {
                Ok(Vec::new())
            }
            fn backdoor(&mut self, regs: Regs) -> Result<Regs, HostCallError> {
                Ok(Regs {
                    eax: BDOOR_UNKNOWN,
                    ..regs
                })
            }
        }
        assert_eq!(
            t.on_tclo(&mut NoHost, "Time_Synchronize", b"1"),
            b"ERROR Unable to sync time"
        );
        let cmd = "exit 3".to_string();
        #[derive(Debug)]
        struct Behind(CommandClock);
        impl ClockSetter for Behind {
            fn now(&self) -> SystemTime {
                SystemTime::now() - Duration::from_secs(30)
            }
            fn set(&mut self, t: SystemTime) -> std::io::Result<()> {
                self.0.set(t)
            }
        }
        let mut t = TimeSync::with_clock(
            TimeSyncConfig::default(),
            Box::new(Behind(CommandClock(cmd))),
        );
        assert_eq!(
            t.on_tclo(&mut Host::default(), "Time_Synchronize", b"0"),
            b"ERROR Unable to sync time"
        );

        // Disabled: OK, and neither the host nor the clock is asked.
        let cfg = TimeSyncConfig {
            enabled: false,
            ..TimeSyncConfig::default()
        };
        let (mut t, set_to) = plugin(cfg, Duration::from_secs(3600));
        let mut host = Host::default();
        assert_eq!(t.on_tclo(&mut host, "Time_Synchronize", b"1"), b"OK ");
        assert!(set_to.lock().unwrap().is_empty());
        assert_eq!(host.calls, 0);
    }

    #[test]
    fn command_clock_gets_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t");
        let mut c = CommandClock(format!("echo \"$1\" > {}", out.display()));
        c.set(UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            "1700000000.000042\n"
        );
    }
}
