//! `hvsim vm guest`: the command line of guest operations (part of the
//! `hvsim` binary). Each subcommand is one control-socket `guest` request;
//! file data goes through descriptors passed with it, never through JSON.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use hvsim::control;

/// Options every `hvsim vm guest` subcommand takes.
#[derive(Debug, Args)]
pub struct GuestArgs {
    /// VM name.
    pub name: String,
    /// Guest user name.
    #[arg(long, global = true, default_value = "root")]
    pub user: String,
    /// File holding the guest password (default: $HVSIM_GUEST_PASSWORD).
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: GuestCmd,
}

/// The guest operations.
#[derive(Debug, Subcommand)]
pub enum GuestCmd {
    /// Run PROGRAM with ARGS in the guest (each ARG one word; use
    /// `/bin/sh -c '...'` for shell syntax); prints its stdout and stderr
    /// and exits with its exit code (255 when the operation itself fails).
    Run {
        /// Working directory in the guest (default: the user's home).
        #[arg(long)]
        cwd: Option<String>,
        /// Extra environment variable NAME=VALUE (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        env: Vec<String>,
        /// Stop waiting after this many seconds (the program keeps running).
        #[arg(long)]
        timeout: Option<f64>,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the guest's processes (with exit codes of programs `run` started).
    Ps {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Kill a guest process.
    Kill {
        /// Its pid.
        pid: u64,
    },
    /// List a guest directory (all entries, however many).
    Ls {
        /// The directory (or a file).
        path: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a guest directory.
    Mkdir {
        /// Make missing parents too.
        #[arg(short = 'p', long)]
        parents: bool,
        /// The directory.
        path: String,
    },
    /// Delete a guest file.
    Rm {
        /// The file.
        path: String,
    },
    /// Delete a guest directory.
    Rmdir {
        /// With its contents.
        #[arg(short = 'r', long)]
        recursive: bool,
        /// The directory.
        path: String,
    },
    /// Move a guest file or directory.
    Mv {
        /// Fail rather than replace an existing destination.
        #[arg(short = 'n', long)]
        no_clobber: bool,
        /// Source.
        from: String,
        /// Destination.
        to: String,
    },
    /// Make a guest temporary file (or with -d a directory); prints its path.
    Mktemp {
        /// Make a directory.
        #[arg(short = 'd', long)]
        directory: bool,
        /// Name prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Name suffix.
        #[arg(long, default_value = "")]
        suffix: String,
        /// Parent directory (default: the guest's temporary directory).
        #[arg(long, default_value = "")]
        dir: String,
    },
    /// Print the user's guest environment (only NAMEs when given).
    Env {
        /// Variable names.
        names: Vec<String>,
    },
    /// Copy LOCAL ("-" for stdin) to GUESTPATH, keeping its mode.
    Upload {
        /// Fail rather than replace an existing file.
        #[arg(short = 'n', long)]
        no_clobber: bool,
        /// Local file.
        local: PathBuf,
        /// Absolute guest path.
        guest_path: String,
    },
    /// Copy GUESTPATH to LOCAL ("-" for stdout), keeping its mode.
    Download {
        /// Absolute guest path.
        guest_path: String,
        /// Local file.
        local: PathBuf,
    },
    /// Print the guest tools' state (no password needed).
    ToolsState,
}

fn password(args: &GuestArgs) -> Result<String> {
    if let Some(f) = &args.password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let p = text.strip_suffix('\n').unwrap_or(&text);
        return Ok(p.strip_suffix('\r').unwrap_or(p).to_string());
    }
    match std::env::var("HVSIM_GUEST_PASSWORD") {
        Ok(p) => Ok(p),
        Err(_) => bail!(
            "no guest password: pass --password-file FILE or set HVSIM_GUEST_PASSWORD (never on the command line)"
        ),
    }
}

fn call(path: &Path, req: &Value, fds: &[BorrowedFd<'_>]) -> Result<Value> {
    let s = UnixStream::connect(path).map_err(|source| control::ControlError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(control::request_with_fds(s, path, req, fds)?)
}

/// Prints the file offset of `file` (shared with the server through the
/// passed descriptor) on stderr while a transfer runs, when stderr is a
/// terminal.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(file: &File, total: Option<u64>, label: String) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let Ok(f) = file.try_clone() else {
            return Progress { stop, thread: None };
        };
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            while !stop2.load(Ordering::Relaxed) {
                // SAFETY: lseek on a descriptor this thread owns (a dup).
                let pos = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_CUR) };
                if pos >= 0 {
                    let mib = pos as f64 / (1 << 20) as f64;
                    let rate = mib / start.elapsed().as_secs_f64().max(0.001);
                    let pct = total
                        .filter(|&t| t > 0)
                        .map(|t| format!(" {:3.0}%", pos as f64 * 100.0 / t as f64))
                        .unwrap_or_default();
                    eprint!("\r{label}: {mib:.1} MiB{pct} ({rate:.1} MiB/s)   ");
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprint!("\r\x1b[K");
        });
        Progress {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mode_string(kind: &str, mode: u64) -> String {
    let mut s = String::from(match kind {
        "dir" => "d",
        "symlink" => "l",
        _ => "-",
    });
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Run one `hvsim vm guest` command.
pub fn run(sock: &Path, args: GuestArgs) -> Result<ExitCode> {
    let pw = match args.cmd {
        GuestCmd::ToolsState => String::new(),
        _ => password(&args)?,
    };
    let req = |guest: Value| json!({"op": "guest", "vm": args.name, "user": args.user, "password": pw, "guest": guest});
    match &args.cmd {
        GuestCmd::Run {
            cwd,
            env,
            timeout,
            command,
        } => {
            let g = json!({
                "cmd": "run", "program": command[0], "args": command[1..],
                "cwd": cwd.clone().unwrap_or_default(), "env": env,
                "timeout_ms": timeout.map(|t| (t.max(0.0) * 1000.0) as u64),
            });
            let out = std::io::stdout();
            let err = std::io::stderr();
            match call(sock, &req(g), &[out.as_fd(), err.as_fd()]) {
                Ok(v) => {
                    let code = v["exit_code"].as_i64().unwrap_or(255);
                    return Ok(ExitCode::from((code & 0xff) as u8));
                }
                Err(e) => {
                    eprintln!("hvsim: {e:#}");
                    return Ok(ExitCode::from(255));
                }
            }
        }
        GuestCmd::Ps { json } => {
            let v = call(sock, &req(json!({"cmd": "ps"})), &[])?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "{:>8} {:<12} {:>11} {:>5} COMMAND",
                    "PID", "USER", "START", "EXIT"
                );
                for p in v.as_array().into_iter().flatten() {
                    println!(
                        "{:>8} {:<12} {:>11} {:>5} {}",
                        text(&p["pid"]),
                        text(&p["user"]),
                        text(&p["start"]),
                        if p["exit_time"].as_i64().unwrap_or(0) != 0 {
                            text(&p["exit_code"])
                        } else {
                            "-".into()
                        },
                        text(&p["name"])
                    );
                }
            }
        }
        GuestCmd::Kill { pid } => {
            call(sock, &req(json!({"cmd": "kill", "pid": pid})), &[])?;
        }
        GuestCmd::Ls { path, json } => {
            let v = call(sock, &req(json!({"cmd": "ls", "path": path})), &[])?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let mut entries: Vec<&Value> = v.as_array().into_iter().flatten().collect();
                entries.sort_by(|a, b| text(&a["name"]).cmp(&text(&b["name"])));
                let mut out = std::io::stdout().lock();
                for e in entries {
                    let kind = text(&e["type"]);
                    let target = if kind == "symlink" {
                        format!(" -> {}", text(&e["target"]))
                    } else {
                        String::new()
                    };
                    writeln!(
                        out,
                        "{} {:>6} {:>6} {:>12} {:>11} {}{target}",
                        mode_string(&kind, e["mode"].as_u64().unwrap_or(0)),
                        text(&e["uid"]),
                        text(&e["gid"]),
                        text(&e["size"]),
                        text(&e["mtime"]),
                        text(&e["name"])
                    )?;
                }
            }
        }
        GuestCmd::Mkdir { parents, path } => {
            call(
                sock,
                &req(json!({"cmd": "mkdir", "path": path, "parents": parents})),
                &[],
            )?;
        }
        GuestCmd::Rm { path } => {
            call(sock, &req(json!({"cmd": "rm", "path": path})), &[])?;
        }
        GuestCmd::Rmdir { recursive, path } => {
            call(
                sock,
                &req(json!({"cmd": "rmdir", "path": path, "recursive": recursive})),
                &[],
            )?;
        }
        GuestCmd::Mv {
            no_clobber,
            from,
            to,
        } => {
            call(
                sock,
                &req(json!({"cmd": "mv", "from": from, "to": to, "overwrite": !no_clobber})),
                &[],
            )?;
        }
        GuestCmd::Mktemp {
            directory,
            prefix,
            suffix,
            dir,
        } => {
            let v = call(
                sock,
                &req(
                    json!({"cmd": "mktemp", "directory": directory, "prefix": prefix,
                            "suffix": suffix, "parent": dir}),
                ),
                &[],
            )?;
            println!("{}", text(&v));
        }
        GuestCmd::Env { names } => {
            let v = call(sock, &req(json!({"cmd": "env", "names": names})), &[])?;
            for e in v.as_array().into_iter().flatten() {
                println!("{}", text(e));
            }
        }
        GuestCmd::Upload {
            no_clobber,
            local,
            guest_path,
        } => {
            let (file, mode, size) = if local.as_os_str() == "-" {
                let stdin = std::io::stdin().as_fd().try_clone_to_owned()?;
                (File::from(stdin), None, None)
            } else {
                let f = File::open(local)
                    .with_context(|| format!("cannot open {}", local.display()))?;
                let md = f.metadata()?;
                if !md.is_file() {
                    bail!("{} is not a regular file", local.display());
                }
                (f, Some(md.permissions().mode() & 0o7777), Some(md.len()))
            };
            let progress = Progress::start(&file, size, format!("upload {guest_path}"));
            let v = call(
                sock,
                &req(json!({"cmd": "upload", "path": guest_path, "mode": mode,
                            "overwrite": !no_clobber})),
                &[file.as_fd()],
            );
            drop(progress);
            v?;
        }
        GuestCmd::Download { guest_path, local } => {
            let to_stdout = local.as_os_str() == "-";
            let file = if to_stdout {
                File::from(std::io::stdout().as_fd().try_clone_to_owned()?)
            } else {
                OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(local)
                    .with_context(|| format!("cannot create {}", local.display()))?
            };
            let progress = Progress::start(&file, None, format!("download {guest_path}"));
            let v = call(
                sock,
                &req(json!({"cmd": "download", "path": guest_path})),
                &[file.as_fd()],
            );
            drop(progress);
            let v = match v {
                Ok(v) => v,
                Err(e) => {
                    // No partial or empty file left behind.
                    if !to_stdout {
                        let _ = std::fs::remove_file(local);
                    }
                    return Err(e);
                }
            };
            if !to_stdout {
                if let Some(mode) = v["file"]["mode"].as_u64() {
                    file.set_permissions(std::fs::Permissions::from_mode(mode as u32 & 0o7777))
                        .with_context(|| format!("cannot set the mode of {}", local.display()))?;
                }
            }
        }
        GuestCmd::ToolsState => {
            let v = call(sock, &req(json!({"cmd": "tools-state"})), &[])?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
