//! The ptrace loop of `hvsim exec` (x86_64 Linux).
//!
//! One tracer thread follows every task of the program's tree (threads, fork,
//! vfork, clone, exec) with `PTRACE_SEIZE` options, so new tasks are traced
//! before they run an instruction. Per stop it does the least work possible:
//!
//! * SIGSEGV with `si_code == SI_KERNEL` (a general protection fault: `in`,
//!   `out`, `ins`, `outs` without I/O privilege): GETSIGINFO, GETREGS, the
//!   instruction (decoded once per site and cached until the address space
//!   changes), one frame round trip to hvsim, SETREGS, resume. Any other
//!   SIGSEGV, or one at an instruction that is not a backdoor access, is
//!   delivered unchanged.
//! * SIGILL at a CPUID site this tracer patched into UD2: GETREGS, answer the
//!   leaf ([`super::cpuid`]), SETREGS, resume. A UD2 the program had itself is
//!   not in the site table and raises SIGILL as usual.
//! * New executable code: at the exec stop (program and loader) all
//!   executable mappings are scanned; later mappings are caught by a seccomp
//!   filter installed before exec that traps only `mmap`, `mprotect` and
//!   `pkey_mprotect` calls whose protection includes PROT_EXEC
//!   (`SECCOMP_RET_TRACE`). The tracer lets the call complete (one
//!   syscall-exit stop) and patches the new range before the program can run
//!   it. Every other syscall runs at full speed: no PTRACE_SYSCALL on the
//!   common path, no /proc/PID/maps polling.
//!
//! Killing the tracer kills the tree (`PTRACE_O_EXITKILL`).

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::client::FrameClient;
use super::cpuid;
use super::elf;
use super::emulate::{self, Cpu, Decoded, GuestMem, Outcome};
use super::patch;
use super::{ExecError, Exit};

/// `si_code` of a fault raised by the kernel itself (a #GP such as port I/O
/// without privilege), as opposed to a page fault or a signal someone sent.
const SI_KERNEL: i32 = 0x80;
/// Syscall-exit stops are SIGTRAP | 0x80 with PTRACE_O_TRACESYSGOOD.
const SYSCALL_TRAP: i32 = libc::SIGTRAP | 0x80;
const PAGE: u64 = 4096;

/// What the tracer counted; `HVSIM_EXEC_STATS=1` prints it at exit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Ptrace stops handled.
    pub stops: u64,
    /// Backdoor instructions emulated.
    pub io: u64,
    /// CPUID instructions answered.
    pub cpuid: u64,
    /// CPUID sites patched.
    pub patched: u64,
    /// Executable mappings scanned.
    pub scans: u64,
    /// Ptrace requests issued (each one a syscall into the tracee's state).
    pub ptrace_calls: u64,
}

#[derive(Debug)]
struct Task {
    tgid: i32,
    /// Between a seccomp stop and its syscall-exit stop.
    in_syscall: bool,
    /// Its first stop (the auto-attach stop) has not been seen yet.
    fresh: bool,
}

#[derive(Debug, Default)]
struct Proc {
    mem: Option<File>,
    /// Patched CPUID sites: address -> instruction length.
    sites: HashMap<u64, u8>,
    /// Decoded I/O instructions by address; cleared when mappings change.
    decoded: HashMap<u64, Option<Decoded>>,
    conn: Option<FrameClient>,
}

impl Proc {
    fn fork_of(parent: Option<&Proc>) -> Proc {
        Proc {
            sites: parent.map(|p| p.sites.clone()).unwrap_or_default(),
            decoded: parent.map(|p| p.decoded.clone()).unwrap_or_default(),
            ..Proc::default()
        }
    }
}

struct Mem<'a>(&'a File);

impl GuestMem for Mem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, addr)
    }
    fn write(&mut self, addr: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, addr)
    }
}

fn cvt(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Find `program` the way execvp would: as given when it has a slash, else
/// the first executable file of that name on PATH.
pub fn resolve(program: &OsStr) -> Result<PathBuf, ExecError> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let p = dir.join(program);
        if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
            // SAFETY: `c` is a valid NUL-terminated path.
            if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(ExecError::NotFound {
        program: program.to_os_string(),
    })
}

