//! A small `log` backend for the daemon: env_logger's line format
//! (`[2026-11-23T12:46:26Z WARN  plugins::guestinfo] text`) and its filter
//! syntax (`level`, `target=level`, comma-separated, longest target prefix
//! wins), without its dependencies (terminal styling, a date library): the
//! daemon's resident code stays small.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Filter directives: a default level and per-target levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    targets: Vec<(String, LevelFilter)>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            default: LevelFilter::Error,
            targets: Vec::new(),
        }
    }
}

fn level(s: &str) -> Option<LevelFilter> {
    s.trim().parse().ok()
}

impl Filter {
    /// Add the directives of `spec` (env_logger's syntax); later directives
    /// win over earlier ones for the same target. Unknown levels are skipped
    /// with a note on stderr.
    pub fn parse(&mut self, spec: &str) {
        for d in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            match d.split_once('=') {
                None => match level(d) {
                    Some(l) => self.default = l,
                    // A bare target means "everything from it".
                    None => self.set(d, LevelFilter::Trace),
                },
                Some((t, l)) => match level(l) {
                    Some(l) => self.set(t.trim(), l),
                    None => eprintln!("vm-agent: ignoring log directive {d:?}"),
                },
            }
        }
    }

    fn set(&mut self, target: &str, l: LevelFilter) {
        self.targets.retain(|(t, _)| t != target);
        self.targets.push((target.to_owned(), l));
    }

    /// The level in force for `target`.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .filter(|(t, _)| {
                target == t
                    || target
                        .strip_prefix(t.as_str())
                        .is_some_and(|r| r.starts_with("::"))
            })
            .max_by_key(|(t, _)| t.len())
            .map_or(self.default, |(_, l)| *l)
    }

    /// The most verbose level any target can log at.
    pub fn max(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::Ord::max)
    }
}

#[derive(Debug)]
struct Logger(Filter);

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.0.level_for(m.target())
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let lvl = match r.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // One write per line, so lines from a forked child never interleave.
        let line = format!("[{} {lvl} {}] {}\n", utc_now(), r.target(), r.args());
        hold_or_write(line);
    }

    fn flush(&self) {}
}

/// Lines held while file systems are frozen, and how many did not fit.
static HELD: std::sync::Mutex<(Vec<String>, usize)> = std::sync::Mutex::new((Vec::new(), 0));
/// At most this many lines are held while frozen (the rest are counted).
const MAX_HELD: usize = 512;

/// While vmbackup holds file systems frozen, stderr may lead to a frozen
/// disk (journald, a redirected file): writing could block the agent with
/// the guest frozen (open-vm-tools #650). Lines wait in memory until the
/// thaw and go out, in order, with the first line after it.
fn hold_or_write(line: String) {
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if plugins::vmbackup::io_frozen() {
        if held.0.len() < MAX_HELD {
            held.0.push(line);
        } else {
            held.1 += 1;
        }
        return;
    }
    let mut err = std::io::stderr().lock();
    for l in held.0.drain(..) {
        let _ = err.write_all(l.as_bytes());
    }
    if held.1 > 0 {
        let note = format!(
            "[{} WARN  agent::logger] {} log line(s) dropped while file systems were frozen\n",
            utc_now(),
            std::mem::take(&mut held.1)
        );
        let _ = err.write_all(note.as_bytes());
    }
    let _ = err.write_all(line.as_bytes());
}

/// Install the logger with `config` directives, then `RUST_LOG`'s (which win).
pub fn init(config: &str) {
    let mut f = Filter::default();
    f.parse(config);
    if let Ok(env) = std::env::var("RUST_LOG") {
        f.parse(&env);
    }
    let max = f.max();
    if log::set_logger(Box::leak(Box::new(Logger(f)))).is_ok() {
        log::set_max_level(max);
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the epoch as RFC 3339 UTC (Howard Hinnant's civil_from_days).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_437_986), "2026-11-23T12:46:26Z");
    }

    #[test]
    fn filters() {
        let mut f = Filter::default();
        f.parse("info");
        assert_eq!(f.level_for("agent::daemon"), LevelFilter::Info);
        f.parse("plugins=debug, plugins::netlink=off,agent::daemon");
        assert_eq!(f.level_for("plugins::guestinfo"), LevelFilter::Debug);
        assert_eq!(f.level_for("plugins::netlink"), LevelFilter::Off);
        assert_eq!(f.level_for("pluginsx"), LevelFilter::Info);
        assert_eq!(f.level_for("agent::daemon::tclo"), LevelFilter::Trace);
        assert_eq!(f.max(), LevelFilter::Trace);
        f.parse("warn,plugins=bogus");
        assert_eq!(f.level_for("agent"), LevelFilter::Warn);
        assert_eq!(f.level_for("plugins"), LevelFilter::Debug);
    }
}
