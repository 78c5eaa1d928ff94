//! Clipboard end to end: a real X server (Xvfb, its own display), xclip as
//! the desktop program that copies and pastes, `vm-agent --session` in that
//! "session", and `hvsim serve` with `hvsim vm clipboard` as the host side.
//!
//! Limits (open-vm-tools' MAX_SELECTION_BUFFER_LENGTH = 65436, terminator
//! included): guest text goes to the host cut to 65435 bytes at a character
//! boundary; the host hands the guest at most 65436 bytes (hvsim cuts a
//! longer `--set`, and the agent refuses a longer host selection).
//!
//! `HVSIM_E2E_FRONTEND=trap` runs the agent under `hvsim exec` (real port
//! I/O, trapped) instead of the socket transport.
//!
//! Xvfb and xclip come from scripts/test-deps.sh; if they are missing or the
//! X server does not start, these tests fail.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, frontend, stderr, stdout, Frontend, Sim};

/// The selection limit, terminator included (tclodefs.h).
const MAX_SELECTION: usize = 65436;
/// Longest guest text the host gets.
const MAX_GUEST_TEXT: usize = MAX_SELECTION - 1;

/// An Xvfb on a display it picks itself (`-displayfd`: no clash with other
/// tests or servers); killed on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start(log: PathBuf) -> Xvfb {
        let logf = std::fs::File::create(log).unwrap();
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp", "-noreset"])
            .args(["-screen", "0", "640x480x24"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .expect("run Xvfb (Debian package xvfb; scripts/test-deps.sh installs it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let n: u32 = match line.trim().parse() {
            Ok(n) => n,
            Err(_) => {
                let _ = child.kill();
                let st = child.wait();
                panic!("Xvfb did not start (said {line:?}, {st:?})");
            }
        };
        Xvfb {
            child,
            display: format!(":{n}"),
        }
    }

    /// Put `text` on the CLIPBOARD selection, as a desktop program does
    /// (xclip forks and keeps serving it until another program takes it).
    fn copy(&self, text: &str) {
        let mut c = Command::new("xclip")
            .args(["-selection", "clipboard", "-i"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run xclip (Debian package xclip; scripts/test-deps.sh installs it)");
        c.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success(), "xclip -i failed");
    }

    /// The CLIPBOARD selection's text, as a desktop program pastes it;
    /// `None` when there is none.
    fn paste(&self) -> Option<String> {
        let o = Command::new("xclip")
            .args(["-o", "-selection", "clipboard"])
            .env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .output()
            .expect("run xclip");
        o.status.success().then(|| stdout(&o))
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vm-agent --session` on the Xvfb, against one VM; SIGTERM on drop.
struct Session {
    child: Option<Child>,
    log: PathBuf,
}

impl Session {
    fn start(sim: &Sim, vm: &str, x: &Xvfb) -> Session {
        let dir = sim.dir.path();
        let config = dir.join("session.toml");
        std::fs::write(&config, "[agent]\nreconnect_ms = 100\n").unwrap();
        let log = dir.join("session.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = match frontend() {
            Frontend::Socket => {
                let mut c = Command::new(bin("vm-agent"));
                c.args(["--backdoor", &sim.backdoor(vm)]);
                c
            }
            // Real port I/O, trapped: `auto` finds VMware by CPUID.
            Frontend::Trap => sim.exec(vm, &bin("vm-agent")),
        };
        let child = cmd
            .arg("--session")
            .arg("--config")
            .arg(&config)
            .env("DISPLAY", &x.display)
            // The agent must cope without it (plain X sessions, Xvfb).
            .env_remove("XDG_SESSION_TYPE")
            .env_remove("WAYLAND_DISPLAY")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start vm-agent --session");
        let s = Session {
            child: Some(child),
            log,
        };
        s.wait_log("connected to the host");
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "vm-agent --session did not log {what:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn count(&self, what: &str) -> usize {
        self.log().matches(what).count()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            e2e_tests::stop_child(c, Duration::from_secs(5));
        }
    }
}

fn host_text(sim: &Sim, vm: &str) -> String {
    let o = sim.hvsim(&["vm", "clipboard", vm]);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

fn host_set(sim: &Sim, vm: &str, text: &str) {
    let o = sim.hvsim(&["vm", "clipboard", vm, "--set", text]);
    assert!(o.status.success(), "{}", stderr(&o));
}

fn rig(config: &str) -> (Sim, Xvfb, Session) {
    let sim = Sim::with_config(config);
    let x = Xvfb::start(sim.dir.path().join("xvfb.log"));
    let s = Session::start(&sim, "vm0", &x);
    (sim, x, s)
}

/// Wait (10 s at most) until the guest's clipboard reads `want`.
fn guest_sees(sim: &Sim, x: &Xvfb, s: &Session, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = x.paste();
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest clipboard holds {} bytes {:?}..., not {} bytes {:?}...\nagent:\n{}\nhvsim:\n{}",
            got.as_ref().map_or(0, String::len),
            got.as_deref().map(|g| &g[..g.len().min(40)]),
            want.len(),
            &want[..want.len().min(40)],
            s.log(),
            sim.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait (10 s at most) until the host's clipboard reads `want`.
fn host_sees(sim: &Sim, s: &Session, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = host_text(sim, "vm0");
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host clipboard holds {} bytes {:?}..., not {} bytes {:?}...\nagent:\n{}",
            got.len(),
            &got[..got.len().min(40)],
            want.len(),
            &want[..want.len().min(40)],
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host to guest and guest to host, multi-line and non-ASCII, and nothing
/// echoed: text from the host is not sent back as a guest change.
#[test]
fn text_crosses_both_ways() {
    let (sim, x, s) = rig("[[vm]]\nname = \"vm0\"\nclipboard = true\n");

    let from_host = "host line 1\nhôst línea 2 ✓\n日本語 🎉";
    host_set(&sim, "vm0", from_host);
    guest_sees(&sim, &x, &s, from_host);

    let from_guest = "guest says\nzwei Zeilen: grüße\n\tи ещё одна\n";
    x.copy(from_guest);
    host_sees(&sim, &s, from_guest);
    assert_eq!(x.paste().as_deref(), Some(from_guest));

    let again = "second host text, longer than the first ✓✓";
    host_set(&sim, "vm0", again);
    guest_sees(&sim, &x, &s, again);
    // Several host polls later, the host still holds its own text and the
    // agent sent exactly one text the other way (the guest's copy).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host_text(&sim, "vm0"), again);
    assert_eq!(s.count("guest -> host"), 1, "{}", s.log());
    assert_eq!(s.count("host -> guest"), 2, "{}", s.log());
}

/// At and over the limit, both ways.
#[test]
fn text_at_and_over_the_limit() {
    let (sim, x, s) = rig("[[vm]]\nname = \"vm0\"\nclipboard = true\n");

    // Host over the limit: hvsim keeps MAX_SELECTION bytes, all of which reach
    // the guest.
    host_set(&sim, "vm0", &"o".repeat(70_000));
    guest_sees(&sim, &x, &s, &"o".repeat(MAX_SELECTION));

    // Guest at the limit: crosses whole.
    let at = "g".repeat(MAX_GUEST_TEXT);
    x.copy(&at);
    host_sees(&sim, &s, &at);

    // Host at the limit: crosses whole.
    let at = "a".repeat(MAX_SELECTION);
    host_set(&sim, "vm0", &at);
    guest_sees(&sim, &x, &s, &at);

    // Guest over the limit with a 2-byte character across the cut: the
    // host gets the text up to the character, and the guest keeps its
    // whole text (the host's shorter copy is not pulled back).
    let over = format!("{}é{}", "x".repeat(MAX_GUEST_TEXT - 1), "y".repeat(100));
    x.copy(&over);
    host_sees(&sim, &s, &"x".repeat(MAX_GUEST_TEXT - 1));

    // Guest far over the limit, ASCII: cut at exactly MAX_GUEST_TEXT bytes.
    let over = format!("{}{}", "z".repeat(MAX_GUEST_TEXT), "tail".repeat(2000));
    x.copy(&over);
    host_sees(&sim, &s, &"z".repeat(MAX_GUEST_TEXT));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(x.paste().as_deref(), Some(over.as_str()));
    assert_eq!(s.count("host -> guest"), 2, "{}", s.log());
}

/// A VM without `clipboard = true`: the guest is told not to exchange, and
/// nothing crosses in either direction.
#[test]
fn disabled_vm_exchanges_nothing() {
    let (sim, x, s) = rig("[[vm]]\nname = \"vm0\"\n");
    s.wait_log("the host does not allow copy/paste");

    let o = sim.hvsim(&["vm", "clipboard", "vm0", "--set", "host secret"]);
    assert_eq!(o.status.code(), Some(1), "the host side refuses too");
    assert!(
        stderr(&o).contains("copy/paste is disabled"),
        "{}",
        stderr(&o)
    );

    x.copy("guest secret\nline 2");
    // Well past several host polls (500 ms) and the watcher's interval.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(host_text(&sim, "vm0"), "", "nothing reached the host");
    assert_eq!(x.paste().as_deref(), Some("guest secret\nline 2"));
    let log = s.log();
    assert!(!log.contains("guest -> host"), "{log}");
    assert!(!log.contains("host -> guest"), "{log}");
    assert_eq!(sim.show("vm0")["clipboard"]["length"], 0);
}

/// Session mode needs a display, and says so.
#[test]
fn session_without_display_fails_clearly() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\nclipboard = true\n");
    let o = Command::new(bin("vm-agent"))
        .args(["--session", "--backdoor", &sim.backdoor("vm0")])
        .args(["--config", "/dev/null"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("XDG_SESSION_TYPE")
        .stdin(Stdio::null())
        .output()
        .expect("run vm-agent");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("DISPLAY is not set"), "{}", stderr(&o));
}
