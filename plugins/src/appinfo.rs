//! appInfo: the guest's running applications for the host
//! (`info-set guestinfo.appInfo <json>`, [`protocol::appinfo`]), as
//! vmtoolsd's appInfo plugin publishes them.
//!
//! * The list is the process table: each process's command name (the
//!   program's file name when its first argument is an absolute path, else
//!   that first argument as is, and for processes without a command line
//!   the `Name:` of /proc/PID/status), newest process first, version "".
//!   Duplicates are left out unless `remove-duplicates = false`; the
//!   document is capped at 62 KiB.
//! * Every `poll-interval` seconds (default 21600, 6 h). After a channel
//!   reset the next report comes after a random delay between 30 s and the
//!   interval, so a host resetting many cloned VMs at once does not get all
//!   their reports at once.
//! * `disabled = true`, `poll-interval = 0` or the host's
//!   `Set_Option enableAppInfo 0` stop the reports and clear the key (an
//!   empty value); `Set_Option enableAppInfo 1` or a channel reset (the VM
//!   may have moved to a host that never says) turn them on again. The key
//!   is cleared when the agent stops, too.
//! * Idle cost: one deadline; nothing is read between reports.

use std::time::{Duration, Instant, SystemTime};

use protocol::appinfo::{self, App};
use serde::Deserialize;

use crate::{Context, Plugin};

/// Default interval between two reports (vmtoolsd's 6 hours).
pub const DEFAULT_INTERVAL_SECS: u64 = 6 * 3600;

/// Shortest delay after a channel reset.
const MIN_RESET_DELAY_SECS: u64 = 30;

/// Longest interval vmtoolsd accepts (a glib timeout in ms in a gint).
const MAX_INTERVAL_SECS: u64 = (i32::MAX / 1000) as u64;

/// The `[appinfo]` config section (the keys of vmtoolsd's tools.conf).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppInfoConfig {
    /// No reports at all.
    pub disabled: bool,
    /// Seconds between reports; 0 turns them off.
    #[serde(rename = "poll-interval")]
    pub poll_interval: u64,
    /// Leave out an application whose name and version were already listed.
    #[serde(rename = "remove-duplicates")]
    pub remove_duplicates: bool,
}

impl Default for AppInfoConfig {
    fn default() -> Self {
        AppInfoConfig {
            disabled: false,
            poll_interval: DEFAULT_INTERVAL_SECS,
            remove_duplicates: true,
        }
    }
}

/// The command name of a process from its /proc/PID/cmdline and, when that
/// is empty (kernel threads), its /proc/PID/status; `None` without either.
pub fn command_name(cmdline: &[u8], status: &[u8]) -> Option<String> {
    let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    if cmdline.is_empty() {
        let line = status.split(|&b| b == b'\n').next()?;
        let name = line
            .strip_prefix(b"Name:")?
            .trim_ascii_start()
            .trim_ascii_end();
        return Some(String::from_utf8_lossy(name).into_owned());
    }
    let name = match first.iter().rposition(|&b| b == b'/') {
        Some(slash) if first.first() == Some(&b'/') => &first[slash + 1..],
        _ => first,
    };
    Some(String::from_utf8_lossy(name).into_owned())
}

/// The applications running now, newest process first.
pub fn running_apps() -> Vec<App> {
    let mut pids: Vec<u32> = match std::fs::read_dir("/proc") {
        Ok(d) => d
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(e) => {
            log::warn!("appinfo: cannot list /proc: {e}");
            return Vec::new();
        }
    };
    pids.sort_unstable_by(|a, b| b.cmp(a));
    let mut apps = Vec::with_capacity(pids.len());
    let mut buf = Vec::new();
    for pid in pids {
        // A process may end while it is read: skip it then.
        if read_head(&format!("/proc/{pid}/cmdline"), &mut buf).is_err() {
            continue;
        }
        let name = if buf.is_empty() {
            let mut status = Vec::new();
            if read_head(&format!("/proc/{pid}/status"), &mut status).is_err() {
                continue;
            }
            command_name(&[], &status)
        } else {
            command_name(&buf, &[])
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            apps.push(App {
                name,
                version: String::new(),
            });
        }
    }
    apps
}

/// The first 4 KiB of a file (enough for a first argument or a status
/// line).
fn read_head(path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(buf)
        .map(|_| ())
}

/// A number in [lo, hi) from the kernel's random source (the clock when
/// that fails).
fn random_between(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_NONBLOCK) };
    let r = if n == 8 {
        u64::from_ne_bytes(b)
    } else {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into())
    };
    lo + r % (hi - lo).max(1)
}