// Classic BPF for the seccomp filter (linux/filter.h, linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Trap (SECCOMP_RET_TRACE) mmap/mprotect/pkey_mprotect with PROT_EXEC in
/// their third argument; allow everything else. Offsets are those of
/// `struct seccomp_data`: nr at 0, arch at 4, args[2] (low half) at 32.
fn exec_mapping_filter() -> Vec<libc::sock_filter> {
    vec![
        stmt(BPF_LD_W_ABS, 4),
        jump(BPF_JEQ_K, AUDIT_ARCH_X86_64, 0, 8),
        stmt(BPF_LD_W_ABS, 0),
        jump(BPF_JEQ_K, libc::SYS_mmap as u32, 3, 0),
        jump(BPF_JEQ_K, libc::SYS_mprotect as u32, 2, 0),
        jump(BPF_JEQ_K, libc::SYS_pkey_mprotect as u32, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD_W_ABS, 32),
        jump(BPF_JSET_K, libc::PROT_EXEC as u32, 0, 1),
        stmt(BPF_RET_K, SECCOMP_RET_TRACE),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
    ]
}

/// The signals `hvsim exec` forwards to the program.
fn forwarded_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the zeroed set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Start `program` stopped-free under ptrace: the child waits on a pipe until
/// the tracer has seized it, installs the seccomp filter and execs.
fn spawn(path: &Path, argv0: &OsStr, args: &[OsString]) -> Result<i32, ExecError> {
    let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|_| ExecError::NotFound {
        program: path.as_os_str().to_os_string(),
    })?;
    let mut cargs = vec![CString::new(argv0.as_bytes()).unwrap_or_default()];
    for a in args {
        cargs.push(CString::new(a.as_bytes()).map_err(|_| ExecError::BadArgument)?);
    }
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    let filter = exec_mapping_filter();
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    let mut go = [0i32; 2];
    let mut report = [0i32; 2];
    // SAFETY: pipe2 writes two fds into each valid 2-element array.
    let ok = unsafe {
        libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) == 0
            && libc::pipe2(report.as_mut_ptr(), libc::O_CLOEXEC) == 0
    };
    if !ok {
        return Err(ExecError::Spawn(io::Error::last_os_error()));
    }
    let signals = forwarded_signals();
    // SAFETY: the child only calls async-signal-safe functions (read, write,
    // sigprocmask, prctl, execv, _exit) on data prepared before the fork, and
    // never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(ExecError::Spawn(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; every pointer refers to memory prepared before
        // the fork and still alive in the child's copy.
        unsafe {
            let fail = |stage: i32| -> ! {
                let e = *libc::__errno_location();
                let msg = [stage, e];
                libc::write(report[1], msg.as_ptr().cast(), 8);
                libc::_exit(127)
            };
            libc::close(go[1]);
            let mut b = 0u8;
            if libc::read(go[0], (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(127);
            }
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &signals, std::ptr::null_mut());
            // Root has CAP_SYS_ADMIN and needs no NO_NEW_PRIVS (which would
            // stop setuid programs from gaining privilege); others do.
            if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0
                && (libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                    || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog) != 0)
            {
                fail(1);
            }
            libc::execv(cpath.as_ptr(), argv.as_ptr());
            fail(2);
        }
    }
    // SAFETY: closing our copies of the child's pipe ends.
    unsafe {
        libc::close(go[0]);
        libc::close(report[1]);
    }
    let opts = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: seizing our own child, which is blocked in read().
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, opts as libc::c_long) };
    let seize_err = (seized != 0).then(io::Error::last_os_error);
    let b = 1u8;
    // SAFETY: writing one byte from a live local to our pipe end, then closing it.
    unsafe {
        if seize_err.is_none() {
            libc::write(go[1], (&b as *const u8).cast(), 1);
        }
        libc::close(go[1]);
    }
    if let Some(e) = seize_err {
        // SAFETY: reaping our own child, which exits on the closed pipe.
        unsafe {
            libc::close(report[0]);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        return Err(ExecError::Ptrace {
            what: "PTRACE_SEIZE",
            source: e,
        });
    }
    // The report pipe closes on a successful exec (O_CLOEXEC) before the
    // exec stop, or carries (stage, errno) when the child failed.
    let mut msg = [0i32; 2];
    // SAFETY: reading up to 8 bytes into a live local array.
    let n = unsafe { libc::read(report[0], msg.as_mut_ptr().cast(), 8) };
    // SAFETY: closing our pipe end.
    unsafe { libc::close(report[0]) };
    if n == 8 {
        // SAFETY: reaping our child, which called _exit.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::__WALL) };
        let source = io::Error::from_raw_os_error(msg[1]);
        return Err(if msg[0] == 1 {
            ExecError::Seccomp(source)
        } else {
            ExecError::Exec {
                program: path.to_path_buf(),
                source,
            }
        });
    }
    Ok(pid)
}

