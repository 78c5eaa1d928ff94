//! vm-toolbox: a drop-in for open-vm-tools' `vmware-toolbox-cmd` (the
//! packages install it under that name too): the same commands, arguments,
//! messages and exit codes (sysexits.h), against the same host calls and
//! the same tools.conf.
//!
//! Commands: `timesync`, `script`, `disk`, `stat`, `device`, `globalconf`,
//! `logging`, `info`, `config`, `help`; options `-q` (no messages), `-h`,
//! `-v`. tools.conf lives in `/etc/vmware-tools`, or in the directory
//! `VM_TOOLBOX_CONF_DIR` names.

mod host;
mod keyfile;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use host::Host;
use keyfile::KeyFile;
use protocol::guestlib::id;

/// sysexits.h.
const EX_USAGE: u8 = 64;
const EX_UNAVAILABLE: u8 = 69;
const EX_SOFTWARE: u8 = 70;
const EX_OSFILE: u8 = 72;
const EX_TEMPFAIL: u8 = 75;
const EX_NOPERM: u8 = 77;

/// Where tools.conf is, unless `VM_TOOLBOX_CONF_DIR` says otherwise.
const CONF_DIR: &str = "/etc/vmware-tools";
/// The environment variable that moves tools.conf (tests, chroots).
const CONF_DIR_ENV: &str = "VM_TOOLBOX_CONF_DIR";

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Output that `-q` silences (messages), and output it does not (data).
struct Out {
    quiet: bool,
    prog: String,
}

impl Out {
    fn msg(&self, s: &str) {
        if !self.quiet {
            let _ = std::io::stdout().lock().write_all(s.as_bytes());
        }
    }
    fn err(&self, s: &str) {
        if !self.quiet {
            let _ = std::io::stderr().lock().write_all(s.as_bytes());
        }
    }
    fn data(&self, s: &[u8]) {
        let _ = std::io::stdout().lock().write_all(s);
    }
    fn always_err(&self, s: &str) {
        let _ = std::io::stderr().lock().write_all(s.as_bytes());
    }
    fn missing(&self, what: &str) {
        self.always_err(&format!("{}: Missing {what}\n", self.prog));
    }
    fn unknown(&self, what: &str, s: &str) {
        self.always_err(&format!("{}: Unknown {what} '{s}'\n", self.prog));
    }
}

/// Everything a command gets: its arguments after the command name.
struct Ctx<'a> {
    out: &'a Out,
    host: &'a mut Host,
    args: &'a [String],
}

impl Ctx<'_> {
    fn arg(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }
}

fn conf_dir() -> PathBuf {
    match std::env::var_os(CONF_DIR_ENV) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(CONF_DIR),
    }
}

fn conf_path() -> PathBuf {
    conf_dir().join("tools.conf")
}

/// Load tools.conf, an empty one when missing.
fn load_conf() -> Option<KeyFile> {
    KeyFile::load(&conf_path())
}

fn write_conf(out: &Out, k: &KeyFile) -> u8 {
    let p = conf_path();
    match k.save(&p) {
        Ok(()) => 0,
        Err(e) => {
            out.err(&format!(
                "Error writing config: Failed to create file “{}”: {}\n",
                p.display(),
                io_text(&e)
            ));
            EX_TEMPFAIL
        }
    }
}

/// An I/O error as GLib words it (strerror, no "(os error N)").
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

type Command = fn(&mut Ctx<'_>) -> u8;

/// name, handler, needs a subcommand, needs root.
const COMMANDS: &[(&str, Command, bool, bool)] = &[
    ("timesync", timesync, true, false),
    ("script", script, false, true),
    ("disk", disk, true, true),
    ("stat", stat, true, false),
    ("device", device, true, false),
    ("globalconf", globalconf, true, true),
    ("logging", logging, true, true),
    ("info", info, true, true),
    ("config", config, true, true),
];

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    ExitCode::from(run(argv))
}

