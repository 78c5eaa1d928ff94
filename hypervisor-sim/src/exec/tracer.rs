//! The ptrace side of `hvsim exec` (x86_64 Linux), run inside `hvsim serve`.
//!
//! One tracer thread per `hvsim exec` session seizes the `hvsim exec`
//! process before it execs the program, and follows every task of the
//! program's tree (threads, fork, vfork, clone, exec) with `PTRACE_SEIZE`
//! options, so new tasks are traced before they run an instruction. It waits
//! with `__WALL | __WNOTHREAD`: only for its own tracees, never for another
//! session's or for a child of serve. Per stop it does the least work
//! possible:
//!
//! * SIGSEGV at a backdoor instruction (`in`, `out`, `ins`, `outs` fault
//!   with a general protection fault without I/O privilege): GETREGS, the
//!   instruction (decoded once per site and cached until the address space
//!   changes), a function call into the VM's device, SETREGS, resume. No
//!   GETSIGINFO: the decoded instruction at RIP already says it was the
//!   port access. Any other SIGSEGV, or one at an instruction that is not a
//!   backdoor access, is delivered unchanged.
//! * SIGILL at a CPUID site this tracer patched into UD2: GETREGS, answer the
//!   leaf ([`super::cpuid`]), SETREGS, resume. A UD2 the program had itself is
//!   not in the site table and raises SIGILL as usual.
//! * New executable code: at the exec stop (program and loader) all
//!   executable mappings are patched; later mappings are caught by a seccomp
//!   filter installed before exec ([`super::launch`]) that traps only
//!   `mmap`, `mprotect` and `pkey_mprotect` calls whose protection includes
//!   PROT_EXEC (`SECCOMP_RET_TRACE`). The tracer lets the call complete (one
//!   syscall-exit stop) and patches the new range before the program can run
//!   it. Sites of a file come from [`super::cache`], so each file is
//!   disassembled once per `hvsim serve`. Every other syscall runs at full
//!   speed: no PTRACE_SYSCALL on the common path, no /proc/PID/maps polling.
//!
//! The tracer thread lives as long as its tracees; if it or serve dies they
//! are killed (`PTRACE_O_EXITKILL`), never left stopped with UD2 in place of
//! CPUID.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::Arc;

use super::cache::{self, FileKey, FileSites, SiteCache};
use super::cpuid;
use super::elf;
use super::emulate::{self, Cpu, Decoded, GuestMem, Outcome};
use super::patch::{self, Site};
use super::vmdev::VmDevice;
use super::ExecError;
use crate::device::DeviceFacts;
use crate::vm::Vm;

/// Syscall-exit stops are SIGTRAP | 0x80 with PTRACE_O_TRACESYSGOOD.
const SYSCALL_TRAP: i32 = libc::SIGTRAP | 0x80;
const PAGE: u64 = 4096;
/// Largest executable section read from a file for disassembly; a file
/// claiming more is swept in memory, mapping by mapping, instead.
const MAX_SECTION: u64 = 256 << 20;

/// What the tracer counted; `HVSIM_EXEC_STATS=1` prints it when the program
/// exits.
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
    /// Files disassembled (not found in the site cache).
    pub disassembled: u64,
    /// Ptrace requests issued (each one a syscall into the tracee's state).
    pub ptrace_calls: u64,
}

/// Everything a session needs; built by [`super::Service::attach`].
#[derive(Debug)]
pub struct Session {
    /// The VM whose device answers.
    pub vm: Arc<Vm>,
    /// Its fixed facts.
    pub facts: DeviceFacts,
    /// CPUID sites per file, shared by all sessions.
    pub cache: Arc<SiteCache>,
    /// The `hvsim exec` process, about to exec the program.
    pub pid: i32,
    /// Print [`Stats`] on the program's stderr when it exits.
    pub stats: bool,
    /// TSC frequency for CPUID leaf 0x40000010.
    pub tsc_khz: u32,
}