/// Forward SIGINT/SIGTERM/SIGHUP sent to the tracer to the program. Signals
/// the terminal generated (si_code SI_KERNEL) already reached the program,
/// which shares the tracer's process group, and are not sent twice.
fn start_forwarder(pid: i32) {
    let set = forwarded_signals();
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            // SAFETY: siginfo_t is plain data; all-zero is valid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `set` is initialised, `info` a valid out pointer.
            let sig = unsafe { libc::sigwaitinfo(&set, &mut info) };
            if sig > 0 && info.si_code != SI_KERNEL {
                // SAFETY: sending a signal to the traced program's pid.
                unsafe { libc::kill(pid, sig) };
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the signal forwarder: {e}; signals reach only hvsim exec");
    }
}

/// One mapping line of /proc/PID/maps.
#[derive(Debug)]
struct Mapping {
    range: Range<u64>,
    exec: bool,
    shared: bool,
    offset: u64,
    inode: u64,
    dev: String,
    path: String,
}

fn parse_maps(pid: i32) -> io::Result<Vec<Mapping>> {
    let f = File::open(format!("/proc/{pid}/maps"))?;
    let mut out = Vec::new();
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        let mut it = line.splitn(6, ' ');
        let (Some(r), Some(perms), Some(off), Some(dev), Some(ino)) =
            (it.next(), it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let path = it.next().unwrap_or("").trim_start().to_string();
        let Some((a, b)) = r.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b), Ok(off), Ok(ino)) = (
            u64::from_str_radix(a, 16),
            u64::from_str_radix(b, 16),
            u64::from_str_radix(off, 16),
            ino.parse::<u64>(),
        ) else {
            continue;
        };
        let p = perms.as_bytes();
        out.push(Mapping {
            range: a..b,
            exec: p.get(2) == Some(&b'x'),
            shared: p.get(3) == Some(&b's'),
            offset: off,
            inode: ino,
            dev: dev.to_string(),
            path,
        });
    }
    Ok(out)
}

fn exec_sections_of(file: &File) -> Result<Vec<Range<u64>>, elf::ElfError> {
    let mut h = [0u8; elf::EHDR_LEN];
    file.read_exact_at(&mut h, 0)
        .map_err(|_| elf::ElfError::NotElf64)?;
    let t = elf::section_table(&h)?;
    let mut table = vec![0u8; t.len()];
    file.read_exact_at(&mut table, t.offset)
        .map_err(|_| elf::ElfError::Bad("section table beyond end of file"))?;
    elf::exec_sections(&table)
}

fn intersect(a: &Range<u64>, b: &Range<u64>) -> Option<Range<u64>> {
    let r = a.start.max(b.start)..a.end.min(b.end);
    (r.start < r.end).then_some(r)
}

/// The whole tracer state.
struct Tracer {
    socket: PathBuf,
    main: i32,
    main_exit: Option<Exit>,
    tasks: HashMap<i32, Task>,
    procs: HashMap<i32, Proc>,
    /// New tasks that stopped before their parent's clone/fork event.
    early: HashSet<i32>,
    /// Executable sections per file (dev, inode); `None`: not usable ELF.
    elf_cache: HashMap<(String, u64), Option<Vec<Range<u64>>>>,
    tsc_khz: u32,
    buf: Vec<u8>,
    stats: Stats,
    warned_socket: bool,
}

