//! Quiesced snapshots end to end: `hvsim vm snapshot --quiesce` drives the
//! guest's vmbackup (vm-agent, and Debian's vmtoolsd with its vmbackup
//! plugin under `hvsim exec`) through the same sequences, and the test
//! checks what users rely on: the file system is really frozen while the
//! host "takes" the snapshot, scripts run with the right arguments in the
//! right order, and after every path (success, script failure, host abort,
//! host timeout, host silent, guest killed) the file system takes writes
//! again with the data written before intact.
//!
//! Safety: only a loop-mounted ext4 image made by the test is ever frozen.
//! It is mounted in a private mount namespace (held by a `sleep` process);
//! guests run inside it (nsenter). vm-agent's `[vmbackup] freeze` names
//! the loop mount, and the agent refuses a path that is not a mount point
//! in the table it sees. vmtoolsd has no such list: its
//! `excludedFileSystems` names every other mount point of the namespace
//! (checked to be expressible first), so the loop mount is the only one it
//! may freeze. Before a guest starts, the test checks that the mount point
//! is the loop device in the namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::loopfs::LoopFs;
use e2e_tests::{bin, stderr, stdout, Frontend, Sim};
use serde_json::Value;

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run command")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Agent,
    Vmtoolsd,
}

/// A guest tools daemon in the loop mount's namespace; SIGTERM on drop.
struct Guest {
    child: Option<Child>,
    log: PathBuf,
}

impl Guest {
    fn start(sim: &Sim, fs: &LoopFs, kind: Kind, n: u32) -> Guest {
        let out = fs.dir.path().join(format!("guest{n}.out"));
        Guest::start_with_output(sim, fs, kind, n, &out)
    }

    /// Start with stdout and stderr (the agent's log) going to `out`.
    fn start_with_output(sim: &Sim, fs: &LoopFs, kind: Kind, n: u32, out: &Path) -> Guest {
        Guest::start_full(sim, fs, kind, n, out, &fs.mnt)
    }

