//! The BMC watchdog timer (IPMI 2.0 section 27): Set, Get and Reset
//! Watchdog Timer with a real countdown in 100 ms units, a pre-timeout
//! warning, timer use and expiration flags. Pure: the BMC calls
//! [`Watchdog::poll`] and carries out what it returns (the VM's power, a
//! SEL entry).

use std::time::{Duration, Instant};

use super::cc;

/// What the timer does on expiry (Set Watchdog Timer byte 2, bits 2:0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing but the flag and the log entry.
    None,
    /// Hard reset.
    Reset,
    /// Power down.
    PowerDown,
    /// Power cycle.
    PowerCycle,
}

impl Action {
    fn from_bits(b: u8) -> Option<Action> {
        Some(match b & 0x07 {
            0 => Action::None,
            1 => Action::Reset,
            2 => Action::PowerDown,
            3 => Action::PowerCycle,
            _ => return None,
        })
    }

    /// The Watchdog 2 sensor's event offset (spec table 42-3).
    pub fn event_offset(self) -> u8 {
        match self {
            Action::None => 0x00,
            Action::Reset => 0x01,
            Action::PowerDown => 0x02,
            Action::PowerCycle => 0x03,
        }
    }
}

/// Something [`Watchdog::poll`] saw happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The pre-timeout interval began: `interrupt` is the configured
    /// pre-timeout interrupt (1 SMI, 2 NMI, 3 messaging interrupt).
    PreTimeout {
        /// Pre-timeout interrupt type.
        interrupt: u8,
        /// Timer use.
        timer_use: u8,
        /// Whether to log it.
        log: bool,
    },
    /// The timer expired; the action is to be carried out.
    Expired {
        /// The timeout action.
        action: Action,
        /// Pre-timeout interrupt type (for the log entry).
        interrupt: u8,
        /// Timer use.
        timer_use: u8,
        /// Whether to log it ("don't log" bit clear).
        log: bool,
    },
}

/// The watchdog's state.
#[derive(Debug, Clone, Default)]
pub struct Watchdog {
    /// Byte 1 of Set Watchdog Timer: don't log (7), timer use (2:0);
    /// bit 6 here is "running" as Get Watchdog Timer reports it.
    timer_use: u8,
    /// Byte 2: pre-timeout interrupt (6:4), timeout action (2:0).
    actions: u8,
    /// Pre-timeout interval, seconds.
    pretimeout: u8,
    /// Timer use expiration flags (bits 1..5).
    expired: u8,
    /// Initial countdown, 100 ms units.
    initial: u16,
    /// Set at least once (Reset before Set is refused).
    initialised: bool,
    /// When the countdown reaches zero, while running.
    deadline: Option<Instant>,
    /// The pre-timeout of this countdown was reported.
    warned: bool,
    /// The countdown left when stopped (shown by Get while stopped).
    left: u16,
}

/// Completion code: attempt to start an un-initialised watchdog.
pub const UNINITIALISED: u8 = 0x80;

fn units(d: Duration) -> u16 {
    // Rounded up: a countdown with time left never shows 0.
    d.as_millis().div_ceil(100).min(u16::MAX as u128) as u16
}

impl Watchdog {
    /// Whether the countdown runs.
    pub fn running(&self) -> bool {
        self.deadline.is_some()
    }

    /// Set Watchdog Timer (App 0x24).
    pub fn set(&mut self, d: &[u8], now: Instant) -> Result<(), u8> {
        let Ok(d) = <[u8; 6]>::try_from(d) else {
            return Err(cc::BAD_LENGTH);
        };
        let timer_use = d[0] & 0x07;
        if timer_use == 0 || timer_use > 5 || d[0] & 0x38 != 0 {
            return Err(cc::INVALID_FIELD);
        }
        if Action::from_bits(d[1]).is_none() || (d[1] >> 4) & 0x07 > 3 || d[1] & 0x88 != 0 {
            return Err(cc::INVALID_FIELD);
        }
        let initial = u16::from_le_bytes([d[4], d[5]]);
        // The pre-timeout interval must fit in the countdown.
        if d[1] & 0x70 != 0 && d[2] as u32 * 10 > initial as u32 {
            return Err(cc::INVALID_FIELD);
        }
        let keep_running = d[0] & 0x40 != 0 && self.running();
        self.timer_use = d[0] & 0x87;
        self.actions = d[1] & 0x77;
        self.pretimeout = d[2];
        self.expired &= !(d[3] & 0x3E);
        self.initial = initial;
        self.initialised = true;
        self.warned = false;
        self.left = initial;
        self.deadline = keep_running.then(|| now + Duration::from_millis(initial as u64 * 100));
        Ok(())
    }

    /// Reset Watchdog Timer (App 0x22): start the countdown over from the
    /// initial value (and start a stopped timer).
    pub fn reset(&mut self, now: Instant) -> Result<(), u8> {
        if !self.initialised {
            return Err(UNINITIALISED);
        }
        self.warned = false;
        self.deadline = Some(now + Duration::from_millis(self.initial as u64 * 100));
        Ok(())
    }