impl Tracer {
    fn ptrace(&mut self, req: libc::c_uint, pid: i32, addr: usize, data: usize) -> io::Result<()> {
        self.stats.ptrace_calls += 1;
        // SAFETY: requests issued here either take integer arguments or
        // pointers to live, correctly typed buffers owned by the caller.
        cvt(unsafe { libc::ptrace(req, pid, addr, data) }).map(drop)
    }

    fn getregs(&mut self, pid: i32) -> io::Result<libc::user_regs_struct> {
        // SAFETY: all-zero is a valid user_regs_struct (plain integers).
        let mut r: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        self.ptrace(
            libc::PTRACE_GETREGS,
            pid,
            0,
            &mut r as *mut libc::user_regs_struct as usize,
        )?;
        Ok(r)
    }

    fn setregs(&mut self, pid: i32, r: &libc::user_regs_struct) -> io::Result<()> {
        self.ptrace(
            libc::PTRACE_SETREGS,
            pid,
            0,
            r as *const libc::user_regs_struct as usize,
        )
    }

    fn event_msg(&mut self, pid: i32) -> io::Result<i32> {
        let mut msg: libc::c_ulong = 0;
        self.ptrace(
            libc::PTRACE_GETEVENTMSG,
            pid,
            0,
            &mut msg as *mut libc::c_ulong as usize,
        )?;
        Ok(msg as i32)
    }

    fn mem(&mut self, tgid: i32) -> Option<&File> {
        let p = self.procs.get_mut(&tgid)?;
        if p.mem.is_none() {
            match File::options()
                .read(true)
                .write(true)
                .open(format!("/proc/{tgid}/mem"))
            {
                Ok(f) => p.mem = Some(f),
                Err(e) => {
                    log::warn!("cannot open the memory of process {tgid}: {e}");
                    return None;
                }
            }
        }
        p.mem.as_ref()
    }

