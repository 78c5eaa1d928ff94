//! Programs started for the host, and the process list.
//!
//! As vmtoolsd (`VixToolsStartProgramImpl`, `ProcMgr_ExecAsync`): the
//! command line `"<programPath>" <arguments>` runs through `bash -c`
//! (`/bin/sh -c` without bash; bash execs a lone command, so the pid the
//! host gets is the program's), as the user, in the working directory or
//! the user's home. Its exit code and end time stay listed for 5 minutes
//! after it ends (`VIX_TOOLS_EXITED_PROGRAM_REAP_TIME`).
//!
//! Children are reaped without blocking and without a timer: each gets a
//! pidfd (readable when it exits) for the agent's poll(2); only on kernels
//! without pidfd_open (before 5.3) a one-second check runs while children
//! live, vmtoolsd's `SECONDS_BETWEEN_POLL_TEST_FINISHED`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::user::Account;

/// How long an exited program stays in the list (vmtoolsd: 5 minutes).
pub const EXITED_KEEP: Duration = Duration::from_secs(5 * 60);
/// How often children are checked where there is no pidfd.
const POLL_WITHOUT_PIDFD: Duration = Duration::from_secs(1);

/// One process as ListProcessesEx reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// Program name (`<cmd>`; the executable's base name).
    pub cmd: String,
    /// Full command line (`<name>`).
    pub name: String,
    /// Process id.
    pub pid: u64,
    /// Owner's user name (or uid).
    pub user: String,
    /// Start, seconds since the epoch.
    pub start: i64,
    /// Exit code (0 while running; -1 when killed by a signal).
    pub exit_code: i32,
    /// End, seconds since the epoch (0 while running).
    pub end: i64,
}

struct Started {
    child: Child,
    pidfd: Option<OwnedFd>,
    info: ProcInfo,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").field("info", &self.info).finish()
    }
}