    /// Get Watchdog Timer (App 0x25) response data.
    pub fn get(&self, now: Instant) -> Vec<u8> {
        let left = match self.deadline {
            Some(t) => units(t.saturating_duration_since(now)),
            None => self.left,
        };
        let mut out = vec![
            self.timer_use | ((self.running() as u8) << 6),
            self.actions,
            self.pretimeout,
            self.expired,
        ];
        out.extend_from_slice(&self.initial.to_le_bytes());
        out.extend_from_slice(&left.to_le_bytes());
        out
    }

    /// When [`Watchdog::poll`] next has something to do.
    pub fn next_due(&self) -> Option<Instant> {
        let t = self.deadline?;
        let pre = Duration::from_secs(self.pretimeout as u64);
        Some(if self.interrupt() != 0 && !self.warned {
            t.checked_sub(pre).unwrap_or(t)
        } else {
            t
        })
    }

    fn interrupt(&self) -> u8 {
        (self.actions >> 4) & 0x07
    }

    /// Advance to `now`: the pre-timeout, or expiry (which stops the timer
    /// and sets the timer use's expiration flag).
    pub fn poll(&mut self, now: Instant) -> Option<Event> {
        let t = self.deadline?;
        let timer_use = self.timer_use & 0x07;
        let log = self.timer_use & 0x80 == 0;
        if now >= t {
            self.deadline = None;
            self.left = 0;
            self.expired |= 1 << timer_use;
            // "Don't log" applies to one expiry only.
            self.timer_use &= 0x07;
            return Some(Event::Expired {
                action: Action::from_bits(self.actions).unwrap_or(Action::None),
                interrupt: self.interrupt(),
                timer_use,
                log,
            });
        }
        if self.interrupt() != 0
            && !self.warned
            && now + Duration::from_secs(self.pretimeout as u64) >= t
        {
            self.warned = true;
            return Some(Event::PreTimeout {
                interrupt: self.interrupt(),
                timer_use,
                log,
            });
        }
        None
    }

    /// Stop the countdown (the system was reset or powered down by
    /// something else: the spec stops the timer then).
    pub fn stop(&mut self, now: Instant) {
        if let Some(t) = self.deadline.take() {
            self.left = units(t.saturating_duration_since(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdown_pretimeout_expiry_and_flags() {
        let t0 = Instant::now();
        let mut w = Watchdog::default();
        assert_eq!(w.reset(t0), Err(UNINITIALISED));
        // SMS/OS use, power down, NMI pre-timeout 1 s, 3.0 s countdown.
        w.set(&[0x04, 0x22, 1, 0, 30, 0], t0).unwrap();
        assert!(!w.running(), "Set stops the timer unless told otherwise");
        assert_eq!(w.get(t0), vec![0x04, 0x22, 1, 0, 30, 0, 30, 0]);
        w.reset(t0).unwrap();
        let g = w.get(t0 + Duration::from_millis(1050));
        assert_eq!((g[0], g[6]), (0x44, 20));
        assert_eq!(w.poll(t0 + Duration::from_millis(1500)), None);
        assert_eq!(
            w.poll(t0 + Duration::from_millis(2000)),
            Some(Event::PreTimeout {
                interrupt: 2,
                timer_use: 4,
                log: true
            })
        );
        assert_eq!(w.poll(t0 + Duration::from_millis(2100)), None);
        assert_eq!(
            w.poll(t0 + Duration::from_millis(3000)),
            Some(Event::Expired {
                action: Action::PowerDown,
                interrupt: 2,
                timer_use: 4,
                log: true
            })
        );
        assert!(!w.running());
        let g = w.get(t0 + Duration::from_secs(4));
        assert_eq!((g[0], g[3], g[6]), (0x04, 0x10, 0));
        // Set clears the flags it is told to.
        w.set(&[0x04, 0x00, 0, 0x10, 10, 0], t0).unwrap();
        assert_eq!(w.get(t0)[3], 0);
    }

    #[test]
    fn bad_set_data_is_refused() {
        let t0 = Instant::now();
        let mut w = Watchdog::default();
        assert_eq!(w.set(&[4, 1, 0, 0, 10], t0), Err(cc::BAD_LENGTH));
        assert_eq!(w.set(&[0, 1, 0, 0, 10, 0], t0), Err(cc::INVALID_FIELD));
        assert_eq!(w.set(&[4, 7, 0, 0, 10, 0], t0), Err(cc::INVALID_FIELD));
        assert_eq!(w.set(&[4, 0x51, 0, 0, 10, 0], t0), Err(cc::INVALID_FIELD));
        // Pre-timeout (5 s) longer than the countdown (1 s).
        assert_eq!(w.set(&[4, 0x11, 5, 0, 10, 0], t0), Err(cc::INVALID_FIELD));
        assert_eq!(w.reset(t0), Err(UNINITIALISED));
    }

    #[test]
    fn dont_stop_keeps_a_running_timer_running() {
        let t0 = Instant::now();
        let mut w = Watchdog::default();
        w.set(&[0x04, 0x01, 0, 0, 50, 0], t0).unwrap();
        w.reset(t0).unwrap();
        w.set(&[0x44, 0x01, 0, 0, 20, 0], t0).unwrap();
        assert!(w.running());
        w.set(&[0x04, 0x01, 0, 0, 20, 0], t0).unwrap();
        assert!(!w.running());
    }
}