    fn run(&mut self) -> Result<Exit, ExecError> {
        loop {
            if self.tasks.is_empty() {
                break;
            }
            let mut st = 0;
            // SAFETY: waiting for any traced task; `st` is a valid out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL) };
            if pid < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => break,
                    _ => {
                        return Err(ExecError::Ptrace {
                            what: "waitpid",
                            source: e,
                        })
                    }
                }
            }
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                self.gone(pid, st);
                continue;
            }
            if !libc::WIFSTOPPED(st) {
                continue;
            }
            self.stats.stops += 1;
            if !self.tasks.contains_key(&pid) {
                // Its parent's fork/clone event has not arrived yet: keep it
                // stopped until the event says which process it belongs to.
                self.early.insert(pid);
                continue;
            }
            self.stopped(pid, st);
        }
        Ok(self.main_exit.unwrap_or(Exit::Code(0)))
    }

    fn gone(&mut self, pid: i32, st: i32) {
        if pid == self.main {
            self.main_exit = Some(if libc::WIFEXITED(st) {
                Exit::Code(libc::WEXITSTATUS(st))
            } else {
                Exit::Signal(libc::WTERMSIG(st))
            });
        }
        self.early.remove(&pid);
        if let Some(t) = self.tasks.remove(&pid) {
            // The leader is reported last, after all its threads.
            if t.tgid == pid {
                self.procs.remove(&pid);
            }
        }
    }

    fn resume(&mut self, pid: i32, sig: i32) {
        let syscall = self.tasks.get(&pid).is_some_and(|t| t.in_syscall);
        let req = if syscall {
            libc::PTRACE_SYSCALL
        } else {
            libc::PTRACE_CONT
        };
        if let Err(e) = self.ptrace(req, pid, 0, sig as usize) {
            // ESRCH: killed meanwhile (SIGKILL needs no cooperation).
            if e.raw_os_error() != Some(libc::ESRCH) {
                log::warn!("cannot resume task {pid}: {e}");
            }
        }
    }

    fn stopped(&mut self, pid: i32, st: i32) {
        let sig = libc::WSTOPSIG(st);
        let event = (st >> 16) & 0xFF;
        let deliver = match event {
            0 => match sig {
                SYSCALL_TRAP => {
                    if let Some(t) = self.tasks.get_mut(&pid) {
                        if t.in_syscall {
                            t.in_syscall = false;
                            self.mapped(pid);
                        }
                    }
                    0
                }
                libc::SIGSEGV if self.io_trap(pid) => 0,
                libc::SIGILL if self.cpuid_trap(pid) => 0,
                other => other,
            },
            libc::PTRACE_EVENT_EXEC => {
                self.exec(pid);
                0
            }
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                self.new_task(pid, event);
                0
            }
            libc::PTRACE_EVENT_SECCOMP => {
                if let Some(t) = self.tasks.get_mut(&pid) {
                    t.in_syscall = true;
                }
                0
            }
            libc::PTRACE_EVENT_STOP => {
                let fresh = self
                    .tasks
                    .get_mut(&pid)
                    .map(|t| std::mem::replace(&mut t.fresh, false))
                    .unwrap_or(false);
                if !fresh
                    && matches!(
                        sig,
                        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                    )
                {
                    // Group stop: stay stopped, but let SIGCONT wake it.
                    if let Err(e) = self.ptrace(libc::PTRACE_LISTEN, pid, 0, 0) {
                        log::debug!("PTRACE_LISTEN {pid}: {e}");
                    }
                    return;
                }
                0
            }
            _ => 0,
        };
        self.resume(pid, deliver);
    }

    fn new_task(&mut self, parent: i32, event: i32) {
        let Ok(child) = self.event_msg(parent) else {
            return;
        };
        let ptgid = self.tasks.get(&parent).map_or(parent, |t| t.tgid);
        let thread = event == libc::PTRACE_EVENT_CLONE && tgid_of(child) == Some(ptgid);
        let tgid = if thread { ptgid } else { child };
        if !thread {
            let p = Proc::fork_of(self.procs.get(&ptgid));
            self.procs.insert(child, p);
        }
        let early = self.early.remove(&child);
        self.tasks.insert(
            child,
            Task {
                tgid,
                in_syscall: false,
                fresh: !early,
            },
        );
        if early {
            self.resume(child, 0);
        }
    }

    fn exec(&mut self, pid: i32) {
        // After exec the task has the thread group's id; a non-leader that
        // exec'd took it over, and the other threads are gone.
        if let Ok(former) = self.event_msg(pid) {
            if former != pid {
                self.tasks.remove(&former);
            }
        }
        self.tasks.retain(|&tid, t| tid == pid || t.tgid != pid);
        self.tasks.insert(
            pid,
            Task {
                tgid: pid,
                in_syscall: false,
                fresh: false,
            },
        );
        // A new program: new memory, no sites, and a new backdoor connection
        // (dropping the old one lets hvsim close the old image's channels).
        self.procs.insert(pid, Proc::default());
        self.scan(pid, None);
    }

    /// The syscall-exit stop of a trapped mmap/mprotect with PROT_EXEC.
    fn mapped(&mut self, pid: i32) {
        let Ok(r) = self.getregs(pid) else { return };
        let ret = r.rax as i64;
        if (-4095..0).contains(&ret) {
            return;
        }
        let start = if r.orig_rax == libc::SYS_mmap as u64 {
            r.rax
        } else if ret == 0 {
            r.rdi
        } else {
            return;
        };
        let len = r.rsi.div_ceil(PAGE) * PAGE;
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        self.scan(tgid, Some(start..start.saturating_add(len)));
    }

    /// Patch every CPUID in the executable code of `tgid` (within `only`).
    fn scan(&mut self, tgid: i32, only: Option<Range<u64>>) {
        let maps = match parse_maps(tgid) {
            Ok(m) => m,
            Err(e) => {
                log::warn!("cannot read the mappings of process {tgid}: {e}");
                return;
            }
        };
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.decoded.clear();
        }
        let mut code: Vec<Range<u64>> = Vec::new();
        for m in maps.iter().filter(|m| m.exec) {
            let Some(range) = (match &only {
                Some(o) => intersect(&m.range, o),
                None => Some(m.range.clone()),
            }) else {
                continue;
            };
            if m.path.starts_with('[') {
                continue; // vdso, vsyscall: kernel code, no CPUID
            }
            if m.shared {
                log::warn!(
                    "process {tgid}: executable shared mapping {} left unpatched (writing it would change the file)",
                    m.path
                );
                continue;
            }
            self.stats.scans += 1;
            let sections = if m.inode != 0 {
                self.sections(tgid, m)
            } else {
                None
            };
            match sections {
                Some(secs) => {
                    let file_range = m.offset..m.offset + (m.range.end - m.range.start);
                    for s in secs {
                        if let Some(f) = intersect(&s, &file_range) {
                            let a = m.range.start + (f.start - m.offset);
                            let b = m.range.start + (f.end - m.offset);
                            if let Some(r) = intersect(&(a..b), &range) {
                                code.push(r);
                            }
                        }
                    }
                }
                // No section table (anonymous code, sstrip'ed files): sweep
                // the whole mapping.
                None => code.push(range),
            }
        }
        for r in code {
            self.patch_range(tgid, r);
        }
    }

    fn sections(&mut self, tgid: i32, m: &Mapping) -> Option<Vec<Range<u64>>> {
        let key = (m.dev.clone(), m.inode);
        if let Some(c) = self.elf_cache.get(&key) {
            return c.clone();
        }
        let by_fd = format!(
            "/proc/{tgid}/map_files/{:x}-{:x}",
            m.range.start, m.range.end
        );
        let file = File::open(by_fd).or_else(|_| File::open(&m.path));
        let secs = match file {
            Ok(f) => match exec_sections_of(&f) {
                Ok(s) => Some(s),
                Err(e) => {
                    log::debug!("{}: {e}; disassembling the whole mapping", m.path);
                    None
                }
            },
            Err(e) => {
                log::debug!("{}: {e}; disassembling the whole mapping", m.path);
                None
            }
        };
        self.elf_cache.insert(key, secs.clone());
        secs
    }

    fn patch_range(&mut self, tgid: i32, r: Range<u64>) {
        let Some(mem) = self.mem(tgid) else { return };
        let mut code = vec![0u8; (r.end - r.start) as usize];
        if let Err(e) = mem.read_exact_at(&mut code, r.start) {
            log::debug!("process {tgid}: cannot read code at {:#x}: {e}", r.start);
            return;
        }
        let sites = patch::find_cpuid(&code, r.start);
        let mut done = Vec::with_capacity(sites.len());
        for s in sites {
            match mem.write_all_at(&patch::UD2, s.opcode_addr()) {
                Ok(()) => done.push(s),
                Err(e) => log::warn!(
                    "process {tgid}: cannot patch CPUID at {:#x}: {e}; it will report the real hypervisor",
                    s.addr
                ),
            }
        }
        self.stats.patched += done.len() as u64;
        if let Some(p) = self.procs.get_mut(&tgid) {
            for s in done {
                p.sites.insert(s.addr, s.len);
            }
        }
    }

    fn cpuid_trap(&mut self, pid: i32) -> bool {
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        let Ok(mut r) = self.getregs(pid) else {
            return false;
        };
        let Some(&len) = self.procs.get(&tgid).and_then(|p| p.sites.get(&r.rip)) else {
            return false;
        };
        let a = cpuid::answer(r.rax as u32, r.rcx as u32, self.tsc_khz, cpuid::real);
        r.rax = u64::from(a[0]);
        r.rbx = u64::from(a[1]);
        r.rcx = u64::from(a[2]);
        r.rdx = u64::from(a[3]);
        r.rip += u64::from(len);
        self.stats.cpuid += 1;
        self.setregs(pid, &r).is_ok()
    }

    fn io_trap(&mut self, pid: i32) -> bool {
        // SAFETY: all-zero is a valid siginfo_t (plain data).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let got = self.ptrace(
            libc::PTRACE_GETSIGINFO,
            pid,
            0,
            &mut info as *mut libc::siginfo_t as usize,
        );
        if got.is_err() || info.si_code != SI_KERNEL {
            return false;
        }
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        let Ok(mut r) = self.getregs(pid) else {
            return false;
        };
        let Some(d) = self.decode_at(tgid, r.rip) else {
            return false;
        };
        if self.procs.get(&tgid).is_some_and(|p| p.conn.is_none()) {
            match FrameClient::connect(&self.socket) {
                Ok(c) => {
                    if let Some(p) = self.procs.get_mut(&tgid) {
                        p.conn = Some(c);
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.warned_socket, true) {
                        log::error!(
                            "cannot reach the VM's backdoor socket {}: {e}; is `hvsim serve` still running? The program gets the fault.",
                            self.socket.display()
                        );
                    }
                    return false;
                }
            }
        }
        self.mem(tgid);
        let Some(p) = self.procs.get_mut(&tgid) else {
            return false;
        };
        let (Some(mem), Some(conn)) = (p.mem.as_ref(), p.conn.as_mut()) else {
            return false;
        };
        let mut cpu = Cpu {
            rax: r.rax,
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rip: r.rip,
            rflags: r.eflags,
        };
        match emulate::emulate(d, &mut cpu, &mut Mem(mem), conn, &mut self.buf) {
            Ok(Outcome::Done) => {}
            Ok(Outcome::NotOurs | Outcome::BadMemory) => return false,
            Err(e) => {
                log::error!(
                    "backdoor socket {}: {e}; is `hvsim serve` still running? The program gets the fault.",
                    self.socket.display()
                );
                p.conn = None;
                return false;
            }
        }
        r.rax = cpu.rax;
        r.rbx = cpu.rbx;
        r.rcx = cpu.rcx;
        r.rdx = cpu.rdx;
        r.rsi = cpu.rsi;
        r.rdi = cpu.rdi;
        r.rbp = cpu.rbp;
        r.rip = cpu.rip;
        self.stats.io += 1;
        self.setregs(pid, &r).is_ok()
    }

    fn decode_at(&mut self, tgid: i32, rip: u64) -> Option<Decoded> {
        if let Some(d) = self.procs.get(&tgid).and_then(|p| p.decoded.get(&rip)) {
            return *d;
        }
        let mem = self.mem(tgid)?;
        let mut bytes = [0u8; 15];
        // A short read near the end of a mapping still holds the instruction.
        let n = mem.read_at(&mut bytes, rip).ok()?;
        let d = emulate::decode(&bytes[..n]);
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.decoded.insert(rip, d);
        }
        d
    }
}