    /// Start; vm-agent's `[vmbackup] freeze` names `freeze`.
    fn start_full(sim: &Sim, fs: &LoopFs, kind: Kind, n: u32, out: &Path, freeze: &Path) -> Guest {
        let dir = fs.dir.path();
        let scripts = dir.join("scripts");
        std::fs::create_dir_all(&scripts).unwrap();
        let log = dir.join(format!("guest{n}.log"));
        let mut cmd = fs.nsenter();
        match kind {
            Kind::Agent => {
                let conf = dir.join(format!("agent{n}.toml"));
                std::fs::write(
                    &conf,
                    format!(
                        "[agent]\nreconnect_ms = 100\n[timesync]\nenabled = false\n\
                         [powerops]\nscripts_dir = \"{d}/no-power-scripts\"\n\
                         [guestinfo]\nreport_disks = false\n\
                         [vmbackup]\nfreeze = [\"{m}\"]\nscripts_dir = \"{s}\"\n\
                         pre_freeze_script = \"{d}/pre-freeze-script\"\n\
                         post_thaw_script = \"{d}/post-thaw-script\"\n\
                         state_file = \"{d}/run/vmbackup-frozen\"\n",
                        d = dir.display(),
                        m = freeze.display(),
                        s = scripts.display(),
                    ),
                )
                .unwrap();
                match e2e_tests::frontend() {
                    Frontend::Socket => {
                        cmd.arg(bin("vm-agent"))
                            .arg("--backdoor")
                            .arg(sim.backdoor("vm0"));
                    }
                    Frontend::Trap => {
                        cmd.arg(bin("hvsim"))
                            .args(["exec", "--vm", "vm0", "--"])
                            .arg(bin("vm-agent"))
                            .env("HVSIM_CONTROL", &sim.control)
                            .env_remove("VM_BACKDOOR");
                    }
                }
                cmd.arg("--config").arg(&conf).env("RUST_LOG", "debug");
            }
            Kind::Vmtoolsd => {
                // vmtoolsd reads its scripts from /etc/vmware-tools/
                // backupScripts.d: inside the namespace that directory is
                // the test's (a bind mount the machine never sees).
                let etc = dir.join("etc-vmware-tools");
                let plugins = dir.join("plugins");
                let common = dir.join("common");
                for d in [&etc, &plugins, &common] {
                    std::fs::create_dir_all(d).unwrap();
                }
                let bsd = etc.join("backupScripts.d");
                if !bsd.exists() {
                    std::os::unix::fs::symlink(&scripts, &bsd).unwrap();
                }
                let lib = "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins/vmsvc/libvmbackup.so";
                assert!(
                    Path::new(lib).exists(),
                    "{lib} is missing: install Debian's open-vm-tools"
                );
                let so = plugins.join("libvmbackup.so");
                if !so.exists() {
                    std::os::unix::fs::symlink(lib, &so).unwrap();
                }
                let o = run(fs
                    .nsenter()
                    .args(["mount", "--bind"])
                    .arg(&etc)
                    .arg("/etc/vmware-tools"));
                assert!(o.status.success(), "{}", stderr(&o));
                fs.check_is_loop_mount();
                let conf = dir.join(format!("tools{n}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "[logging]\nlog = true\nvmsvc.level = debug\nvmsvc.handler = file\n\
                         vmsvc.data = {}\n\n[vmbackup]\nexcludedFileSystems = {}\n",
                        log.display(),
                        fs.vmtoolsd_exclusions()
                    ),
                )
                .unwrap();
                cmd.arg(bin("hvsim"))
                    .args(["exec", "--vm", "vm0", "--"])
                    .arg("/usr/bin/vmtoolsd")
                    .args(["-n", "vmsvc", "-c"])
                    .arg(&conf)
                    .arg("-p")
                    .arg(&plugins)
                    .arg("--common-path")
                    .arg(&common)
                    .env("HVSIM_CONTROL", &sim.control)
                    .env_remove("VM_BACKDOOR");
            }
        }
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start the guest tools");
        let g = Guest {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while sim.show("vm0")["tools"]["status"] != "running" {
            assert!(
                Instant::now() < deadline,
                "{kind:?} did not start:\n{}",
                g.log_text(fs)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    fn log_text(&self, fs: &LoopFs) -> String {
        let out = fs.dir.path().join("guest0.out");
        format!(
            "{}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            std::fs::read_to_string(out).unwrap_or_default()
        )
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            e2e_tests::stop_child(c, Duration::from_secs(10));
        }
    }
}

/// A test script in the guest's script directory, logging `NAME $1 $2` to
/// scripts.log; `extra` runs after (e.g. a failure). (With no script
/// argument from the host, vmtoolsd 12.2 passes an empty second argument
/// and vm-agent none: logged alike.)
fn script(fs: &LoopFs, name: &str, extra: &str) {
    let dir = fs.dir.path();
    let p = dir.join("scripts").join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"{name} $1 $2\" >> '{}/scripts.log'\n{extra}\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

fn scripts_log(fs: &LoopFs) -> Vec<String> {
    std::fs::read_to_string(fs.dir.path().join("scripts.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// `hvsim vm snapshot vm0 --quiesce ARGS --json`: exit status and record.
fn snapshot(sim: &Sim, args: &[&str]) -> (bool, Value, String) {
    let mut a = vec!["vm", "snapshot", "vm0", "--quiesce", "--json"];
    a.extend_from_slice(args);
    let o = sim.hvsim(&a);
    let v: Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&o), stderr(&o)));
    (o.status.success(), v, stderr(&o))
}

fn events(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect()
}

fn setup(kind: Kind) -> (Sim, LoopFs, Guest) {
    let sim = Sim::start();
    let fs = LoopFs::new();
    let g = Guest::start(&sim, &fs, kind, 0);
    (sim, fs, g)
}

// ---- the table, run for each guest ----

/// Success: scripts in order, frozen while the host captures, thawed after.
fn success(kind: Kind) {
    let mut sim = Sim::start();
    let fs = LoopFs::new();
    // vm-agent logs onto the very file system it freezes (open-vm-tools
    // #650: a log write while frozen hangs the tools and the guest): it
    // must hold its lines until the thaw.
    let agent_log = fs.outside("agent.log");
    let g = match kind {
        Kind::Agent => Guest::start_with_output(&sim, &fs, kind, 0, &agent_log),
        Kind::Vmtoolsd => Guest::start(&sim, &fs, kind, 0),
    };
    script(&fs, "10-first", "");
    script(&fs, "20-second", "");
    // The capture command runs on the host while the guest is quiesced:
    // a write into the file system must block.
    let probe = fs.outside("probe");
    let verdict = fs.dir.path().join("verdict");
    let capture = format!(
        "(echo probe > '{p}'; echo done >> '{v}.w') & sleep 1; \
         if [ -s '{v}.w' ]; then echo not-frozen > '{v}'; else echo blocked > '{v}'; fi",
        p = probe.display(),
        v = verdict.display()
    );
    let (ok, v, err) = snapshot(
        &sim,
        &[
            "--timeout",
            "30",
            "--capture",
            &capture,
            "--script-arg",
            "nightly",
        ],
    );
    assert!(ok, "{err}\n{v:#}\n{}", g.log_text(&fs));
    assert_eq!(v["result"], "ok");
    assert_eq!(v["quiesced"], true);
    assert_eq!(
        events(&v),
        ["reset 0", "prov.snapshotCommit 0", "req.done 0"],
        "{v:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&verdict).unwrap().trim(),
        "blocked",
        "a write went through while the host took the snapshot"
    );
    assert_eq!(
        scripts_log(&fs),
        [
            "10-first freeze nightly",
            "20-second freeze nightly",
            "20-second thaw nightly",
            "10-first thaw nightly"
        ]
    );
    fs.assert_thawed("success");
    // The blocked write went through after the thaw.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&probe).unwrap_or_default() != "probe\n" {
        assert!(
            Instant::now() < deadline,
            "the blocked write never finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if kind == Kind::Agent {
        let log = std::fs::read_to_string(&agent_log).unwrap();
        let froze = log
            .find("vmbackup: froze")
            .expect("the held line was written");
        let thawed = log.find("vmbackup: thawed").expect("thaw logged");
        assert!(froze < thawed, "{log}");
    }
    let show = sim.show("vm0");
    let snaps = show["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["result"], "ok");
    assert!(snaps[0]["time"].as_str().unwrap().starts_with("20"));
    if kind == Kind::Agent {
        // vm-agent says which scripts ran (vmtoolsd does not).
        assert_eq!(
            snaps[0]["scripts"],
            serde_json::json!([
                "10-first freeze",
                "20-second freeze",
                "20-second thaw",
                "10-first thaw"
            ])
        );
        // The record is persisted with the VM's state.
        sim.kill9_and_restart();
        let snaps = sim.show("vm0")["snapshots"].clone();
        assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps:#}");
        assert_eq!(snaps[0]["result"], "ok");
        assert_eq!(snaps[0]["quiesced"], true);
    }
    drop(g);
}

/// A freeze script fails: the error reaches the host, the scripts that
/// froze get `freezeFail` in reverse, nothing stays frozen.
fn script_failure(kind: Kind) {
    let (sim, fs, g) = setup(kind);
    script(&fs, "10-ok", "");
    script(&fs, "20-fails", "[ \"$1\" = freeze ] && exit 3\nexit 0");
    script(&fs, "30-never", "");
    let (ok, v, err) = snapshot(&sim, &["--timeout", "30"]);
    assert!(!ok, "{v:#}");
    assert_eq!(v["result"], "failed", "{v:#}\n{}", g.log_text(&fs));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("Custom quiesce script failed. (script error, code 2)"),
        "{v:#}"
    );
    assert!(err.contains("Custom quiesce script failed"), "{err}");
    // Both guests report the script error, then the failed step.
    assert_eq!(
        events(&v),
        ["reset 0", "req.error 2", "req.error 5", "req.done 0"]
    );
    assert_eq!(
        scripts_log(&fs),
        ["10-ok freeze", "20-fails freeze", "10-ok freezeFail"]
    );
    fs.assert_thawed("script failure");
}

/// The host aborts mid-freeze (its capture failed): the guest thaws and
/// runs the `freezeFail` scripts.
fn host_abort(kind: Kind) {
    let (sim, fs, g) = setup(kind);
    script(&fs, "10-only", "");
    let (ok, v, _) = snapshot(&sim, &["--timeout", "30", "--capture", "exit 3"]);
    assert!(!ok);
    assert_eq!(v["result"], "aborted", "{v:#}\n{}", g.log_text(&fs));
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("capture command failed"));
    assert_eq!(
        events(&v),
        [
            "reset 0",
            "prov.snapshotCommit 0",
            "req.aborted 4",
            "req.done 0"
        ]
    );
    assert_eq!(scripts_log(&fs), ["10-only freeze", "10-only freezeFail"]);
    fs.assert_thawed("host abort");
}

/// The guest takes longer than the host's timeout: the host aborts.
fn host_timeout(kind: Kind) {
    let (sim, fs, g) = setup(kind);
    script(
        &fs,
        "10-slow",
        "[ \"$1\" = freeze ] && exec sleep 60\nexit 0",
    );
    let (ok, v, _) = snapshot(&sim, &["--timeout", "2"]);
    assert!(!ok);
    assert_eq!(v["result"], "aborted", "{v:#}\n{}", g.log_text(&fs));
    assert!(v["error"].as_str().unwrap().contains("timed out after 2 s"));
    assert_eq!(
        events(&v),
        ["reset 0", "req.aborted 4", "req.done 0"],
        "{v:#}"
    );
    fs.assert_thawed("host timeout");
}

/// The host goes silent after the commit: the guest thaws by itself when
/// its timer (the host's timeout plus 5 s) runs out.
fn host_silent(kind: Kind) {
    let (sim, fs, g) = setup(kind);
    script(&fs, "10-only", "");
    // Long enough for vmtoolsd, whose state machine steps once a second,
    // to reach the commit.
    let (ok, v, _) = snapshot(&sim, &["--timeout", "8", "--fault", "silent"]);
    assert!(!ok);
    assert_eq!(v["result"], "failed", "{v:#}\n{}", g.log_text(&fs));
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the guest gave up by itself: Quiesce canceled."),
        "{v:#}"
    );
    assert_eq!(
        events(&v),
        [
            "reset 0",
            "prov.snapshotCommit 0",
            "req.aborted 4",
            "req.done 0"
        ]
    );
    assert_eq!(scripts_log(&fs), ["10-only freeze", "10-only freezeFail"]);
    // Silence longer than 2.5 s brings keep-alives.
    assert!(v["keep_alives"].as_u64().unwrap() >= 1, "{v:#}");
    fs.assert_thawed("host silent");
}

/// A second start while one runs gets vmtoolsd's busy error.
fn busy(kind: Kind) {
    let (sim, fs, _g) = setup(kind);
    script(&fs, "10-slow", "[ \"$1\" = freeze ] && sleep 3\nexit 0");
    let ctl = sim.control.clone();
    let first = std::thread::spawn(move || {
        Command::new(bin("hvsim"))
            .args([
                "vm",
                "snapshot",
                "vm0",
                "--quiesce",
                "--timeout",
                "30",
                "--json",
            ])
            .env("HVSIM_CONTROL", ctl)
            .output()
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while sim.show("vm0")["vmbackup"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty())
    {
        assert!(
            Instant::now() < deadline,
            "the first snapshot never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = sim.hvsim(&["vm", "tclo", "vm0", "vmbackup.start 0"]);
    assert_eq!(
        stdout(&o).trim_end_matches(['\n', '\0']),
        "ERROR Quiesce operation already in progress."
    );
    // A second snapshot from the host side is refused too.
    let o2 = sim.hvsim(&["vm", "snapshot", "vm0", "--quiesce"]);
    assert!(!o2.status.success());
    assert!(
        stderr(&o2).contains("already in progress"),
        "{}",
        stderr(&o2)
    );
    let o = first.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    fs.assert_thawed("busy");
}

/// Start a silent-host snapshot in the background and wait for the commit.
fn frozen_and_silent(sim: &Sim, fs: &LoopFs) -> std::thread::JoinHandle<Output> {
    let ctl = sim.control.clone();
    let h = std::thread::spawn(move || {
        Command::new(bin("hvsim"))
            .args([
                "vm",
                "snapshot",
                "vm0",
                "--quiesce",
                "--timeout",
                "60",
                "--fault",
                "silent",
            ])
            .env("HVSIM_CONTROL", ctl)
            .output()
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = sim.show("vm0");
        let ev = v["vmbackup"]["events"].to_string();
        if ev.contains("prov.snapshotCommit") {
            break;
        }
        assert!(Instant::now() < deadline, "no commit: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !fs.write_completes("while-frozen", Duration::from_millis(500)),
        "not frozen after the commit"
    );
    h
}

#[test]
fn agent_success() {
    success(Kind::Agent);
}

#[test]
fn agent_script_failure() {
    script_failure(Kind::Agent);
}

#[test]
fn agent_host_abort() {
    host_abort(Kind::Agent);
}

#[test]
fn agent_host_timeout() {
    host_timeout(Kind::Agent);
}

#[test]
fn agent_host_silent() {
    host_silent(Kind::Agent);
}

#[test]
fn agent_busy() {
    busy(Kind::Agent);
}

#[test]
fn vmtoolsd_success() {
    success(Kind::Vmtoolsd);
}

#[test]
fn vmtoolsd_script_failure() {
    script_failure(Kind::Vmtoolsd);
}

#[test]
fn vmtoolsd_host_abort() {
    host_abort(Kind::Vmtoolsd);
}

#[test]
fn vmtoolsd_host_timeout() {
    host_timeout(Kind::Vmtoolsd);
}

#[test]
fn vmtoolsd_host_silent() {
    host_silent(Kind::Vmtoolsd);
}

#[test]
fn vmtoolsd_busy() {
    busy(Kind::Vmtoolsd);
}

/// vm-agent killed with SIGKILL while frozen: its watchdog process thaws
/// at once.
#[test]
fn agent_killed_watchdog_thaws() {
    let (sim, fs, mut g) = setup(Kind::Agent);
    let h = frozen_and_silent(&sim, &fs);
    g.kill9();
    fs.assert_thawed("agent killed");
    let o = h.join().unwrap();
    assert!(!o.status.success());
}

/// vm-agent and its watchdog both killed while frozen (as a service
/// manager killing the whole unit): the restarted agent thaws from its
/// marker.
#[test]
fn agent_killed_restart_thaws() {
    let (sim, fs, mut g) = setup(Kind::Agent);
    let h = frozen_and_silent(&sim, &fs);
    let agent = g.child.as_ref().unwrap().id() as i32;
    // The watchdog is the agent's forked child.
    let kids =
        std::fs::read_to_string(format!("/proc/{agent}/task/{agent}/children")).unwrap_or_default();
    let watchdogs: Vec<i32> = kids
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(watchdogs.len(), 1, "one watchdog process: {kids:?}");
    // SAFETY: SIGKILL to processes this test started (the agent's child).
    unsafe { libc::kill(watchdogs[0], libc::SIGKILL) };
    g.kill9();
    assert!(
        !fs.write_completes("still-frozen", Duration::from_millis(500)),
        "nothing should have thawed yet"
    );
    assert!(fs.dir.path().join("run/vmbackup-frozen").exists());
    let _g2 = Guest::start(&sim, &fs, Kind::Agent, 1);
    fs.assert_thawed("agent restarted");
    assert!(!fs.dir.path().join("run/vmbackup-frozen").exists());
    let o = h.join().unwrap();
    assert!(!o.status.success());
}

/// vmtoolsd killed with SIGKILL while frozen: nothing thaws (open-vm-tools
/// #27), not even a restarted vmtoolsd. This is the behaviour vm-agent's
/// watchdog and marker exist for; the test's clean-up thaws.
#[test]
fn vmtoolsd_killed_stays_frozen() {
    let (sim, fs, mut g) = setup(Kind::Vmtoolsd);
    let h = frozen_and_silent(&sim, &fs);
    g.kill9();
    let _g2 = Guest::start(&sim, &fs, Kind::Vmtoolsd, 1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !fs.write_completes("still-frozen", Duration::from_millis(500)),
        "vmtoolsd thawed after all"
    );
    let o = fs
        .nsenter()
        .args(["fsfreeze", "-u"])
        .arg(&fs.mnt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    fs.assert_thawed("manual thaw");
    drop(h);
}

/// Without --quiesce a snapshot is just recorded (no guest needed); with
/// it and no guest tools, a clear error.
#[test]
fn plain_snapshot_and_no_tools() {
    let sim = Sim::start();
    let o = sim.hvsim(&["vm", "snapshot", "vm0", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["result"], "ok");
    assert_eq!(v["quiesced"], false);
    let o = sim.hvsim(&["vm", "snapshot", "vm0", "--quiesce"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no guest agent is running in VM vm0"),
        "{}",
        stderr(&o)
    );
    let o = sim.hvsim(&["vm", "snapshot", "vm0", "--capture", "exit 4"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("capture command failed"),
        "{}",
        stderr(&o)
    );
    let snaps = sim.show("vm0")["snapshots"].clone();
    let results: Vec<&str> = snaps
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["ok", "failed"]);
    // A guest event with no operation in progress is refused (a guest then
    // knows the host forgot it and thaws).
    let o = sim.rpctool("vm0", &["vmbackup.eventSet req.keepAlive 0 "]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("No quiesce operation in progress"),
        "{}",
        stderr(&o)
    );
}

/// The host goes away while the guest is frozen (hvsim killed and
/// restarted): vm-agent loses its channel and thaws without waiting for
/// its timer.
#[test]
fn agent_host_channel_gone_thaws() {
    if e2e_tests::frontend() == Frontend::Trap {
        // Under `hvsim exec` the guest is traced by hvsim itself: killing
        // the host kills the guest, so there is no guest left to thaw.
        eprintln!("skipped with the trap frontend: the guest dies with the host");
        return;
    }
    let (mut sim, fs, g) = setup(Kind::Agent);
    let h = frozen_and_silent(&sim, &fs);
    sim.kill9_and_restart();
    fs.assert_thawed("host gone");
    let o = h.join().unwrap();
    assert!(!o.status.success());
    // The log lines held while frozen come out after the thaw.
    sim.eventually("the agent's abort in its log", || {
        g.log_text(&fs).contains("vmbackup: operation aborted")
    });
}

/// `vmbackup.start 0` (older hosts): the guest's own settings; scripts run
/// as with startWithOpts.
fn legacy_start(kind: Kind) {
    let (sim, fs, g) = setup(kind);
    script(&fs, "10-only", "");
    let (ok, v, err) = snapshot(&sim, &["--timeout", "30", "--legacy-start"]);
    assert!(ok, "{err}\n{v:#}\n{}", g.log_text(&fs));
    assert_eq!(
        events(&v),
        ["reset 0", "prov.snapshotCommit 0", "req.done 0"],
        "{v:#}"
    );
    assert_eq!(scripts_log(&fs), ["10-only freeze", "10-only thaw"]);
    fs.assert_thawed("legacy start");
}

#[test]
fn agent_legacy_start() {
    legacy_start(Kind::Agent);
}

#[test]
fn vmtoolsd_legacy_start() {
    legacy_start(Kind::Vmtoolsd);
}

/// A `[vmbackup] freeze` entry that is not a mount point is refused (it
/// would freeze the file system holding it): the snapshot fails with that
/// reason and nothing is frozen.
#[test]
fn agent_refuses_a_freeze_path_that_is_not_a_mount_point() {
    let sim = Sim::start();
    let fs = LoopFs::new();
    let plain = fs.dir.path().join("not-a-mount");
    std::fs::create_dir(&plain).unwrap();
    let out = fs.dir.path().join("guest0.out");
    let g = Guest::start_full(&sim, &fs, Kind::Agent, 0, &out, &plain);
    script(&fs, "10-only", "");
    let (ok, v, err) = snapshot(&sim, &["--timeout", "30"]);
    assert!(!ok, "{v:#}");
    assert_eq!(v["result"], "failed", "{v:#}\n{}", g.log_text(&fs));
    let want = format!(
        "{} (in [vmbackup] freeze) is not a mount point; not freezing anything",
        plain.display()
    );
    assert!(v["error"].as_str().unwrap().contains(&want), "{v:#}");
    assert!(err.contains("sync error, code 3"), "{err}");
    assert_eq!(scripts_log(&fs), ["10-only freeze", "10-only freezeFail"]);
    fs.assert_thawed("refused");
}

/// vm-agent hung while frozen (SIGSTOP): its watchdog process thaws when
/// the operation's timer (host timeout + 5 s) plus 5 s has passed; the
/// agent, continued, ends the operation cleanly.
#[test]
fn agent_hung_watchdog_thaws_after_the_timer() {
    let (sim, fs, g) = setup(Kind::Agent);
    let ctl = sim.control.clone();
    let h = std::thread::spawn(move || {
        Command::new(bin("hvsim"))
            .args([
                "vm",
                "snapshot",
                "vm0",
                "--quiesce",
                "--timeout",
                "2",
                "--fault",
                "silent",
                "--json",
            ])
            .env("HVSIM_CONTROL", ctl)
            .output()
            .unwrap()
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.show("vm0")["vmbackup"]["events"]
        .to_string()
        .contains("prov.snapshotCommit")
    {
        assert!(Instant::now() < deadline, "no commit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = g.child.as_ref().unwrap().id() as i32;
    // SAFETY: signalling the agent this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert!(
        !fs.write_completes("while-hung", Duration::from_millis(500)),
        "not frozen after the commit"
    );
    // The agent's timer is 7 s, the watchdog's 12 s: within 30 s it thaws.
    assert!(
        fs.write_completes("thawed-by-watchdog", Duration::from_secs(30)),
        "the watchdog did not thaw"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let o = h.join().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The host gave up on a guest that stopped polling.
    assert_eq!(v["result"], "failed", "{v:#}");
    fs.assert_thawed("agent hung");
    // Continued, the agent ends its operation (its thaw finds nothing frozen).
    sim.eventually("the agent to end its operation", || {
        g.log_text(&fs).contains("vmbackup: quiesce operation over")
    });
}