/// Seize `s.pid` from a new tracer thread and trace it until its whole tree
/// has exited. Returns once the seize has succeeded (the caller may exec).
pub fn attach(s: Session) -> Result<(), ExecError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let pid = s.pid;
    std::thread::Builder::new()
        .name(format!("exec-{pid}"))
        .spawn(move || {
            let mut opts = libc::PTRACE_O_TRACESYSGOOD
                | libc::PTRACE_O_TRACECLONE
                | libc::PTRACE_O_TRACEFORK
                | libc::PTRACE_O_TRACEVFORK
                | libc::PTRACE_O_TRACEEXEC
                | libc::PTRACE_O_TRACESECCOMP
                | libc::PTRACE_O_EXITKILL;
            if s.stats {
                opts |= libc::PTRACE_O_TRACEEXIT;
            }
            // SAFETY: PTRACE_SEIZE takes integer arguments only; the target
            // asked for it over the control socket (its pid was checked).
            let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, opts as libc::c_long) };
            if rc != 0 {
                let _ = tx.send(Err(io::Error::last_os_error()));
                return;
            }
            let _ = tx.send(Ok(()));
            let mut t = Tracer::new(s);
            t.run();
            log::debug!("exec session {pid} ended: {:?}", t.stats);
        })
        .map_err(ExecError::Spawn)?;
    match rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(source)) => Err(ExecError::Ptrace {
            what: "PTRACE_SEIZE",
            source,
        }),
        Err(_) => Err(ExecError::Spawn(io::Error::other(
            "the tracer thread ended early",
        ))),
    }
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
    /// Opened at its first backdoor instruction; dropping it closes the
    /// process's channels.
    dev: Option<VmDevice>,
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

/// One mapping line of /proc/PID/maps.
#[derive(Debug)]
struct Mapping {
    range: Range<u64>,
    exec: bool,
    shared: bool,
    offset: u64,
    inode: u64,
    path: String,
}