fn tgid_of(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Run `program` with `args` under the tracer, emulating the backdoor
/// against the socket at `socket`. Returns how the program ended.
pub fn run(socket: &Path, program: &OsStr, args: &[OsString]) -> Result<Exit, ExecError> {
    let path = resolve(program)?;
    let set = forwarded_signals();
    // Block the forwarded signals in every thread of the tracer (the child
    // unblocks them before exec); the forwarder thread waits for them.
    // SAFETY: pthread_sigmask with a valid set and no old-set pointer.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let pid = spawn(&path, program, args)?;
    start_forwarder(pid);
    let mut t = Tracer {
        socket: socket.to_path_buf(),
        main: pid,
        main_exit: None,
        tasks: HashMap::from([(
            pid,
            Task {
                tgid: pid,
                in_syscall: false,
                fresh: false,
            },
        )]),
        procs: HashMap::from([(pid, Proc::default())]),
        early: HashSet::new(),
        elf_cache: HashMap::new(),
        tsc_khz: cpuid::tsc_khz(),
        buf: Vec::new(),
        stats: Stats::default(),
        warned_socket: false,
    };
    let exit = t.run();
    if std::env::var_os("HVSIM_EXEC_STATS").is_some_and(|v| v == "1") {
        eprintln!("hvsim exec: {:?}", t.stats);
    }
    exit
}