fn run(argv: Vec<OsString>) -> u8 {
    // SAFETY: setlocale with a valid C string, before any thread starts;
    // it makes strftime use the user's locale, as vmware-toolbox-cmd.
    unsafe { libc::setlocale(libc::LC_ALL, c"".as_ptr()) };
    let prog = argv
        .first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| "vm-toolbox".into());
    let Some(mut host) = Host::connect() else {
        eprintln!("{prog} must be run inside a virtual machine.");
        return 1;
    };
    // GNU getopt: options anywhere before "--", the rest in order.
    let (mut help, mut version, mut quiet) = (false, false, false);
    let mut rest: Vec<String> = Vec::new();
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == b"--" {
            rest.extend(it.by_ref().map(|a| a.to_string_lossy().into_owned()));
            break;
        }
        if let Some(long) = b.strip_prefix(b"--") {
            let long = String::from_utf8_lossy(long);
            let name = long.split('=').next().unwrap_or("");
            let matches: Vec<&str> = ["quiet", "help", "version"]
                .into_iter()
                .filter(|o| o.starts_with(name))
                .collect();
            match (matches.as_slice(), long.contains('=')) {
                ([o], false) => match *o {
                    "quiet" => quiet = true,
                    "help" => help = true,
                    _ => version = true,
                },
                ([o], true) => {
                    eprintln!("{prog}: option '--{o}' doesn't allow an argument");
                    eprintln!("Try '{prog} -h' for more information.");
                    return 1;
                }
                _ => {
                    eprintln!("{prog}: unrecognized option '--{long}'");
                    eprintln!("Try '{prog} -h' for more information.");
                    return 1;
                }
            }
        } else if b.len() > 1 && b[0] == b'-' {
            for &c in &b[1..] {
                match c {
                    b'h' => help = true,
                    b'v' => version = true,
                    b'q' => quiet = true,
                    c => {
                        eprintln!("{prog}: invalid option -- '{}'", c as char);
                        eprintln!("Try '{prog} -h' for more information.");
                        return 1;
                    }
                }
            }
        } else {
            rest.push(a.to_string_lossy().into_owned());
        }
    }
    let out = Out { quiet, prog };
    if version {
        println!("{VERSION} (vm-toolbox)");
        return 0;
    }
    if help {
        print!("{}", main_help(&out.prog, "help"));
        return 0;
    }
    let Some(name) = rest.first() else {
        out.missing("command");
        hint(&out, None);
        return EX_USAGE;
    };
    if name == "help" {
        return help_command(&out, &rest[1..]);
    }
    let Some(&(cname, f, needs_sub, needs_root)) = COMMANDS.iter().find(|c| c.0 == name) else {
        out.unknown("command", name);
        hint(&out, None);
        return EX_USAGE;
    };
    // SAFETY: geteuid has no preconditions.
    let rc = if needs_root && unsafe { libc::geteuid() } != 0 {
        out.always_err(&format!(
            "{}: You must be root to perform {cname} operations.\n",
            out.prog
        ));
        EX_NOPERM
    } else if needs_sub && rest.len() < 2 {
        out.missing("subcommand");
        EX_USAGE
    } else {
        let mut ctx = Ctx {
            out: &out,
            host: &mut host,
            args: &rest[1..],
        };
        f(&mut ctx)
    };
    if rc == EX_USAGE {
        hint(&out, Some(cname));
    }
    rc
}

fn hint(out: &Out, cmd: Option<&str>) {
    let tail = cmd.map(|c| format!(" {c}")).unwrap_or_default();
    out.always_err(&format!(
        "Try '{} help{tail}' for more information.\n",
        out.prog
    ));
}

fn main_help(prog: &str, cmd: &str) -> String {
    format!(
        "Usage: {prog} <command> [options] [subcommand]\n\
         Type '{prog} {cmd} <command>' for help on a specific command.\n\
         Type '{prog} -v' to see the version.\n\
         Use '-q' option to suppress stdout output.\n\
         Most commands take a subcommand.\n\n\
         Available commands:\n   config\n   device\n   disk\n   globalconf\n   info\n   \
         logging\n   script\n   stat\n   timesync\n"
    )
}

