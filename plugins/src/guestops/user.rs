//! Who a guest operation runs as: the account the login helper reported,
//! and acting as it.
//!
//! File operations run in the agent itself with the user's effective ids
//! and groups ([`Impersonation`]), set with raw system calls: on Linux those
//! change the calling thread only (glibc's wrappers would change every
//! thread), so the agent, single-threaded, is the user for exactly one
//! operation and root again after it. Programs get all their ids changed
//! in the child before exec ([`Account::drop_privileges_in_child`]).

use std::path::PathBuf;

/// Why a user could not be acted as.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The login helper's account lines do not parse.
    #[error("malformed account from the login helper: {0}")]
    Malformed(&'static str),
    /// Changing ids failed (the agent is not root?).
    #[error("cannot switch to uid {uid}: {source}")]
    Switch {
        /// The user's id.
        uid: u32,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// A local account, as the login helper reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Every group the user is in (primary included).
    pub groups: Vec<u32>,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
}

impl Account {
    /// Parse the helper's `key=value` lines (`uid`, `gid`, `groups`, `home`,
    /// `shell`) for user `name`.
    pub fn parse(name: &str, text: &str) -> Result<Account, UserError> {
        let (mut uid, mut gid, mut groups, mut home, mut shell) = (None, None, None, None, None);
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                return Err(UserError::Malformed("a line without '='"));
            };
            match k {
                "uid" => uid = v.parse().ok(),
                "gid" => gid = v.parse().ok(),
                "groups" => {
                    groups = v
                        .split(',')
                        .filter(|g| !g.is_empty())
                        .map(|g| g.parse::<u32>().ok())
                        .collect::<Option<Vec<_>>>()
                }
                "home" => home = Some(PathBuf::from(v)),
                "shell" => shell = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        Ok(Account {
            name: name.to_owned(),
            uid: uid.ok_or(UserError::Malformed("uid"))?,
            gid: gid.ok_or(UserError::Malformed("gid"))?,
            groups: groups.ok_or(UserError::Malformed("groups"))?,
            home: home.ok_or(UserError::Malformed("home"))?,
            shell: shell.ok_or(UserError::Malformed("shell"))?,
        })
    }

    /// Act as this user (effective ids and groups) until the guard drops.
    pub fn impersonate(&self) -> Result<Impersonation, UserError> {
        Impersonation::start(self)
    }

    /// In a forked child before exec: become this user for good (real,
    /// effective and saved ids, and groups). Async-signal-safe.
    pub fn drop_privileges_in_child(&self) -> std::io::Result<()> {
        if !is_root() {
            // Unprivileged agent (tests): can only run as itself.
            return if geteuid() == self.uid {
                Ok(())
            } else {
                Err(std::io::Error::from_raw_os_error(libc::EPERM))
            };
        }
        sys(setgroups(&self.groups))?;
        sys(setresgid(self.gid, self.gid, self.gid))?;
        sys(setresuid(self.uid, self.uid, self.uid))
    }
}

fn sys(r: libc::c_long) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether the agent runs with root's saved user id (it can switch back).
fn is_root() -> bool {
    let (mut r, mut e, mut s) = (0, 0, 0);
    // SAFETY: three valid out-pointers.
    unsafe { libc::getresuid(&mut r, &mut e, &mut s) };
    s == 0 || e == 0
}

const KEEP: u32 = u32::MAX;

fn setresuid(r: u32, e: u32, s: u32) -> libc::c_long {
    // SAFETY: a raw system call with integer arguments; it changes this
    // thread's ids only.
    unsafe { libc::syscall(libc::SYS_setresuid, r, e, s) }
}

fn setresgid(r: u32, e: u32, s: u32) -> libc::c_long {
    // SAFETY: as setresuid.
    unsafe { libc::syscall(libc::SYS_setresgid, r, e, s) }
}

fn setgroups(groups: &[u32]) -> libc::c_long {
    // SAFETY: the pointer and length describe `groups`; the kernel copies it.
    unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }
}