fn parse_maps(pid: i32) -> io::Result<Vec<Mapping>> {
    let f = File::open(format!("/proc/{pid}/maps"))?;
    let mut out = Vec::new();
    for line in io::BufReader::new(f).lines() {
        let line = line?;
        let mut it = line.splitn(6, ' ');
        let (Some(r), Some(perms), Some(off), Some(_dev), Some(ino)) =
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

fn key_of(md: &std::fs::Metadata) -> FileKey {
    FileKey {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime: (md.mtime(), md.mtime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
    }
}

/// Disassemble the executable sections of `file` (`size` bytes long);
/// sites by file offset, sorted. `None` when it has no usable section table.
fn file_sites(file: &File, size: u64) -> FileSites {
    let secs = exec_sections_of(file).ok()?;
    let mut sites = Vec::new();
    let mut code = Vec::new();
    for s in secs {
        let end = s.end.min(size);
        if s.start >= end {
            continue;
        }
        if end - s.start > MAX_SECTION {
            return None;
        }
        code.resize((end - s.start) as usize, 0);
        file.read_exact_at(&mut code, s.start).ok()?;
        sites.extend(patch::find_cpuid(&code, s.start));
    }
    sites.sort_by_key(|s| s.addr);
    sites.dedup_by_key(|s| s.addr);
    Some(sites.into())
}

/// The whole state of one session.
struct Tracer {
    vm: Arc<Vm>,
    facts: DeviceFacts,
    cache: Arc<SiteCache>,
    /// The process `hvsim exec` became.
    main: i32,
    print_stats: bool,
    tasks: HashMap<i32, Task>,
    procs: HashMap<i32, Proc>,
    /// New tasks that stopped before their parent's clone/fork event.
    early: HashSet<i32>,
    tsc_khz: u32,
    buf: Vec<u8>,
    stats: Stats,
}

impl Tracer {
    fn new(s: Session) -> Tracer {
        Tracer {
            vm: s.vm,
            facts: s.facts,
            cache: s.cache,
            main: s.pid,
            print_stats: s.stats,
            tasks: HashMap::from([(
                s.pid,
                Task {
                    tgid: s.pid,
                    in_syscall: false,
                    fresh: false,
                },
            )]),
            procs: HashMap::from([(s.pid, Proc::default())]),
            early: HashSet::new(),
            tsc_khz: s.tsc_khz,
            buf: Vec::new(),
            stats: Stats::default(),
        }
    }

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

    fn run(&mut self) {
        while !self.tasks.is_empty() {
            let mut st = 0;
            // SAFETY: waiting for this thread's own tracees; `st` is a valid
            // out pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::__WALL | libc::__WNOTHREAD) };
            if pid < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ECHILD) => break,
                    _ => {
                        log::error!("exec session {}: waitpid: {e}", self.main);
                        break;
                    }
                }
            }
            if libc::WIFEXITED(st) || libc::WIFSIGNALED(st) {
                self.gone(pid);
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
    }

    fn gone(&mut self, pid: i32) {
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
            libc::PTRACE_EVENT_EXIT => {
                if pid == self.main && self.print_stats {
                    self.print_stats(pid);
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

    /// `HVSIM_EXEC_STATS=1`: the counts on the program's own stderr, written
    /// at its exit stop, before its parent can see it gone. The program's
    /// file description itself is used (pidfd_getfd), so the line lands at
    /// its current offset, as if the program had written it.
    fn print_stats(&self, pid: i32) {
        use std::os::fd::FromRawFd;
        let line = format!("hvsim exec: {:?}\n", self.stats);
        // SAFETY: pidfd_open and pidfd_getfd take integers and return new
        // fds (or -1), each owned by exactly one File below.
        let dup = unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
            if pidfd < 0 {
                None
            } else {
                let _pidfd = File::from_raw_fd(pidfd);
                let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, 2, 0) as i32;
                (fd >= 0).then(|| File::from_raw_fd(fd))
            }
        };
        let written = match dup {
            Some(f) => Ok(f),
            None => File::options()
                .append(true)
                .open(format!("/proc/{pid}/fd/2")),
        }
        .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            log::debug!("exec session {pid}: cannot print the stats: {e}");
        }
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
        // A new program: new memory, no sites, and a new channel owner
        // (dropping the old device closes the old image's channels).
        self.procs.insert(pid, Proc::default());
        self.scan(pid, None);
    }

    /// The syscall-exit stop of a trapped mmap/mprotect with PROT_EXEC.
    /// An mmap says everything in its registers (address, length, flags,
    /// fd, offset; preserved across the syscall), so the loader's mapping
    /// of a library costs no /proc/PID/maps read; mprotect needs one.
    fn mapped(&mut self, pid: i32) {
        let Ok(r) = self.getregs(pid) else { return };
        let ret = r.rax as i64;
        if (-4095..0).contains(&ret) {
            return;
        }
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        let len = r.rsi.div_ceil(PAGE) * PAGE;
        if r.orig_rax != libc::SYS_mmap as u64 {
            if ret == 0 {
                self.scan(tgid, Some(r.rdi..r.rdi.saturating_add(len)));
            }
            return;
        }
        let range = r.rax..r.rax.saturating_add(len);
        let flags = r.r10 as i32;
        let fd = r.r8 as i32;
        if let Some(p) = self.procs.get_mut(&tgid) {
            p.decoded.clear();
        }
        self.stats.scans += 1;
        if flags & libc::MAP_ANONYMOUS != 0 || fd < 0 {
            self.patch_range(tgid, range);
            return;
        }
        // MAP_SHARED and MAP_SHARED_VALIDATE both have bit 0 set, MAP_PRIVATE not.
        if flags & libc::MAP_SHARED != 0 {
            log::warn!(
                "process {tgid}: executable shared mapping at {:#x} left unpatched (writing it would change the file)",
                range.start
            );
            return;
        }
        match self.sites_of_file(&format!("/proc/{tgid}/fd/{fd}"), None) {
            Some(sites) => {
                let file = r.r9..r.r9.saturating_add(len);
                let at = cache::sites_in(&sites, file, range.start);
                self.patch_sites(tgid, at);
            }
            None => self.patch_range(tgid, range),
        }
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
            let known = if m.inode != 0 {
                // map_files names exactly the mapped file; the path may
                // have been replaced since, so it is used only when its
                // inode still matches.
                let by_fd = format!(
                    "/proc/{tgid}/map_files/{:x}-{:x}",
                    m.range.start, m.range.end
                );
                self.sites_of_file(&by_fd, Some((&m.path, m.inode)))
            } else {
                None
            };
            match known {
                Some(sites) => {
                    let off = m.offset + (range.start - m.range.start);
                    let file = off..off + (range.end - range.start);
                    let at = cache::sites_in(&sites, file, range.start);
                    self.patch_sites(tgid, at);
                }
                // Anonymous code, or a file without a section table
                // (sstrip'ed): sweep the mapped memory.
                None => self.patch_range(tgid, range),
            }
        }
    }

    /// The CPUID sites (by file offset) of the file at `path` (a /proc link
    /// to it), else of `fallback` when that file has the given inode; from
    /// the cache or by disassembling its executable sections once.
    fn sites_of_file(&mut self, path: &str, fallback: Option<(&str, u64)>) -> Option<Arc<[Site]>> {
        let (md, path) = match std::fs::metadata(path) {
            Ok(md) => (md, path),
            Err(_) => {
                let (p, ino) = fallback?;
                let md = std::fs::metadata(p).ok().filter(|md| md.ino() == ino)?;
                (md, p)
            }
        };
        let key = key_of(&md);
        if let Some(known) = self.cache.get(&key) {
            return known;
        }
        let file = File::open(path).ok()?;
        let now = file.metadata().ok()?;
        if key_of(&now) != key {
            return None;
        }
        self.stats.disassembled += 1;
        let sites = file_sites(&file, now.size());
        if sites.is_none() {
            log::debug!("{path}: no section table; disassembling its mappings");
        }
        self.cache.insert(key, sites.clone());
        sites
    }

    /// Write UD2 over each CPUID of `sites` (sorted by address) that is
    /// not patched yet, after checking that memory still holds it. Sites
    /// on one page are read and written as one span: two syscalls per page
    /// rather than per site (the loader's own CPUIDs sit on a few pages).
    fn patch_sites(&mut self, tgid: i32, sites: Vec<Site>) {
        let Some(p) = self.procs.get(&tgid) else {
            return;
        };
        let todo: Vec<Site> = sites
            .into_iter()
            .filter(|s| !p.sites.contains_key(&s.addr))
            .collect();
        let mut i = 0;
        while i < todo.len() {
            let page = todo[i].opcode_addr() / PAGE;
            let mut j = i + 1;
            while j < todo.len() && todo[j].opcode_addr() / PAGE == page {
                j += 1;
            }
            self.patch_span(tgid, &todo[i..j]);
            i = j;
        }
    }

    fn patch_span(&mut self, tgid: i32, group: &[Site]) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return;
        };
        let base = first.opcode_addr();
        let Some(mem) = self.mem(tgid) else { return };
        let mut span = vec![0u8; (last.opcode_addr() + 2 - base) as usize];
        if let Err(e) = mem.read_exact_at(&mut span, base) {
            log::debug!("process {tgid}: cannot read code at {base:#x}: {e}");
            return;
        }
        let mut done = Vec::with_capacity(group.len());
        for s in group {
            let at = (s.opcode_addr() - base) as usize;
            if span[at..at + 2] == patch::CPUID {
                span[at..at + 2].copy_from_slice(&patch::UD2);
                done.push(*s);
            } else {
                log::debug!(
                    "process {tgid}: no CPUID at {:#x} in memory, unlike its file; left alone",
                    s.addr
                );
            }
        }
        if done.is_empty() {
            return;
        }
        if let Err(e) = mem.write_all_at(&span, base) {
            log::warn!(
                "process {tgid}: cannot patch CPUID at {base:#x}: {e}; it will report the real hypervisor"
            );
            return;
        }
        self.stats.patched += done.len() as u64;
        if let Some(p) = self.procs.get_mut(&tgid) {
            for s in done {
                p.sites.insert(s.addr, s.len);
            }
        }
    }

    /// Disassemble the memory at `r` and patch every CPUID found.
    fn patch_range(&mut self, tgid: i32, r: Range<u64>) {
        let Some(mem) = self.mem(tgid) else { return };
        let mut code = vec![0u8; (r.end - r.start) as usize];
        if let Err(e) = mem.read_exact_at(&mut code, r.start) {
            log::debug!("process {tgid}: cannot read code at {:#x}: {e}", r.start);
            return;
        }
        self.patch_sites(tgid, patch::find_cpuid(&code, r.start));
    }

    fn cpuid_trap(&mut self, pid: i32) -> bool {
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        let Ok(mut r) = self.getregs(pid) else {
            return false;
        };
        let Some(&len) = self.procs.get(&tgid).and_then(|p| p.sites.get(&r.rip)) else {
            return false;
        };
        let a = cpuid::answer(r.rax as u32, r.rcx as u32, self.tsc_khz, real_cached);
        r.rax = u64::from(a[0]);
        r.rbx = u64::from(a[1]);
        r.rcx = u64::from(a[2]);
        r.rdx = u64::from(a[3]);
        r.rip += u64::from(len);
        self.stats.cpuid += 1;
        self.setregs(pid, &r).is_ok()
    }

    fn io_trap(&mut self, pid: i32) -> bool {
        let tgid = self.tasks.get(&pid).map_or(pid, |t| t.tgid);
        let Ok(mut r) = self.getregs(pid) else {
            return false;
        };
        // Port I/O at RIP that faulted: the general protection fault of an
        // access without I/O privilege (see the threat table in super).
        let Some(d) = self.decode_at(tgid, r.rip) else {
            return false;
        };
        self.mem(tgid);
        let (vm, facts) = (&self.vm, self.facts);
        let Some(p) = self.procs.get_mut(&tgid) else {
            return false;
        };
        let dev = p
            .dev
            .get_or_insert_with(|| VmDevice::new(vm.clone(), facts));
        let Some(mem) = p.mem.as_ref() else {
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
        match emulate::emulate(d, &mut cpu, &mut Mem(mem), dev, &mut self.buf) {
            Ok(Outcome::Done) => {}
            Ok(Outcome::NotOurs | Outcome::BadMemory) => return false,
            Err(e) => {
                log::error!("process {tgid}: backdoor device: {e}; the program gets the fault");
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

/// Most real CPUID answers remembered; a program looping over random
/// subleaves gets the rest from the CPU each time.
const MAX_REAL_CPUID: usize = 4096;

/// The CPU's own CPUID answer, remembered: a real CPUID exits to the
/// hypervisor (a few µs here, nested), and libc's start-up asks about fifty.
/// The answers are the machine's; per-CPU fields (the initial APIC id) are
/// those of some CPU, as they were when the tracer asked its own CPU.
fn real_cached(leaf: u32, subleaf: u32) -> cpuid::Answer {
    static REAL: std::sync::OnceLock<std::sync::Mutex<HashMap<(u32, u32), cpuid::Answer>>> =
        std::sync::OnceLock::new();
    let m = REAL.get_or_init(Default::default);
    let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(a) = m.get(&(leaf, subleaf)) {
        return *a;
    }
    let a = cpuid::real(leaf, subleaf);
    if m.len() < MAX_REAL_CPUID {
        m.insert((leaf, subleaf), a);
    }
    a
}

fn tgid_of(tid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}
