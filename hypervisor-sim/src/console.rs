//! A VM's serial console: the master side of a pty whose slave is the
//! stdin/stdout/stderr of a program started by `hvsim exec --console`.
//!
//! `hvsim exec --console` opens the pty, hands the master to `hvsim serve`
//! over its control connection (SCM_RIGHTS) and execs the program on the
//! slave. Serve attaches the master to the VM's [`Slot`]; a reader thread
//! keeps the program's output in a bounded ring ([`RING_BYTES`]) that
//! Serial-over-LAN reads from by offset, and [`Console::write`] feeds the
//! program's input. When the program (and every process that inherited the
//! slave) has exited, reading the master fails with EIO and the console
//! detaches itself from the slot.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// How much recent output a console keeps for Serial-over-LAN.
pub const RING_BYTES: usize = 16 * 1024;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Output kept for readers: the last [`RING_BYTES`] bytes, addressed by
/// their offset in everything ever written.
#[derive(Debug, Default)]
struct Ring {
    buf: VecDeque<u8>,
    /// Offset (in all output) of `buf[0]`.
    start: u64,
}

impl Ring {
    fn push(&mut self, b: &[u8]) {
        self.buf.extend(b);
        let over = self.buf.len().saturating_sub(RING_BYTES);
        if over > 0 {
            self.buf.drain(..over);
            self.start += over as u64;
        }
    }

    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    /// Up to `max` bytes from offset `pos` (moved up to the oldest byte
    /// kept when it fell out of the ring).
    fn read(&self, pos: u64, max: usize) -> (u64, Vec<u8>) {
        let pos = pos.clamp(self.start, self.end());
        let i = (pos - self.start) as usize;
        let n = max.min(self.buf.len() - i);
        (pos, self.buf.range(i..i + n).copied().collect())
    }
}

/// One attached console.
#[derive(Debug)]
pub struct Console {
    /// Unique per attachment, so readers notice a new program's console.
    pub id: u64,
    master: File,
    ring: Mutex<Ring>,
    closed: AtomicBool,
}

impl Console {
    /// Output from offset `pos`: the offset the bytes really start at
    /// (later than `pos` when older output was dropped) and at most `max` bytes.
    pub fn read(&self, pos: u64, max: usize) -> (u64, Vec<u8>) {
        self.lock().read(pos, max)
    }

    /// Offset of the oldest output kept.
    pub fn start(&self) -> u64 {
        self.lock().start
    }

    /// Offset just past the newest output.
    pub fn end(&self) -> u64 {
        self.lock().end()
    }

    /// Feed the program's input without blocking; returns how many bytes
    /// the terminal took (fewer when its input queue is full).
    pub fn write(&self, b: &[u8]) -> io::Result<usize> {
        match (&self.master).write(b) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The program's side of the pty is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A VM's console connector: empty, or one attached console.
#[derive(Debug, Default)]
pub struct Slot {
    current: Mutex<Option<Arc<Console>>>,
    /// Who holds the one interactive session on this console (IPMI
    /// Serial-over-LAN or the web console), with a claim number.
    holder: Arc<Mutex<Option<(u64, String)>>>,
}

/// The one interactive session on a VM's console, held until dropped
/// ([`Slot::claim`]).
#[derive(Debug)]
pub struct Claim {
    holder: Arc<Mutex<Option<(u64, String)>>>,
    id: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        if h.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *h = None;
        }
    }
}

impl Slot {
    /// The attached console, if any.
    pub fn get(&self) -> Option<Arc<Console>> {
        self.lock().clone()
    }

    /// Whether a console is attached.
    pub fn is_attached(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Console>>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take the VM's one interactive console session for `who` (named in
    /// the refusal others get, e.g. "IPMI session 0x00000a01"): one
    /// Serial-over-LAN activation per VM, whether from IPMI or the web
    /// console. Refused, naming the holder, while another holds it.
    pub fn claim(&self, vm: &str, who: &str) -> Result<Claim, String> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let mut h = self.holder.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, other)) = &*h {
            return Err(format!(
                "the serial console of VM {vm:?} is in use by {other} (one Serial-over-LAN session per VM)"
            ));
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        *h = Some((id, who.to_string()));
        Ok(Claim {
            holder: self.holder.clone(),
            id,
        })
    }

    /// Who holds the interactive session, if anyone.
    pub fn holder(&self) -> Option<String> {
        self.holder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, w)| w.clone())
    }

    /// Attach the pty master `master` as this VM's console (`vm` names it
    /// in logs); refused while another program's console is attached.
    pub fn attach(self: &Arc<Self>, vm: &str, master: OwnedFd) -> Result<(), String> {
        let fd = master.as_raw_fd();
        // SAFETY: fcntl on an fd we own.
        let rc = unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK)
        };
        if rc != 0 {
            return Err(format!(
                "console: cannot make the pty non-blocking: {}",
                io::Error::last_os_error()
            ));
        }
        let c = Arc::new(Console {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            master: File::from(master),
            ring: Mutex::default(),
            closed: AtomicBool::new(false),
        });
        {
            let mut cur = self.lock();
            if cur.is_some() {
                return Err(format!(
                    "VM {vm:?} already has a console attached (one program per VM may use --console)"
                ));
            }
            *cur = Some(c.clone());
        }
        let slot = self.clone();
        let name = vm.to_string();
        let spawned = std::thread::Builder::new()
            .name(format!("console-{vm}"))
            .spawn(move || {
                pump(&c);
                c.closed.store(true, Ordering::Release);
                let mut cur = slot.lock();
                if cur.as_ref().is_some_and(|x| x.id == c.id) {
                    *cur = None;
                }
                log::info!("{name}: console detached (program exited)");
            });
        if let Err(e) = spawned {
            *self.lock() = None;
            return Err(format!("console: cannot start its reader: {e}"));
        }
        log::info!("{vm}: console attached");
        Ok(())
    }
}

/// Read the program's output into the ring until the slave side is closed.
fn pump(c: &Console) {
    let mut buf = [0u8; 4096];
    loop {
        let mut p = libc::pollfd {
            fd: c.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, -1) };
        if rc < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        match (&c.master).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => c.lock().push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: no process has the slave open any more.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_bytes_by_offset() {
        let mut r = Ring::default();
        r.push(b"hello");
        assert_eq!(r.read(0, 3), (0, b"hel".to_vec()));
        assert_eq!(r.read(3, 10), (3, b"lo".to_vec()));
        assert_eq!(r.read(9, 10), (5, vec![]));
        r.push(&vec![b'x'; RING_BYTES]);
        assert_eq!(r.start, 5);
        let (pos, b) = r.read(0, 4);
        assert_eq!((pos, b), (5, b"xxxx".to_vec()));
        assert_eq!(r.end(), 5 + RING_BYTES as u64);
    }

    #[test]
    fn one_interactive_session_at_a_time() {
        let slot = Slot::default();
        let first = slot.claim("vm0", "IPMI session 0x00000a01").unwrap();
        assert_eq!(slot.holder().as_deref(), Some("IPMI session 0x00000a01"));
        let why = slot.claim("vm0", "the web console of admin").unwrap_err();
        assert!(why.contains("in use by IPMI session 0x00000a01"), "{why}");
        drop(first);
        assert_eq!(slot.holder(), None);
        let _second = slot.claim("vm0", "the web console of admin").unwrap();
        assert!(slot.claim("vm0", "IPMI session 0x00000a02").is_err());
    }
}