/// The appInfo plugin.
#[derive(Debug)]
pub struct AppInfoPlugin {
    cfg: AppInfoConfig,
    /// The host has not switched appInfo off.
    enabled_in_host: bool,
    /// The interval in force (0: off).
    interval: u64,
    /// The next report.
    next: Option<Instant>,
    /// The key is to be cleared then (when a change of config or the host
    /// turned the reports off).
    clear: Option<Instant>,
    /// Reports sent since the agent started.
    counter: u64,
    /// Where the process list comes from (tests give their own).
    source: fn() -> Vec<App>,
}

impl AppInfoPlugin {
    /// A plugin with this config; the first report is scheduled one
    /// interval ahead, and a channel reset brings it forward.
    pub fn new(cfg: AppInfoConfig) -> AppInfoPlugin {
        Self::with_source(cfg, running_apps)
    }

    /// Like [`AppInfoPlugin::new`], listing applications with `source`.
    pub fn with_source(cfg: AppInfoConfig, source: fn() -> Vec<App>) -> AppInfoPlugin {
        let mut p = AppInfoPlugin {
            cfg,
            enabled_in_host: true,
            interval: 0,
            next: None,
            clear: None,
            counter: 0,
            source,
        };
        p.retune(true);
        p.clear = None;
        p
    }

    /// Apply a new config (SIGHUP).
    pub fn set_config(&mut self, cfg: AppInfoConfig) {
        self.cfg = cfg;
        self.retune(false);
    }

    /// The interval the config and the host allow now (0: off).
    fn wanted(&self) -> u64 {
        if !self.enabled_in_host || self.cfg.disabled {
            return 0;
        }
        match self.cfg.poll_interval {
            i if i > MAX_INTERVAL_SECS => {
                log::warn!("appinfo: invalid poll-interval {i}; using {DEFAULT_INTERVAL_SECS}");
                DEFAULT_INTERVAL_SECS
            }
            i => i,
        }
    }

    /// Reschedule when the interval changed (or always with `force`); a
    /// change to off clears the key.
    fn retune(&mut self, force: bool) {
        let want = self.wanted();
        if force || want != self.interval {
            self.schedule(want);
        }
    }

    fn schedule(&mut self, secs: u64) {
        if secs > 0 {
            if secs != self.interval {
                log::info!("appinfo: a report every {secs} s");
            }
            self.next = Some(Instant::now() + Duration::from_secs(secs));
        } else {
            if self.interval > 0 {
                log::info!("appinfo: reports off");
                self.clear = Some(Instant::now());
            }
            self.next = None;
        }
        self.interval = secs;
    }

    fn send(&self, ctx: &mut dyn Context, value: &str) {
        let msg = format!("info-set {} {value}", appinfo::KEY);
        if let Err(e) = ctx.rpci(msg.as_bytes()) {
            log::warn!("appinfo: the host did not take the report: {e}");
        }
    }

    /// Gather and send one report.
    fn report(&mut self, ctx: &mut dyn Context) {
        self.counter += 1;
        let apps = (self.source)();
        let (doc, dropped) = appinfo::document(
            &apps,
            self.counter,
            &appinfo::utc_millis(SystemTime::now()),
            self.cfg.remove_duplicates,
        );
        if dropped > 0 {
            log::warn!(
                "appinfo: the report reached {} bytes; {dropped} applications left out",
                appinfo::MAX_SIZE
            );
        }
        self.send(ctx, &doc);
    }
}