/// The current thread acts as a user until this drops.
#[derive(Debug)]
pub struct Impersonation {
    active: bool,
    groups: Vec<u32>,
    egid: u32,
}

impl Impersonation {
    fn start(user: &Account) -> Result<Impersonation, UserError> {
        let euid = geteuid();
        if euid != 0 {
            // An unprivileged agent (tests) acts only as itself.
            if euid == user.uid {
                return Ok(Impersonation {
                    active: false,
                    groups: Vec::new(),
                    egid: 0,
                });
            }
            return Err(UserError::Switch {
                uid: user.uid,
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        // SAFETY: getegid cannot fail.
        let egid = unsafe { libc::getegid() };
        // SAFETY: size 0 asks for the count only.
        let n = unsafe { libc::syscall(libc::SYS_getgroups, 0, std::ptr::null_mut::<u32>()) };
        let mut groups = vec![0u32; n.max(0) as usize];
        // SAFETY: the buffer holds groups.len() entries.
        let n = unsafe { libc::syscall(libc::SYS_getgroups, groups.len(), groups.as_mut_ptr()) };
        groups.truncate(n.max(0) as usize);
        let mut guard = Impersonation {
            active: true,
            groups,
            egid,
        };
        let switch = |r| {
            sys(r).map_err(|source| UserError::Switch {
                uid: user.uid,
                source,
            })
        };
        // Groups and group first: once the effective uid is the user's,
        // they could not be changed. On failure the guard restores.
        switch(setgroups(&user.groups))?;
        switch(setresgid(KEEP, user.gid, KEEP))?;
        if let Err(e) = switch(setresuid(KEEP, user.uid, KEEP)) {
            guard.restore();
            guard.active = false;
            return Err(e);
        }
        Ok(guard)
    }

    fn restore(&self) {
        // The saved uid is still root: take it back, then the rest. A
        // failure here would leave the agent as the user: never go on.
        if sys(setresuid(KEEP, 0, KEEP)).is_err()
            || sys(setresgid(KEEP, self.egid, KEEP)).is_err()
            || sys(setgroups(&self.groups)).is_err()
        {
            log::error!("guestops: cannot return to root after impersonating; aborting");
            std::process::abort();
        }
    }
}

impl Drop for Impersonation {
    fn drop(&mut self) {
        if self.active {
            self.restore();
        }
    }
}

/// User names by uid from `/etc/passwd` (local accounts; the static agent
/// has no name services), for process lists; a uid not there prints as a
/// number.
pub fn user_names() -> std::collections::HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let mut map = std::collections::HashMap::new();
    for line in text.lines() {
        let mut f = line.split(':');
        if let (Some(name), Some(_), Some(uid)) = (f.next(), f.next(), f.next()) {
            if let Ok(uid) = uid.parse() {
                map.entry(uid).or_insert_with(|| name.to_owned());
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_helpers_account() {
        let a = Account::parse(
            "alice",
            "uid=1001\ngid=1001\ngroups=1001,27\nhome=/home/alice\nshell=/bin/bash\n",
        )
        .unwrap();
        assert_eq!(a.uid, 1001);
        assert_eq!(a.groups, [1001, 27]);
        assert_eq!(a.home, PathBuf::from("/home/alice"));
        assert!(Account::parse("a", "uid=1\n").is_err());
        assert!(Account::parse("a", "uid=x\ngid=1\ngroups=\nhome=/\nshell=/\n").is_err());
    }

    #[test]
    fn impersonating_changes_the_thread_and_comes_back() {
        if geteuid() != 0 {
            return; // needs root to switch
        }
        let nobody = Account {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
            groups: vec![65534],
            home: "/nonexistent".into(),
            shell: "/usr/sbin/nologin".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        {
            let _g = nobody.impersonate().unwrap();
            assert_eq!(geteuid(), 65534);
            // Root's private directory is out of reach now.
            let e = std::fs::File::create(dir.path().join("f")).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
        }
        assert_eq!(geteuid(), 0);
    }
}
