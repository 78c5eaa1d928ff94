//! Checking a guest-operations login: PAM through the `vm-agent-auth`
//! helper, without blocking the agent, and a short cache of good logins.
//!
//! The agent is a static binary without PAM (PAM loads its modules with
//! dlopen), so each check runs the small dynamically linked helper: the
//! user name and password go to its standard input, the verdict comes back
//! as its exit status and the account (ids, groups, home, shell) on its
//! standard output. The agent waits on the helper's output pipe in its
//! poll(2) loop, so a slow PAM stack (pam_unix waits ~2 s after a wrong
//! password, LDAP may take longer) never stalls anything else.
//!
//! A good login is remembered for [`CACHE_TTL`], keyed by the user name and
//! a keyed hash of the password (SipHash with a per-process random key, so
//! the password itself is not kept): a 64 MiB transfer is a thousand HGFS
//! packets, each carrying the credentials, and one helper run per packet
//! would cost more than the copy. The login is checked by PAM again at
//! least once every [`CACHE_TTL`], and a failed check drops the user's
//! entries, so a changed password or a locked account takes effect within
//! a minute.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::user::Account;

/// How long a good login is trusted without asking PAM again.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most logins remembered at once.
const CACHE_SIZE: usize = 8;
/// Longest a PAM check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes read from the helper (its account lines).
const MAX_OUTPUT: usize = 64 * 1024;

/// Why a login could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The helper did not start.
    #[error("cannot run the login helper {}", .path.display())]
    Spawn {
        /// The helper.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A check is already running (the caller serializes).
    #[error("a login check is already running")]
    Busy,
}

/// The verdict on a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// PAM accepted it; the account to act as.
    Valid(Account),
    /// PAM refused it (or the check failed).
    Invalid,
}

struct Check {
    child: Child,
    out: ChildStdout,
    buf: Vec<u8>,
    user: String,
    digest: u64,
    started: Instant,
}

#[derive(Debug)]
struct Cached {
    user: String,
    digest: u64,
    account: Account,
    until: Instant,
}

/// Runs login checks and remembers the good ones.
pub struct Authenticator {
    helper: PathBuf,
    keys: RandomState,
    cache: Vec<Cached>,
    check: Option<Check>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("helper", &self.helper)
            .field("cached", &self.cache.len())
            .field("checking", &self.check.as_ref().map(|c| &c.user))
            .finish()
    }
}

impl Authenticator {
    /// Check logins with the helper at `helper`.
    pub fn new(helper: PathBuf) -> Authenticator {
        Authenticator {
            helper,
            keys: RandomState::new(),
            cache: Vec::new(),
            check: None,
        }
    }

    fn digest(&self, user: &str, password: &[u8]) -> u64 {
        self.keys.hash_one((user, password))
    }

    /// The account of a login PAM accepted within [`CACHE_TTL`].
    pub fn cached(&mut self, user: &str, password: &[u8], now: Instant) -> Option<Account> {
        self.cache.retain(|c| c.until > now);
        let d = self.digest(user, password);
        self.cache
            .iter()
            .find(|c| c.user == user && c.digest == d)
            .map(|c| c.account.clone())
    }

    /// Start a PAM check; the verdict comes from [`Authenticator::on_ready`]
    /// (or [`Authenticator::on_deadline`] on timeout).
    pub fn start(&mut self, user: &str, password: &[u8], now: Instant) -> Result<(), AuthError> {
        if self.check.is_some() {
            return Err(AuthError::Busy);
        }
        let spawn_err = |source| AuthError::Spawn {
            path: self.helper.clone(),
            source,
        };
        let mut tries = 0;
        let mut child = loop {
            let r = Command::new(&self.helper)
                .env_clear()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn();
            match r {
                // A helper written a moment ago may still be open for
                // writing in a child another thread forked (tests).
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                r => break r.map_err(spawn_err)?,
            }
        };
        let mut input = Vec::with_capacity(user.len() + password.len() + 2);
        input.extend_from_slice(user.as_bytes());
        input.push(0);
        input.extend_from_slice(password);
        input.push(0);
        // At most 4 KiB (the helper's limit), less than a pipe buffer: the
        // write does not block.
        if let Some(mut stdin) = child.stdin.take() {
            if let Err(e) = stdin.write_all(&input) {
                log::warn!("guestops: cannot pass the login to the helper: {e}");
            }
        }
        input.fill(0);
        let out = child.stdout.take().expect("stdout is piped");
        set_nonblocking(out.as_raw_fd());
        self.check = Some(Check {
            child,
            out,
            buf: Vec::new(),
            user: user.to_owned(),
            digest: self.digest(user, password),
            started: now,
        });
        Ok(())
    }

    /// The running check's output pipe, to poll.
    pub fn fd(&self) -> Option<RawFd> {
        self.check.as_ref().map(|c| c.out.as_raw_fd())
    }