impl Plugin for AppInfoPlugin {
    fn name(&self) -> &'static str {
        "appinfo"
    }

    fn set_option(&mut self, _ctx: &mut dyn Context, key: &str, value: &str) -> Option<bool> {
        if key != "enableAppInfo" {
            return None;
        }
        let on = match value {
            "1" => true,
            "0" => false,
            _ => return Some(false),
        };
        if on != self.enabled_in_host {
            self.enabled_in_host = on;
            log::info!(
                "appinfo: {} by the host",
                if on { "enabled" } else { "disabled" }
            );
            self.retune(true);
        }
        Some(true)
    }

    fn on_reset(&mut self, ctx: &mut dyn Context) {
        if self.next.is_some() {
            let delay = if self.interval > MIN_RESET_DELAY_SECS {
                random_between(MIN_RESET_DELAY_SECS, self.interval)
            } else {
                self.interval
            };
            log::debug!("appinfo: next report in {delay} s");
            self.next = Some(Instant::now() + Duration::from_secs(delay));
        } else if !self.enabled_in_host {
            // Maybe a host that never sends the option: on again.
            self.enabled_in_host = true;
            self.retune(true);
        }
        if self.clear.take().is_some() {
            self.send(ctx, "");
        }
    }

    fn on_shutdown(&mut self, ctx: &mut dyn Context) {
        self.next = None;
        self.send(ctx, "");
    }

    fn deadline(&self) -> Option<Instant> {
        match (self.clear, self.next) {
            (Some(c), Some(n)) => Some(c.min(n)),
            (c, n) => c.or(n),
        }
    }

    fn on_deadline(&mut self, ctx: &mut dyn Context, now: Instant) {
        if self.clear.is_some_and(|c| now >= c) {
            self.clear = None;
            self.send(ctx, "");
        }
        if self.next.is_some_and(|n| now >= n) {
            self.report(ctx);
            self.retune(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostCallError;

    #[derive(Default)]
    struct Host(Vec<String>);

    impl Context for Host {
        fn rpci(&mut self, msg: &[u8]) -> Result<Vec<u8>, HostCallError> {
            self.0.push(String::from_utf8_lossy(msg).into_owned());
            Ok(Vec::new())
        }
        fn backdoor(&mut self, r: protocol::Regs) -> Result<protocol::Regs, HostCallError> {
            Ok(r)
        }
    }

    fn apps() -> Vec<App> {
        ["b", "a", "b"]
            .iter()
            .map(|n| App {
                name: (*n).into(),
                version: String::new(),
            })
            .collect()
    }

    #[test]
    fn command_names_as_vmtoolsd() {
        assert_eq!(
            command_name(b"/usr/sbin/sshd\0-D\0", b"").as_deref(),
            Some("sshd")
        );
        assert_eq!(
            command_name(b"sshd: root@pts/1", b"").as_deref(),
            Some("sshd: root@pts/1")
        );
        assert_eq!(command_name(b"./run\0x\0", b"").as_deref(), Some("./run"));
        assert_eq!(
            command_name(b"", b"Name:\tkthreadd\nUmask:\t0000\n").as_deref(),
            Some("kthreadd")
        );
        assert_eq!(command_name(b"", b""), None);
        // This very process is listed.
        let me = std::env::current_exe().unwrap();
        let me = me.file_name().unwrap().to_string_lossy();
        assert!(running_apps().iter().any(|a| a.name == me));
    }

    #[test]
    fn one_deadline_reports_and_the_host_switches_it() {
        let mut p = AppInfoPlugin::with_source(
            AppInfoConfig {
                poll_interval: 5,
                ..AppInfoConfig::default()
            },
            apps,
        );
        let mut h = Host::default();
        let d = p.deadline().expect("scheduled");
        assert!(d > Instant::now() + Duration::from_secs(4));
        // A short interval is kept after a reset (no random delay under 30 s).
        p.on_reset(&mut h);
        assert!(h.0.is_empty());
        p.on_deadline(&mut h, d + Duration::from_secs(6));
        assert_eq!(h.0.len(), 1);
        let doc = h.0[0].strip_prefix("info-set guestinfo.appInfo ").unwrap();
        let parsed = appinfo::parse(doc.as_bytes()).unwrap().unwrap();
        assert_eq!(parsed.update_counter, 1);
        assert_eq!(parsed.applications.len(), 2, "duplicates removed");
        assert!(p.deadline().is_some());
        // Off by the host: the key is cleared and nothing is scheduled.
        assert_eq!(p.set_option(&mut h, "enableAppInfo", "0"), Some(true));
        let now = p.deadline().expect("the clearing is due");
        assert!(now <= Instant::now());
        p.on_deadline(&mut h, now);
        assert_eq!(h.0.last().unwrap(), "info-set guestinfo.appInfo ");
        assert_eq!(p.deadline(), None);
        assert_eq!(p.set_option(&mut h, "enableAppInfo", "x"), Some(false));
        assert_eq!(p.set_option(&mut h, "other", "1"), None);
        // A reset turns it on again.
        p.on_reset(&mut h);
        assert!(p.deadline().is_some());
    }

    #[test]
    fn long_intervals_get_a_random_delay_after_a_reset() {
        let mut p = AppInfoPlugin::with_source(AppInfoConfig::default(), apps);
        let mut h = Host::default();
        let start = Instant::now();
        p.on_reset(&mut h);
        let d = p.deadline().unwrap();
        assert!(d >= start + Duration::from_secs(30));
        assert!(d < start + Duration::from_secs(DEFAULT_INTERVAL_SECS + 1));
        // Disabled in the config: nothing scheduled, nothing sent.
        let mut p = AppInfoPlugin::with_source(
            AppInfoConfig {
                disabled: true,
                ..AppInfoConfig::default()
            },
            apps,
        );
        p.on_reset(&mut h);
        assert_eq!(p.deadline(), None);
        assert!(h.0.is_empty());
    }
}
