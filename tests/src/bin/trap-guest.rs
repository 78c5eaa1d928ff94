//! trap-guest: a guest program for the `hvsim exec` tests. It reaches the host
//! with the agent's `auto` transport, which under `hvsim exec` is real port
//! I/O (CPUID says VMware), and misbehaves in the ways the tests need.
//!
//! ```text
//! trap-guest threads N           N threads, each its own channel: info-set then info-get
//! trap-guest fork-exec PROG ARGS fork; the child execs PROG ARGS, the parent sends RPCI;
//!                                exit with the child's exit code
//! trap-guest segv | ud2          crash for real (SIGSEGV, SIGILL)
//! trap-guest raise SIG           kill itself with signal number SIG
//! trap-guest exit N              exit with code N after one RPCI message
//! trap-guest wait-term           print "ready", call the backdoor until SIGTERM arrives,
//!                                then info-set guestinfo.term=received and exit 42
//! trap-guest signature           print the CPUID hypervisor signature
//! trap-guest hold                open an RPCI channel, print "ready", sleep until killed
//! ```

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::exit;
use std::sync::atomic::{AtomicBool, Ordering};

use agent::rpci::Rpci;
use agent::transport::{self, BackdoorSpec};
use protocol::guest::Backdoor;
use protocol::{cmd, Regs};

fn rpci(msg: &str) -> Result<String, String> {
    let bd = transport::connect(&BackdoorSpec::Auto).map_err(|e| e.to_string())?;
    let mut ch = Rpci::open(bd).map_err(|e| e.to_string())?;
    let r = ch.send(msg.as_bytes()).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let _ = ch.close();
    if r.ok {
        Ok(body)
    } else {
        Err(body)
    }
}

fn must(msg: &str) -> String {
    rpci(msg).unwrap_or_else(|e| {
        eprintln!("trap-guest: {msg:?}: {e}");
        exit(3)
    })
}

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "threads" => {
            let n: usize = arg(1).parse().unwrap_or(4);
            let handles: Vec<_> = (0..n)
                .map(|i| {
                    std::thread::spawn(move || {
                        for round in 0..5 {
                            let v = format!("t{i}r{round}");
                            must(&format!("info-set guestinfo.thread{i} {v}"));
                            let got = must(&format!("info-get guestinfo.thread{i}"));
                            assert_eq!(got, v, "thread {i} read another value");
                        }
                    })
                })
                .collect();
            let mut failed = 0;
            for h in handles {
                if h.join().is_err() {
                    failed += 1;
                }
            }
            println!("{n} threads done, {failed} failed");
            exit(if failed == 0 { 0 } else { 1 });
        }
        "fork-exec" => {
            let prog = CString::new(arg(1)).unwrap_or_default();
            let cargs: Vec<CString> = args[1..]
                .iter()
                .map(|a| CString::new(std::ffi::OsStr::new(a).as_bytes()).unwrap_or_default())
                .collect();
            let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
            argv.push(std::ptr::null());
            std::io::stdout().flush().ok();
            // SAFETY: the child only calls execv and _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: argv is a NULL-terminated array of live C strings.
                unsafe {
                    libc::execv(prog.as_ptr(), argv.as_ptr());
                    libc::_exit(127);
                }
            }
            must("info-set guestinfo.parent alive");
            let mut st = 0;
            // SAFETY: waiting for our own child; `st` is a valid out pointer.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            let code = if libc::WIFEXITED(st) {
                libc::WEXITSTATUS(st)
            } else {
                100
            };
            exit(code);
        }
        "segv" => {
            // SAFETY: deliberately not: this writes to address 8 (never mapped) to crash.
            unsafe { std::ptr::write_volatile(std::ptr::null_mut::<u64>().wrapping_add(1), 1) };
            exit(0);
        }
        "ud2" => {
            // SAFETY: deliberately not: a real UD2 raises SIGILL.
            unsafe { std::arch::asm!("ud2") };
            exit(0);
        }
        "raise" => {
            let sig: i32 = arg(1).parse().unwrap_or(libc::SIGABRT);
            must("info-set guestinfo.raise soon");
            // SAFETY: sending a signal to ourselves.
            unsafe { libc::raise(sig) };
            exit(0);
        }
        "exit" => {
            must("info-set guestinfo.exit soon");
            exit(arg(1).parse().unwrap_or(0));
        }
        "wait-term" => {
            // SAFETY: installing an async-signal-safe handler (one atomic store).
            unsafe { libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t) };
            let mut bd = transport::connect(&BackdoorSpec::Auto).unwrap_or_else(|e| {
                eprintln!("trap-guest: {e}");
                exit(3)
            });
            println!("ready");
            std::io::stdout().flush().ok();
            while !TERM.load(Ordering::SeqCst) {
                let _ = bd.call(Regs::command(cmd::GETVERSION, 0));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            must("info-set guestinfo.term received");
            exit(42);
        }
        "hold" => {
            let bd = transport::connect(&BackdoorSpec::Auto).unwrap_or_else(|e| {
                eprintln!("trap-guest: {e}");
                exit(3)
            });
            let _ch = Rpci::open(bd).unwrap_or_else(|e| {
                eprintln!("trap-guest: {e}");
                exit(3)
            });
            println!("ready");
            std::io::stdout().flush().ok();
            loop {
                std::thread::sleep(std::time::Duration::from_secs(60));
            }
        }
        "signature" => {
            println!(
                "{}",
                agent::cpuid::hypervisor_signature().unwrap_or_default()
            );
        }
        other => {
            eprintln!("trap-guest: unknown mode {other:?}");
            exit(2);
        }
    }
}