fn command_help(prog: &str, cmd: &str) -> String {
    let body = match cmd {
        "timesync" => "time synchronization with the host\nSubcommands: enable, disable, status\n",
        "script" => "the scripts run on power operations\nUsage: script <power|resume|suspend|shutdown> <enable|disable|set PATH|default|current>\n",
        "disk" => "disk shrinking\nSubcommands: list, shrink <mount point>, shrinkonly, wipe <mount point>\n",
        "stat" => "guest and host information\nSubcommands: hosttime, speed, sessionid, balloon, swap, memlimit, memres, cpures, cpulimit, raw [<encoding> <stat name> [<param>]]\n",
        "device" => "the VM's removable devices\nSubcommands: list, status <dev>, enable <dev>, disable <dev>\n",
        "globalconf" => "global configuration from the GuestStore\nSubcommands: enable, disable, refresh, status\n",
        "logging" => "tools logging levels\nUsage: logging level <get SERVICE|set SERVICE LEVEL>\n",
        "info" => "update guest information on the host\nUsage: info update network\n",
        "config" => "tools.conf\nSubcommands: get <section> <key>, set <section> <key> <value>, remove <section> <key>\n",
        _ => "",
    };
    format!("{cmd}: {body}Run as: {prog} {cmd} ...\n")
}

fn help_command(out: &Out, args: &[String]) -> u8 {
    match args.first() {
        Some(c) if c == "help" => {
            print!("{}", main_help(&out.prog, c));
            0
        }
        Some(c) if COMMANDS.iter().any(|x| x.0 == c) => {
            print!("{}", command_help(&out.prog, c));
            0
        }
        Some(c) => {
            out.unknown("subcommand", c);
            print!("{}", main_help(&out.prog, "help"));
            EX_USAGE
        }
        None => {
            print!("{}", main_help(&out.prog, "help"));
            0
        }
    }
}

// ---- timesync -------------------------------------------------------------