/// Why a program did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The program path does not exist (errno).
    #[error("program not found")]
    NotFound(#[source] std::io::Error),
    /// The user may not execute it.
    #[error("program not executable by the user")]
    NotExecutable,
    /// The working directory is not a directory.
    #[error("working directory is not a directory")]
    NotADirectory,
    /// Too many started programs still running.
    #[error("too many programs running")]
    TooMany,
    /// fork/exec failed.
    #[error("cannot start the program")]
    Spawn(#[source] std::io::Error),
    /// The checks could not run as the user.
    #[error("cannot act as the user")]
    Impersonate(#[source] super::user::UserError),
}

/// The programs this agent started, running or recently exited.
#[derive(Debug, Default)]
pub struct Programs {
    running: Vec<Started>,
    exited: Vec<(ProcInfo, Instant)>,
    /// Most programs running at once.
    max_running: usize,
    /// Terminated processes due for SIGKILL.
    kills: Vec<(OwnedFd, Instant)>,
}

fn epoch_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: a raw system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just gave us this descriptor.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Whether `path` is an executable file for the current effective ids.
fn executable(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a valid C string; faccessat with AT_EACCESS checks the
    // effective ids (the impersonated user's).
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0 }
}

/// The shell vmtoolsd uses: bash if present, else sh.
fn shell() -> (&'static str, &'static str) {
    if Path::new("/bin/bash").exists() {
        ("/bin/bash", "bash")
    } else {
        ("/bin/sh", "sh")
    }
}

impl Programs {
    /// A list allowing `max_running` programs at once.
    pub fn new(max_running: usize) -> Programs {
        Programs {
            max_running,
            ..Programs::default()
        }
    }

    /// Start `"<program>" <arguments>` as `user` (the caller is root, not
    /// impersonating: the checks run as the user here, the child then
    /// takes on all the user's ids). `env` empty gives the user's login
    /// basics (see [`user_env`]). Returns the pid.
    pub fn start(
        &mut self,
        user: &Account,
        program: &str,
        arguments: Option<&str>,
        working_dir: Option<&str>,
        env: &[String],
    ) -> Result<u64, StartError> {
        self.reap(Instant::now());
        if self.running.len() >= self.max_running {
            return Err(StartError::TooMany);
        }
        // The checks vmtoolsd makes, as the user.
        let guard = user.impersonate().map_err(StartError::Impersonate)?;
        let trimmed = program.trim_start_matches(' ');
        let path = trimmed
            .strip_prefix('"')
            .map(|p| p.split('"').next().unwrap_or(p))
            .unwrap_or(trimmed);
        if let Err(e) = std::fs::metadata(path) {
            return Err(StartError::NotFound(e));
        }
        if !executable(Path::new(path)) {
            return Err(StartError::NotExecutable);
        }
        if let Some(dir) = working_dir {
            if !Path::new(dir).is_dir() {
                return Err(StartError::NotADirectory);
            }
        }
        drop(guard);
        let cwd = working_dir.map(Path::new).unwrap_or(&user.home).to_owned();
        let line = match arguments {
            Some(a) => format!("\"{program}\" {a}"),
            None => format!("\"{program}\""),
        };
        let (sh, argv0) = shell();
        let mut cmd = Command::new(sh);
        cmd.arg0(argv0)
            .arg("-c")
            .arg(&line)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if env.is_empty() {
            cmd.envs(user_env(user));
        } else {
            for kv in env {
                match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => cmd.env(k, v),
                    _ => continue,
                };
            }
        }
        let account = user.clone();
        let cwd_c = std::ffi::CString::new(cwd.as_os_str().as_encoded_bytes())
            .map_err(|_| StartError::NotADirectory)?;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes system calls (no allocation, no locks).
        unsafe {
            cmd.pre_exec(move || {
                // A session of its own: the agent's signals and terminal
                // are not the program's.
                libc::setsid();
                account.drop_privileges_in_child()?;
                // As vmtoolsd: a working directory that fails is logged by
                // the child and the program runs anyway (in /).
                if libc::chdir(cwd_c.as_ptr()) != 0 {
                    libc::chdir(c"/".as_ptr());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(StartError::Spawn)?;
        let pid = child.id();
        let base = path.rsplit('/').next().unwrap_or(path).to_owned();
        self.running.push(Started {
            pidfd: pidfd_open(pid),
            child,
            info: ProcInfo {
                cmd: base,
                name: line,
                pid: pid.into(),
                user: user.name.clone(),
                start: epoch_secs(),
                exit_code: 0,
                end: 0,
            },
        });
        Ok(pid.into())
    }

    /// Allow `max` programs at once from now on.
    pub fn set_max_running(&mut self, max: usize) {
        self.max_running = max;
    }

    /// Collect exited children, drop entries older than [`EXITED_KEEP`].
    pub fn reap(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.running.len() {
            match self.running[i].child.try_wait() {
                Ok(Some(status)) => {
                    let mut s = self.running.swap_remove(i);
                    s.info.exit_code = match (status.code(), status.signal()) {
                        (Some(c), _) => c,
                        _ => -1,
                    };
                    s.info.end = epoch_secs();
                    log::debug!(
                        "guestops: pid {} exited with {}",
                        s.info.pid,
                        s.info.exit_code
                    );
                    self.exited.push((s.info, now));
                }
                Ok(None) => i += 1,
                Err(e) => {
                    let s = self.running.swap_remove(i);
                    log::warn!("guestops: cannot wait for pid {}: {e}", s.info.pid);
                }
            }
        }
        self.exited
            .retain(|(_, at)| now.saturating_duration_since(*at) < EXITED_KEEP);
    }

    /// Descriptors to poll (pidfds of running children).
    pub fn fds(&self) -> Vec<RawFd> {
        self.running
            .iter()
            .filter_map(|s| s.pidfd.as_ref().map(|f| f.as_raw_fd()))
            .collect()
    }

    /// Whether `fd` is one of [`Programs::fds`].
    pub fn owns(&self, fd: RawFd) -> bool {
        self.running
            .iter()
            .any(|s| s.pidfd.as_ref().is_some_and(|f| f.as_raw_fd() == fd))
    }

    /// When to look again: a child without pidfd is polled; an exited
    /// entry expires.
    pub fn deadline(&self) -> Option<Instant> {
        let poll = self
            .running
            .iter()
            .any(|s| s.pidfd.is_none())
            .then(|| Instant::now() + POLL_WITHOUT_PIDFD);
        let expiry = self
            .exited
            .iter()
            .map(|(_, at)| *at + EXITED_KEEP)
            .chain(self.kills.iter().map(|(_, at)| *at))
            .min();
        match (poll, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether any started program is running or listed.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty() && self.exited.is_empty() && self.kills.is_empty()
    }

    /// The started programs' entries, running and exited.
    pub fn started(&self) -> Vec<ProcInfo> {
        self.running
            .iter()
            .map(|s| s.info.clone())
            .chain(self.exited.iter().map(|(i, _)| i.clone()))
            .collect()
    }

    /// Whether this agent started `pid` (and still lists it).
    pub fn knows(&self, pid: u64) -> bool {
        self.running.iter().any(|s| s.info.pid == pid)
            || self.exited.iter().any(|(i, _)| i.pid == pid)
    }
}

/// The environment of a program started without one: the user's login
/// basics (vmtoolsd passes its own environment instead, root's).
pub fn user_env(user: &Account) -> Vec<(String, String)> {
    let mut env = vec![
        ("HOME".to_owned(), user.home.to_string_lossy().into_owned()),
        ("USER".to_owned(), user.name.clone()),
        ("LOGNAME".to_owned(), user.name.clone()),
        (
            "SHELL".to_owned(),
            user.shell.to_string_lossy().into_owned(),
        ),
        (
            "PATH".to_owned(),
            if user.uid == 0 {
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
            } else {
                "/usr/local/bin:/usr/bin:/bin"
            }
            .to_owned(),
        ),
    ];
    if let Ok(lang) = std::env::var("LANG") {
        env.push(("LANG".to_owned(), lang));
    }
    env
}

/// Every process in `/proc`, with the started programs' own entries in
/// their place (vmtoolsd lists its started programs first, then the rest).
pub fn list_all(started: &[ProcInfo]) -> Vec<ProcInfo> {
    let names = super::user::user_names();
    let boot = boot_time();
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as i64;
    let mut out: Vec<ProcInfo> = started.to_vec();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut pids: Vec<u64> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        if started.iter().any(|s| s.pid == pid) {
            continue;
        }
        if let Some(p) = read_proc(pid, &names, boot, hz) {
            out.push(p);
        }
    }
    out
}

/// The processes with these pids: started ones from the list, others from
/// `/proc`, in the order asked.
pub fn list_pids(started: &[ProcInfo], pids: &[u64]) -> Vec<ProcInfo> {
    let names = super::user::user_names();
    let boot = boot_time();
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as i64;
    let mut out: Vec<ProcInfo> = Vec::new();
    for &pid in pids {
        if let Some(s) = started.iter().find(|s| s.pid == pid) {
            out.push(s.clone());
        }
    }
    for &pid in pids {
        if started.iter().any(|s| s.pid == pid) {
            continue;
        }
        if let Some(p) = read_proc(pid, &names, boot, hz) {
            out.push(p);
        }
    }
    out
}

fn boot_time() -> i64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn read_proc(pid: u64, names: &HashMap<u32, String>, boot: i64, hz: i64) -> Option<ProcInfo> {
    use std::os::unix::fs::MetadataExt;
    let dir = format!("/proc/{pid}");
    let uid = std::fs::metadata(&dir).ok()?.uid();
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    // Field 22 (starttime) is the 20th after the comm.
    let start_ticks: i64 = fields.get(19)?.parse().ok()?;
    let cmdline = std::fs::read(format!("{dir}/cmdline")).unwrap_or_default();
    let name = if cmdline.is_empty() {
        comm.clone()
    } else {
        let mut parts: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        if parts.last().is_some_and(|l| l.is_empty()) {
            parts.pop();
        }
        parts.join(" ")
    };
    let cmd = std::fs::read_link(format!("{dir}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| comm.clone());
    Some(ProcInfo {
        cmd,
        name,
        pid,
        user: names.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
        start: boot + start_ticks / hz,
        exit_code: 0,
        end: 0,
    })
}

/// Send SIGTERM to `pid` as the (impersonated) caller, as vmtoolsd's
/// TerminateProcess (`ProcMgr_KillByPid`: SIGTERM, SIGKILL after 5 s).
pub fn terminate(pid: u64) -> std::io::Result<()> {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    };
    if pid <= 0 {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: kill(2) with integer arguments. The raw system call checks
    // the thread's (impersonated) ids against the target's.
    let r = unsafe { libc::syscall(libc::SYS_kill, pid, libc::SIGTERM) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How long a terminated process has before SIGKILL (vmtoolsd: 5 s).
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// Most processes waiting for their SIGKILL at once.
const MAX_PENDING_KILLS: usize = 64;

impl Programs {
    /// After [`terminate`] succeeded: SIGKILL `pid` at `now` + [`KILL_GRACE`]
    /// unless it ended. Held by pidfd, so a reused pid is never hit; the
    /// user was allowed to signal it when [`terminate`] ran.
    pub fn kill_later(&mut self, pid: u64, now: Instant) {
        if self.kills.len() >= MAX_PENDING_KILLS {
            return;
        }
        if let Some(fd) = u32::try_from(pid).ok().and_then(pidfd_open) {
            self.kills.push((fd, now + KILL_GRACE));
        }
    }

    /// Send the SIGKILLs that are due.
    pub fn run_kills(&mut self, now: Instant) {
        self.kills.retain(|(fd, at)| {
            if *at > now {
                return true;
            }
            // SAFETY: pidfd_send_signal on our own pidfd, no siginfo.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    fd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> Account {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        Account {
            name: "me".into(),
            uid,
            gid,
            groups: vec![gid],
            home: std::env::temp_dir(),
            shell: "/bin/sh".into(),
        }
    }

    fn wait_exit(p: &mut Programs, pid: u64) -> ProcInfo {
        for _ in 0..500 {
            p.reap(Instant::now());
            if let Some(i) = p.started().into_iter().find(|i| i.pid == pid && i.end != 0) {
                return i;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("pid {pid} never exited");
    }

    #[test]
    fn runs_through_the_shell_and_keeps_the_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Programs::new(8);
        let out = dir.path().join("out");
        let pid = p
            .start(
                &me(),
                "/bin/sh",
                Some(&format!("-c 'echo $FOO; pwd; exit 3' > {}", out.display())),
                Some(dir.path().to_str().unwrap()),
                &["FOO=bar".into()],
            )
            .unwrap();
        assert!(!p.fds().is_empty() || p.deadline().is_some());
        let info = wait_exit(&mut p, pid);
        assert_eq!(info.exit_code, 3);
        assert_eq!(info.cmd, "sh");
        assert!(info.name.starts_with("\"/bin/sh\" -c"), "{}", info.name);
        let text = std::fs::read_to_string(&out).unwrap();
        assert_eq!(text, format!("bar\n{}\n", dir.path().display()));
        // Listed with its exit code among all processes.
        let all = list_all(&p.started());
        assert!(all.iter().any(|i| i.pid == pid && i.exit_code == 3));
        assert!(all.iter().any(|i| i.pid == std::process::id() as u64));
    }

    #[test]
    fn refuses_what_vmtoolsd_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Programs::new(8);
        let missing = p.start(&me(), "/nonexistent/prog", None, None, &[]);
        assert!(matches!(missing, Err(StartError::NotFound(_))));
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let f = file.to_str().unwrap();
        assert!(matches!(
            p.start(&me(), "/bin/true", None, Some(f), &[]),
            Err(StartError::NotADirectory)
        ));
        assert!(matches!(
            p.start(&me(), f, None, None, &[]),
            Err(StartError::NotExecutable)
        ));
        let mut none = Programs::new(0);
        assert!(matches!(
            none.start(&me(), "/bin/true", None, None, &[]),
            Err(StartError::TooMany)
        ));
    }

    #[test]
    fn terminate_ends_a_started_program() {
        let mut p = Programs::new(8);
        let pid = p.start(&me(), "/bin/sleep", Some("30"), None, &[]).unwrap();
        terminate(pid).unwrap();
        assert_eq!(wait_exit(&mut p, pid).exit_code, -1);
        // One that ignores SIGTERM gets SIGKILL once the grace is over.
        let pid = p
            .start(
                &me(),
                "/bin/sh",
                Some("-c 'trap \"\" TERM; exec sleep 30'"),
                None,
                &[],
            )
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        terminate(pid).unwrap();
        p.kill_later(pid, Instant::now());
        p.run_kills(Instant::now() + KILL_GRACE);
        assert_eq!(wait_exit(&mut p, pid).exit_code, -1);
        assert_eq!(
            terminate(u64::MAX).unwrap_err().raw_os_error(),
            Some(libc::ESRCH)
        );
    }
}