    /// When a check times out or the next cached login expires.
    pub fn deadline(&self) -> Option<Instant> {
        let timeout = self.check.as_ref().map(|c| c.started + CHECK_TIMEOUT);
        let expiry = self.cache.iter().map(|c| c.until).min();
        match (timeout, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The helper's pipe is readable: the verdict once it finished.
    pub fn on_ready(&mut self, now: Instant) -> Option<Verdict> {
        let check = self.check.as_mut()?;
        let mut chunk = [0u8; 4096];
        loop {
            match check.out.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    if check.buf.len() + n > MAX_OUTPUT {
                        let _ = check.child.kill();
                        break;
                    }
                    check.buf.extend_from_slice(&chunk[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // End of output: the helper is exiting; wait for it (briefly).
        let mut check = self.check.take()?;
        let status = check.child.wait();
        let verdict = match status {
            Ok(s) if s.success() => {
                let text = String::from_utf8_lossy(&check.buf);
                match Account::parse(&check.user, &text) {
                    Ok(account) => Verdict::Valid(account),
                    Err(e) => {
                        log::error!("guestops: {e}");
                        Verdict::Invalid
                    }
                }
            }
            Ok(s) => {
                if s.code() != Some(1) {
                    log::error!("guestops: the login helper failed ({s})");
                }
                Verdict::Invalid
            }
            Err(e) => {
                log::error!("guestops: cannot wait for the login helper: {e}");
                Verdict::Invalid
            }
        };
        self.remember(&check.user, check.digest, &verdict, now);
        Some(verdict)
    }

    fn remember(&mut self, user: &str, digest: u64, verdict: &Verdict, now: Instant) {
        // Any verdict replaces what was known of this user.
        self.cache.retain(|c| c.user != user && c.until > now);
        if let Verdict::Valid(account) = verdict {
            if self.cache.len() >= CACHE_SIZE {
                self.cache.remove(0);
            }
            self.cache.push(Cached {
                user: user.to_owned(),
                digest,
                account: account.clone(),
                until: now + CACHE_TTL,
            });
        }
    }

    /// The deadline passed: expire cached logins; a check that ran too long
    /// is killed and refused.
    pub fn on_deadline(&mut self, now: Instant) -> Option<Verdict> {
        self.cache.retain(|c| c.until > now);
        if self
            .check
            .as_ref()
            .is_some_and(|c| now >= c.started + CHECK_TIMEOUT)
        {
            let mut check = self.check.take()?;
            log::error!(
                "guestops: the login check for {} took longer than {CHECK_TIMEOUT:?}; refused",
                check.user
            );
            let _ = check.child.kill();
            let _ = check.child.wait();
            return Some(Verdict::Invalid);
        }
        None
    }

    /// Check later logins with the helper at `helper`.
    pub fn set_helper(&mut self, helper: PathBuf) {
        self.helper = helper;
    }

    /// Forget every cached login (config reload).
    pub fn forget(&mut self) {
        self.cache.clear();
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in helper with the real one's contract (a bash script,
    /// `read -d ''` needs bash; PAM itself is exercised end to end).
    fn fake_helper(dir: &std::path::Path) -> PathBuf {
        let p = dir.join("helper");
        std::fs::write(
            &p,
            "#!/bin/bash\nIFS= read -r -d '' u; IFS= read -r -d '' pw\n\
             [ \"$pw\" = secret ] || exit 1\n\
             printf 'uid=1000\\ngid=1000\\ngroups=1000\\nhome=/home/%s\\nshell=/bin/sh\\n' \"$u\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    fn finish(a: &mut Authenticator) -> Verdict {
        for _ in 0..1000 {
            let fd = a.fd().unwrap();
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, 100) };
            if let Some(v) = a.on_ready(Instant::now()) {
                return v;
            }
        }
        panic!("no verdict");
    }

    #[test]
    fn checks_then_caches_good_logins_only() {
        if !std::path::Path::new("/bin/bash").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let helper = fake_helper(dir.path());
        let mut a = Authenticator::new(helper);
        let now = Instant::now();
        assert_eq!(a.cached("alice", b"secret", now), None);
        a.start("alice", b"wrong", now).unwrap();
        assert!(matches!(a.start("x", b"y", now), Err(AuthError::Busy)));
        assert_eq!(finish(&mut a), Verdict::Invalid);
        assert_eq!(a.deadline(), None, "nothing cached, nothing running");
        a.start("alice", b"secret", now).unwrap();
        let Verdict::Valid(acct) = finish(&mut a) else {
            panic!("refused")
        };
        assert_eq!(acct.home, PathBuf::from("/home/alice"));
        assert_eq!(a.cached("alice", b"secret", now), Some(acct));
        assert_eq!(a.cached("alice", b"secre", now), None);
        assert_eq!(a.cached("bob", b"secret", now), None);
        // Expires after the TTL.
        let later = Instant::now() + CACHE_TTL;
        assert!(a.deadline().unwrap() <= later);
        a.on_deadline(later);
        assert_eq!(a.cached("alice", b"secret", later), None);
    }

    #[test]
    fn a_missing_helper_is_an_error() {
        let mut a = Authenticator::new("/nonexistent/vm-agent-auth".into());
        assert!(matches!(
            a.start("u", b"p", Instant::now()),
            Err(AuthError::Spawn { .. })
        ));
        assert_eq!(a.fd(), None);
    }
}