fn timesync(c: &mut Ctx<'_>) -> u8 {
    let on = c.host.gui_options() & protocol::gui_option::SYNC_TIME != 0;
    let set = |c: &mut Ctx<'_>, enable: bool| {
        let msg = format!(
            "vmx.set_option synctime {} {}\0",
            u8::from(!enable),
            u8::from(enable)
        );
        c.host.rpc(msg.as_bytes())
    };
    match c.arg(0).unwrap_or("") {
        sub @ ("enable" | "disable") => {
            let enable = sub == "enable";
            let r = if on == enable {
                Some((true, Vec::new()))
            } else {
                set(c, enable)
            };
            match r {
                Some((true, _)) => {
                    c.out.msg(if enable { "Enabled\n" } else { "Disabled\n" });
                    0
                }
                other => {
                    let why = other
                        .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    c.out.err(&format!("Error: {why}\n"));
                    1
                }
            }
        }
        "status" if on => {
            c.out.msg("Enabled\n");
            0
        }
        "status" => {
            c.out.msg("Disabled\n");
            EX_UNAVAILABLE
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

// ---- stat -----------------------------------------------------------------

fn stat(c: &mut Ctx<'_>) -> u8 {
    let sub = c.arg(0).unwrap_or("").to_string();
    let guestlib = |c: &mut Ctx<'_>, sid: Option<u32>, what: &str, fmt: &dyn Fn(u64) -> String| {
        let info = match c.host.guestlib() {
            Ok(i) => i,
            Err(e) if e == host::ERR_NOT_ENABLED || e == host::ERR_OTHER => {
                c.out.err(&format!("UpdateInfo failed: {e}\n"));
                return EX_TEMPFAIL;
            }
            Err(e) => {
                c.out.err(&format!("OpenHandle failed: {e}\n"));
                return EX_UNAVAILABLE;
            }
        };
        let v = match sid {
            None if info.session_id == 0 => Err(host::ERR_NO_INFO),
            None => Ok(info.session_id),
            Some(sid) => host::stat(&info, sid),
        };
        match v {
            Ok(v) => {
                c.out.data(fmt(v).as_bytes());
                0
            }
            Err(e) => {
                c.out.err(&format!("Failed to get {what}: {e}\n"));
                EX_TEMPFAIL
            }
        }
    };
    let mb = |v: u64| format!("{} MB\n", v as u32);
    let mhz = |v: u64| format!("{} MHz\n", v as u32);
    match sub.as_str() {
        "hosttime" => hosttime(c),
        "speed" => {
            let s = c.host.mhz();
            if s <= 0 {
                c.out.err("Unable to get processor speed.\n");
                return EX_TEMPFAIL;
            }
            c.out.data(format!("{s} MHz\n").as_bytes());
            0
        }
        "sessionid" => guestlib(c, None, "session ID", &|v| format!("0x{v:x}\n")),
        "balloon" => guestlib(c, Some(id::MEM_BALLOONED_MB), "ballooned memory", &mb),
        "swap" => guestlib(c, Some(id::MEM_SWAPPED_MB), "swapped memory", &mb),
        "memlimit" => guestlib(c, Some(id::MEM_LIMIT_MB), "memory limit", &mb),
        "memres" => guestlib(c, Some(id::MEM_RESERVATION_MB), "memory reservation", &mb),
        "cpures" => guestlib(c, Some(id::CPU_RESERVATION_MHZ), "CPU minimum", &mhz),
        "cpulimit" => guestlib(c, Some(id::CPU_LIMIT_MHZ), "CPU limit", &mhz),
        "raw" => {
            let a = |i| c.arg(i).unwrap_or("").to_string();
            let msg = format!(
                "{} {} {} {}",
                protocol::guestlib::STAT_COMMAND,
                a(1),
                a(2),
                a(3)
            );
            let r = if msg.len() >= 256 {
                Err(host::ERR_BUFFER)
            } else {
                match c.host.rpc(msg.as_bytes()) {
                    Some((true, body)) => Ok(body),
                    _ => Err(host::ERR_NOT_AVAILABLE),
                }
            };
            match r {
                Ok(body) => {
                    // printf("%*s"): the reply up to its first NUL.
                    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                    let pad = body.len().saturating_sub(end);
                    let mut line = vec![b' '; pad];
                    line.extend_from_slice(&body[..end]);
                    c.out.data(&line);
                    0
                }
                Err(e) => {
                    c.out.err(&format!("Failed to get stat: {e}\n"));
                    EX_TEMPFAIL
                }
            }
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

fn hosttime(c: &mut Ctx<'_>) -> u8 {
    let (secs, us) = c.host.time();
    if secs <= 0 {
        c.out.err("Unable to get host time.\n");
        return EX_TEMPFAIL;
    }
    let t = (secs + us / 1_000_000) as libc::time_t;
    // SAFETY: localtime_r writes into `tm`,
    // strftime at most `buf.len()` bytes into `buf` with a NUL-terminated
    // format.
    let text = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            None
        } else {
            let mut buf = [0u8; 256];
            let n = libc::strftime(
                buf.as_mut_ptr().cast(),
                buf.len(),
                c"%d %b %Y %H:%M:%S".as_ptr(),
                &tm,
            );
            (n > 0).then(|| buf[..n].to_vec())
        }
    };
    match text {
        Some(mut t) => {
            t.push(b'\n');
            c.out.data(&t);
            0
        }
        None => {
            c.out.err("Unable to format host time.\n");
            EX_TEMPFAIL
        }
    }
}

// ---- device ---------------------------------------------------------------

/// How many device slots vmware-toolbox-cmd looks at.
const MAX_DEVICES: u16 = 50;

fn device(c: &mut Ctx<'_>) -> u8 {
    let sub = c.arg(0).unwrap_or("").to_string();
    let dev = c.arg(1).map(str::to_string);
    let find = |c: &mut Ctx<'_>, name: &str| {
        (0..MAX_DEVICES).find_map(|i| match c.host.device(i) {
            Some((n, on)) if n == name => Some((i, on)),
            _ => None,
        })
    };
    match (sub.as_str(), dev) {
        ("list", _) => {
            for i in 0..MAX_DEVICES {
                if let Some((name, on)) = c.host.device(i) {
                    if !name.is_empty() {
                        let s = if on { "Enabled" } else { "Disabled" };
                        c.out.data(format!("{name}: {s}\n").as_bytes());
                    }
                }
            }
            0
        }
        ("status", Some(d)) => match find(c, &d) {
            Some((_, true)) => {
                c.out.msg("Enabled\n");
                0
            }
            Some((_, false)) => {
                c.out.msg("Disabled\n");
                EX_UNAVAILABLE
            }
            None => {
                c.out
                    .err("Error fetching interface information: device not found.\n");
                EX_OSFILE
            }
        },
        (s @ ("enable" | "disable"), Some(d)) => {
            let enable = s == "enable";
            let Some((i, _)) = find(c, &d) else {
                c.out
                    .err("Error fetching interface information: device not found.\n");
                return EX_OSFILE;
            };
            if !c.host.toggle_device(i, enable) {
                let verb = if enable { "connect" } else { "disconnect" };
                c.out.err(&format!("Unable to {verb} device {d}.\n"));
                return EX_TEMPFAIL;
            }
            c.out.msg(if enable { "Enabled\n" } else { "Disabled\n" });
            0
        }
        ("status" | "enable" | "disable", None) => {
            c.out.missing("device name");
            EX_USAGE
        }
        (other, _) => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

// ---- disk -----------------------------------------------------------------

const SHRINK_DISABLED: &str = "Shrink disk is disabled for this virtual machine.\n\n\
Shrinking is disabled for linked clones, parents of linked clones, \n\
pre-allocated disks, snapshots, or due to other factors. \n\
See the User's manual for more information.\n";

const SHRINK_UNAVAILABLE: &str = "The shrink feature is not available,\n\n\
either because you are running an old version of a VMware product, \
or because too many communication channels are open.\n\n\
If you are running an old version of a VMware product, you should \
consider upgrading.\n\n\
If too many communication channels are open, you should power off your \
virtual machine and then power it back on.\n";

/// File systems that can be wiped (open-vm-tools' wiper list).
const WIPABLE: &[&str] = &[
    "ext2", "ext3", "ext4", "hfs", "msdos", "ntfs", "pcfs", "reiserfs", "ufs", "vfat", "xfs",
    "btrfs",
];

#[derive(PartialEq, Eq)]
enum Wiper {
    Unavailable,
    Disabled,
    Enabled,
}

fn wiper_state(c: &mut Ctx<'_>) -> Wiper {
    match c.host.rpc(b"disk.wiper.enable") {
        Some((true, b)) if b == b"1" => Wiper::Enabled,
        Some((true, _)) => Wiper::Disabled,
        _ => Wiper::Unavailable,
    }
}

/// The mounted file systems and whether each can be shrunk, or None
/// (message printed) when the host does not allow shrinking.
fn shrinkable(c: &mut Ctx<'_>) -> Option<Vec<(String, bool)>> {
    match wiper_state(c) {
        Wiper::Unavailable => {
            c.out.err(SHRINK_UNAVAILABLE);
            None
        }
        Wiper::Disabled => {
            c.out.err(SHRINK_DISABLED);
            None
        }
        Wiper::Enabled => {
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
            Some(
                mounts
                    .lines()
                    .filter_map(|l| {
                        let mut f = l.split_whitespace();
                        let (_, mp, fs) = (f.next()?, f.next()?, f.next()?);
                        Some((mp.replace("\\040", " "), WIPABLE.contains(&fs)))
                    })
                    .collect(),
            )
        }
    }
}

fn disk(c: &mut Ctx<'_>) -> u8 {
    let sub = c.arg(0).unwrap_or("").to_string();
    match sub.as_str() {
        "list" => {
            let Some(list) = shrinkable(c) else {
                return EX_TEMPFAIL;
            };
            let ok: Vec<&String> = list.iter().filter(|m| m.1).map(|m| &m.0).collect();
            if ok.is_empty() {
                c.out.err(SHRINK_DISABLED);
                return EX_TEMPFAIL;
            }
            for mp in ok {
                c.out.data(format!("{mp}\n").as_bytes());
            }
            0
        }
        "shrinkonly" => {
            let Some(list) = shrinkable(c) else {
                return EX_TEMPFAIL;
            };
            if !list.iter().any(|m| m.1) {
                c.out.err(SHRINK_DISABLED);
                return EX_TEMPFAIL;
            }
            send_shrink(c)
        }
        s @ ("shrink" | "wipe") => {
            let Some(mp) = c.arg(1).map(str::to_string) else {
                c.out.missing("mount point");
                return EX_USAGE;
            };
            let found = shrinkable(c).and_then(|l| l.into_iter().find(|m| m.0 == mp));
            match found {
                None => {
                    c.out.err(&format!("Unable to find partition {mp}\n"));
                    EX_OSFILE
                }
                Some((_, false)) => {
                    c.out.err(&format!("Partition {mp} is not shrinkable\n"));
                    EX_UNAVAILABLE
                }
                Some(_) => wipe_and_shrink(c, &mp, s == "shrink"),
            }
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

fn send_shrink(c: &mut Ctx<'_>) -> u8 {
    c.out.err("\n");
    match c.host.rpc(b"disk.shrink") {
        Some((true, _)) => {
            c.out.msg("Disk shrinking complete.\n");
            0
        }
        other => {
            let why = other
                .map(|(_, b)| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            c.out.err(&format!("Error while shrinking: {why}\n"));
            EX_TEMPFAIL
        }
    }
}

/// Fill the free space of `mp` with zeros in a temporary file, remove it,
/// then (for shrink) ask the host to shrink the disks.
fn wipe_and_shrink(c: &mut Ctx<'_>, mp: &str, shrink: bool) -> u8 {
    let what = if shrink { "shrink" } else { "wipe" };
    c.out.msg(&format!(
        "Please disregard any warnings about disk space for the duration of {what} process.\n"
    ));
    let path = Path::new(mp).join(format!(".vm-toolbox-wiper-{}", std::process::id()));
    let free = |p: &Path| -> Option<u64> {
        let cp = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes into the zeroed struct we own; `cp` is a
        // valid C string.
        unsafe {
            let mut s: libc::statvfs = std::mem::zeroed();
            (libc::statvfs(cp.as_ptr(), &mut s) == 0).then(|| s.f_bavail * s.f_frsize)
        }
    };
    let total = free(Path::new(mp)).unwrap_or(0).max(1);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let zeros = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&zeros) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
            if !c.out.quiet {
                let p = (written * 100 / total).min(99);
                print!("\rProgress: {p} [{}>", "=".repeat((p / 10 + 1) as usize));
                let _ = std::io::stdout().flush();
            }
        }
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&path);
    println!();
    let rc = match result {
        Err(_) => {
            c.out.err("Error, Unable to create wiper file.\n");
            EX_TEMPFAIL
        }
        Ok(()) if shrink => send_shrink(c),
        Ok(()) => 0,
    };
    if rc != 0 {
        c.out.err("Shrinking not completed.\n");
    }
    rc
}

// ---- script ---------------------------------------------------------------

fn script_conf_name(apm: &str) -> Option<(&'static str, &'static str)> {
    Some(match apm {
        "suspend" => ("suspend-script", "suspend-vm-default"),
        "resume" => ("resume-script", "resume-vm-default"),
        "shutdown" => ("poweroff-script", "poweroff-vm-default"),
        "power" => ("poweron-script", "poweron-vm-default"),
        _ => return None,
    })
}

fn script(c: &mut Ctx<'_>) -> u8 {
    let Some(apm) = c.arg(0).map(str::to_string) else {
        c.out.missing("script type");
        return EX_USAGE;
    };
    let Some((conf, default)) = script_conf_name(&apm) else {
        c.out.unknown("script type", &apm);
        return EX_USAGE;
    };
    let Some(sub) = c.arg(1).map(str::to_string) else {
        c.out.missing("subcommand");
        return EX_USAGE;
    };
    let load = || load_conf().unwrap_or_default();
    match sub.as_str() {
        "default" | "current" => {
            let mut entry = if sub == "current" {
                load().get("powerops", conf)
            } else {
                None
            }
            .unwrap_or_else(|| default.to_string());
            if entry.is_empty() {
                c.out.err(&format!("No script for operation {apm}.\n"));
                return EX_TEMPFAIL;
            }
            if !entry.starts_with('/') {
                // Old configs quoted the path.
                let e = entry.as_str();
                let e = if e.len() >= 2 && e.starts_with('"') && e.ends_with('"') {
                    &e[1..e.len() - 1]
                } else {
                    e
                };
                entry = format!("{}/{e}", conf_dir().display());
            }
            c.out.data(format!("{entry}\n").as_bytes());
            0
        }
        "set" => {
            let Some(path) = c.arg(2).map(str::to_string) else {
                c.out.missing("script path");
                return EX_USAGE;
            };
            if !Path::new(&path).exists() {
                c.out.err(&format!("{path} doesn't exist.\n"));
                return EX_OSFILE;
            }
            let mut k = load();
            k.set("powerops", conf, &path);
            write_conf(c.out, &k)
        }
        "enable" | "disable" => {
            let mut k = load();
            k.set("powerops", conf, if sub == "enable" { default } else { "" });
            write_conf(c.out, &k)
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

// ---- config, logging, globalconf ----------------------------------------------

fn config(c: &mut Ctx<'_>) -> u8 {
    let (Some(op), Some(section), Some(key)) = (c.arg(0), c.arg(1), c.arg(2)) else {
        c.out.missing(match c.args.len() {
            0 => "config operation",
            1 => "config section",
            _ => "config key",
        });
        return EX_USAGE;
    };
    let (op, section, key) = (op.to_string(), section.to_string(), key.to_string());
    match op.as_str() {
        "set" => {
            let Some(value) = c.arg(3).map(str::to_string) else {
                c.out.missing("config value");
                return EX_USAGE;
            };
            let mut k = load_conf().unwrap_or_default();
            k.set(&section, &key, &value);
            write_conf(c.out, &k)
        }
        "get" => {
            let k = load_conf();
            match k.as_ref().and_then(|k| k.get(&section, &key)) {
                Some(v) => c.out.data(format!("[{section}] {key} = {v}\n").as_bytes()),
                None => c.out.data(format!("[{section}] {key} UNSET\n").as_bytes()),
            }
            if k.is_some() {
                0
            } else {
                EX_UNAVAILABLE
            }
        }
        "remove" => {
            let Some(mut k) = load_conf() else {
                return EX_UNAVAILABLE;
            };
            k.remove(&section, &key);
            write_conf(c.out, &k)
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

/// open-vm-tools' default log level (release builds).
const DEFAULT_LEVEL: &str = "message";

fn logging(c: &mut Ctx<'_>) -> u8 {
    let sub = c.arg(0).unwrap_or("").to_string();
    let Some(op) = c.arg(1).map(str::to_string) else {
        c.out.missing("logging operation");
        return EX_USAGE;
    };
    let Some(service) = c.arg(2).map(str::to_string) else {
        c.out.missing("logging servicename");
        return EX_USAGE;
    };
    if sub != "level" {
        c.out.unknown("subcommand", &sub);
        return EX_USAGE;
    }
    let key = format!("{service}.level");
    match op.as_str() {
        "set" => {
            let Some(level) = c.arg(3).map(str::to_string) else {
                c.out.missing("logging level");
                return EX_USAGE;
            };
            if !["error", "critical", "warning", "message", "info", "debug"]
                .contains(&level.as_str())
            {
                c.out.unknown("logging level", &level);
                return EX_USAGE;
            }
            let mut k = load_conf().unwrap_or_default();
            k.set("logging", &key, &level);
            write_conf(c.out, &k)
        }
        "get" => {
            let level = load_conf()
                .and_then(|k| k.get("logging", &key))
                .unwrap_or_else(|| DEFAULT_LEVEL.to_string());
            c.out.data(format!("{key} = {level}\n").as_bytes());
            0
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

fn globalconf(c: &mut Ctx<'_>) -> u8 {
    let sub = c.arg(0).unwrap_or("").to_string();
    let mut k = load_conf().unwrap_or_default();
    let enabled = k.get_bool("globalconf", "enabled").unwrap_or(false);
    match sub.as_str() {
        "refresh" if !enabled => {
            c.out.err(&format!(
                "'{sub}' failed, since globalconf module is disabled.\n"
            ));
            EX_SOFTWARE
        }
        "refresh" => {
            // The GuestStore (a vsock service of the host) is not spoken
            // here; say so as vmware-toolbox-cmd does for a failed download.
            c.out.err(&format!(
                "'{sub}' failed, check {} log for more information.\n",
                c.out.prog
            ));
            EX_SOFTWARE
        }
        "status" | "enable" | "disable" => {
            let want = match sub.as_str() {
                "enable" => true,
                "disable" => false,
                _ => {
                    c.out.msg(&format!(
                        "The status of globalconf module is '{}'\n",
                        if enabled { "Enabled" } else { "Disabled" }
                    ));
                    enabled
                }
            };
            if want == enabled {
                return 0;
            }
            k.set("globalconf", "enabled", if want { "true" } else { "false" });
            c.out.msg(&format!("{sub}: Updating the Configuration.\n"));
            if k.save(&conf_path()).is_err() {
                c.out.err(&format!(
                    "'{sub}' failed, check {} log for more information.\n",
                    c.out.prog
                ));
                return EX_TEMPFAIL;
            }
            if !want {
                let _ = std::fs::remove_file(conf_dir().join("tools-global.conf"));
            }
            0
        }
        other => {
            c.out.unknown("subcommand", other);
            EX_USAGE
        }
    }
}

// ---- info -----------------------------------------------------------------

fn info(c: &mut Ctx<'_>) -> u8 {
    let Some(sub) = c.arg(0).map(str::to_string) else {
        c.out.missing("info operation");
        return EX_USAGE;
    };
    let Some(class) = c.arg(1).map(str::to_string) else {
        c.out.missing("info infoclass");
        return EX_USAGE;
    };
    if sub != "update" {
        c.out.unknown("subcommand", &sub);
        return EX_USAGE;
    }
    if class != "network" {
        c.out.unknown("info infoclass", &class);
        return EX_USAGE;
    }
    update_network(c)
}

fn update_network(c: &mut Ctx<'_>) -> u8 {
    use plugins::guestinfo::{build_nicinfo, GuestInfoConfig};
    use plugins::netlink::NetlinkSocket;
    let dump =
        match NetlinkSocket::open(0).and_then(|mut s| s.dump().map_err(std::io::Error::other)) {
            Ok(d) => d,
            Err(_) => return 1,
        };
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let resolv = plugins::osinfo::parse_resolv(&read("/etc/resolv.conf"));
    let hostname = read("/proc/sys/kernel/hostname").trim().to_string();
    let nics = build_nicinfo(&dump, &GuestInfoConfig::default(), &resolv, &hostname);
    let mut msg = format!("SetGuestInfo  {} ", protocol::guestinfo_key::IPADDRESS_V3).into_bytes();
    msg.extend_from_slice(&protocol::nicinfo::encode(&nics));
    match c.host.rpc(&msg) {
        Some((true, _)) => 0,
        _ => 1,
    }
}
