//! `hvsim`: the simulated VMware host. Parses arguments and wires parts together.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use hvsim::{config::Config, control, demo, serve};

mod guest_cli;

/// A simulated VMware host for CI and development: backdoor endpoint for
/// guest programs, guest variables, TCLO commands.
#[derive(Debug, Parser)]
#[command(name = "hvsim", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the simulated host with all its services.
    ///
    /// At start the soft open-file limit is raised to the hard one, and
    /// hvsim checks that the VMs fit (a backdoor socket each, a BMC socket
    /// each by default, room for guest connections); when they do not, it
    /// says which LimitNOFILE to set. Guest connections, control and
    /// network clients then share that budget with per-VM and per-client
    /// caps (docs/hvsim-limits.md). `[log] file` in the config sends the
    /// log to a file rotated by size instead of stderr.
    Serve {
        /// TOML config (default: the embedded one, with one VM "vm0").
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where persistent state lives (default: state_dir from the config, else /var/lib/hvsim).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Inspect and drive the VMs of a running `hvsim serve`.
    Vm {
        /// Control socket (default: $HVSIM_CONTROL, else /run/hvsim/control.sock).
        #[arg(long, global = true)]
        control: Option<PathBuf>,
        #[command(subcommand)]
        cmd: VmCmd,
    },
    /// Run a guest program against a VM: its backdoor instructions are
    /// trapped and emulated, CPUID says VMware (x86_64 Linux, ptrace).
    Exec {
        /// VM name.
        #[arg(long)]
        vm: String,
        /// Control socket (default: $HVSIM_CONTROL, else /run/hvsim/control.sock).
        #[arg(long)]
        control: Option<PathBuf>,
        /// Run the program on a new pty attached as the VM's serial console
        /// (reachable over IPMI Serial-over-LAN): its stdin, stdout and
        /// stderr are that pty, not this terminal.
        #[arg(long)]
        console: bool,
        /// Let the program see this machine's DMI (/sys/class/dmi/id)
        /// instead of the VM's (VMware, Inc., the VM's UUID and model),
        /// which it sees by default in a private mount namespace (needs
        /// root; HVSIM_EXEC_DMI=0 does the same).
        #[arg(long)]
        no_dmi: bool,
        /// The program and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// The WBEM service of a running `hvsim serve` (CIM-XML and
    /// WS-Management), like `esxcli system wbem get|set`.
    Wbem {
        /// Control socket (default: $HVSIM_CONTROL, else /run/hvsim/control.sock).
        #[arg(long, global = true)]
        control: Option<PathBuf>,
        #[command(subcommand)]
        cmd: WbemCmd,
    },
    /// The one-command tour: start a host, run guest programs, show what the host sees.
    Demo {
        /// Keep the host running until Ctrl-C (default: when run in a terminal).
        #[arg(long, conflicts_with = "no_wait")]
        wait: bool,
        /// Exit after the tour.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
enum WbemCmd {
    /// Show the settings and state, with the fields of `esxcli system wbem get`.
    Get {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change settings; they are kept in the state directory and applied at
    /// once (listeners are closed and opened again, hvsim keeps running).
    Set {
        /// Run the WBEM service (CIM-XML and WS-Management) at all.
        #[arg(long, value_name = "BOOL")]
        enable: Option<bool>,
        /// Run WS-Management (at /wsman on its HTTPS listener).
        #[arg(long, value_name = "BOOL")]
        wsman: Option<bool>,
        /// CIM-XML HTTPS port (5989).
        #[arg(long)]
        port: Option<u16>,
        /// CIM-XML HTTP port (5988).
        #[arg(long)]
        http_port: Option<u16>,
        /// Authentication model: password (Basic, the [[user]] accounts).
        #[arg(long, value_name = "MODEL")]
        auth_model: Option<String>,
        /// Seconds an idle keep-alive connection stays open.
        #[arg(long, value_name = "SECS")]
        keepalive_timeout: Option<u64>,
        /// Requests per keep-alive connection (0: unlimited).
        #[arg(long, value_name = "N")]
        keepalive_max_requests: Option<u64>,
        /// Log level of CIM and WS-Management: debug, info, warning, error.
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
        /// TLS protocols of the HTTPS listeners: tlsv1.2, tlsv1.3 or both
        /// (comma-separated).
        #[arg(long, value_name = "LIST")]
        ssl_protocols: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum VmCmd {
    /// List the VMs.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one VM: power, tools, guest info, guest variables, and (with
    /// --json) its guest connections, cap and refusals, and the guest log
    /// lines and warnings dropped by the rate limits.
    Show {
        /// VM name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a guestinfo.* variable ("guestinfo." is added when missing).
    SetVar {
        /// VM name.
        name: String,
        /// Variable name.
        key: String,
        /// Value.
        value: String,
    },
    /// Set a tools option the guest reads, e.g. `synctime 1` (periodic
    /// time sync, GETGUIOPTIONS); persisted, and sent to a running guest
    /// agent as `Set_Option KEY VALUE`.
    SetOption {
        /// VM name.
        name: String,
        /// Option name.
        key: String,
        /// Value.
        value: String,
    },
    /// Set a key of a namespace of the namespace DB (the host side of
    /// `vmware-namespace-cmd`); without VALUE, delete it.
    NamespaceSet {
        /// VM name.
        name: String,
        /// Namespace (one of the VM's configured `namespaces`).
        namespace: String,
        /// Key.
        key: String,
        /// Value.
        value: Option<String>,
    },
    /// Print a guestinfo.* variable.
    GetVar {
        /// VM name.
        name: String,
        /// Variable name.
        key: String,
    },
    /// Change the power state: on, off, reset, cycle, soft (graceful
    /// shutdown through the guest agent), reboot (graceful).
    Power {
        /// VM name.
        name: String,
        /// The action.
        action: String,
    },
    /// Print the VM's clipboard (copy/paste must be enabled in its config).
    Clipboard {
        /// VM name.
        name: String,
        /// Set the host's clipboard to this text first.
        #[arg(long)]
        set: Option<String>,
    },
    /// Take a snapshot. With --quiesce the guest's tools freeze its file
    /// systems first (running its freeze/thaw scripts), as for a vSphere
    /// quiesced snapshot: TCLO vmbackup.startWithOpts, wait for
    /// prov.snapshotCommit, capture, vmbackup.snapshotDone, wait for
    /// req.done; a timeout or failed capture sends vmbackup.abort. Prints
    /// the record (also in `vm show --json` snapshots[]); exits 1 when the
    /// snapshot failed, with the guest's reason.
    Snapshot {
        /// VM name.
        name: String,
        /// Quiesce the guest's file systems through its tools.
        #[arg(long)]
        quiesce: bool,
        /// Seconds to wait for the guest to quiesce, and again to thaw.
        #[arg(long, default_value_t = hvsim::control::DEFAULT_SNAPSHOT_TIMEOUT_S)]
        timeout: u64,
        /// Command run by /bin/sh -c on the host while the guest is
        /// quiesced: what taking the snapshot means here (e.g. copying a
        /// disk image). Its failure aborts the quiesce. $HVSIM_VM names the VM.
        #[arg(long)]
        capture: Option<String>,
        /// Ask the guest not to run its freeze/thaw scripts.
        #[arg(long)]
        no_scripts: bool,
        /// Argument passed to the guest's freeze/thaw scripts.
        #[arg(long)]
        script_arg: Option<String>,
        /// Fault injection for testing guests: `silent` makes the host stop
        /// talking after the guest froze (no snapshotDone, no abort).
        #[arg(long)]
        fault: Option<String>,
        /// Start with `vmbackup.start 0` (older hosts): the guest uses its
        /// own settings for scripts, script argument and timeout.
        #[arg(long, conflicts_with_all = ["no_scripts", "script_arg"])]
        legacy_start: bool,
        /// Print the record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Customize the guest as vCenter does (deployPkg): build a package with
    /// the spec's cust.cfg, copy it into the guest over HGFS, deploy it, and
    /// follow the guest's reports until it succeeds or fails. Exit status 0
    /// on success.
    Customize {
        /// VM name.
        name: String,
        /// SPEC.toml: hostname, domain, time_zone, utc, password_file,
        /// dns_servers, dns_suffixes, custom_script, marker_id, [[nic]] mac,
        /// dhcp, ipv4, gateway4, ipv6, gateway6.
        #[arg(long, required_unless_present = "package")]
        spec: Option<PathBuf>,
        /// A command for the guest to run instead of applying cust.cfg
        /// itself (vCenter's way); @@IMC_TMP_PATH_VAR@@ is the directory
        /// the package is unpacked in.
        #[arg(long)]
        command: Option<String>,
        /// Another file to put in the package (repeatable), NAME=LOCALPATH
        /// or LOCALPATH.
        #[arg(long = "file")]
        files: Vec<String>,
        /// Archive format of the payload: cab (as vCenter), zip or tgz.
        #[arg(long, default_value = "cab")]
        format: String,
        /// Ask the guest not to reboot afterwards.
        #[arg(long)]
        skip_reboot: bool,
        /// Ask the guest not to hand the customization to cloud-init.
        #[arg(long)]
        ignore_cloud_init: bool,
        /// Seconds the guest may run the command (header; 0: its default).
        #[arg(long, default_value_t = 0)]
        process_timeout: u16,
        /// Send this file as the package, as it is (no spec needed).
        #[arg(long)]
        package: Option<PathBuf>,
        /// Seconds to wait for the outcome.
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Guest operations through the guest tools (VIX): run programs, list,
    /// move and delete files, upload and download, as a user of the guest.
    /// The password comes from --password-file or HVSIM_GUEST_PASSWORD,
    /// never the command line; --user defaults to root.
    Guest(guest_cli::GuestArgs),
    /// Send a TCLO command to the guest agent and print its reply.
    Tclo {
        /// VM name.
        name: String,
        /// The command, e.g. 'ping' or 'Set_Option broadcastIP 1'.
        command: String,
        /// Seconds to wait for the reply.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The tour prints its own story; the server logs its lifecycle.
    let level = match cli.cmd {
        Cmd::Serve { .. } => "info",
        _ => "warn",
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level));
    if let Cmd::Serve { config, .. } = &cli.cmd {
        // The log goes where the config says; a config that does not load
        // is reported by `run` below, on stderr.
        if let Ok(cfg) = Config::load(config.as_deref()) {
            if let Some(file) = &cfg.log.file {
                let path = cfg.resolve(file);
                match hvsim::logfile::RotatingFile::open(
                    &path,
                    cfg.log.max_size.unwrap_or(hvsim::logfile::DEFAULT_MAX_SIZE),
                    cfg.log.keep.unwrap_or(hvsim::logfile::DEFAULT_KEEP),
                ) {
                    Ok(f) => {
                        logger.target(env_logger::Target::Pipe(Box::new(f)));
                    }
                    Err(e) => {
                        eprintln!("hvsim: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    let logger = logger.build();
    let max = logger.filter();
    // The WBEM log level (`hvsim wbem set --log-level`) filters the CIM and
    // WS-Management lines on top of RUST_LOG.
    let _ = hvsim::wbem::install_logger(logger, max);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hvsim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Serve { config, state_dir } => {
            serve::block_signals();
            let cfg = Config::load(config.as_deref())?;
            let server = serve::start(&cfg, state_dir.as_deref())?;
            log::info!(
                "hvsim serving {} VM(s); state in {}",
                server.vms.len(),
                server.state_dir.display()
            );
            let sig = serve::wait_for_signal();
            log::info!("signal {sig}: shutting down");
            drop(server);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Exec {
            vm,
            control: sock,
            console,
            no_dmi,
            command,
        } => {
            let path = control::client_socket(sock.as_deref());
            // On success this process has become the program.
            match hvsim::exec::run(&path, &vm, &command[0], &command[1..], console, !no_dmi)? {}
        }
        Cmd::Demo { wait, no_wait } => {
            serve::block_signals();
            let w = if wait {
                Some(true)
            } else if no_wait {
                Some(false)
            } else {
                None
            };
            demo::run(w)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Wbem { control: sock, cmd } => {
            let path = control::client_socket(sock.as_deref());
            let v = match cmd {
                WbemCmd::Get { json } => {
                    let v = control::request(&path, &json!({"op": "wbem-get"}))?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                        return Ok(ExitCode::SUCCESS);
                    }
                    v
                }
                WbemCmd::Set {
                    enable,
                    wsman,
                    port,
                    http_port,
                    auth_model,
                    keepalive_timeout,
                    keepalive_max_requests,
                    log_level,
                    ssl_protocols,
                } => {
                    let changes = hvsim::wbem::Changes {
                        enable,
                        wsman,
                        port,
                        http_port,
                        auth_model,
                        keepalive_timeout,
                        keepalive_max_requests,
                        log_level,
                        ssl_protocols,
                    };
                    if changes == hvsim::wbem::Changes::default() {
                        anyhow::bail!("nothing to change: give at least one option (see hvsim wbem set --help)");
                    }
                    control::request(&path, &json!({"op": "wbem-set", "changes": changes}))?;
                    return Ok(ExitCode::SUCCESS);
                }
            };
            // esxcli's layout: three spaces, "Field: value", in field order.
            if let Some(m) = v.as_object() {
                for (k, val) in m {
                    if val.is_object() {
                        continue;
                    }
                    let text = match val {
                        Value::Null => String::new(),
                        other => s(other),
                    };
                    println!("   {k}: {text}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Vm { control: sock, cmd } => {
            // Output into a closed pipe (`| head`) ends the process quietly,
            // as for any Unix tool, instead of a panic in println!.
            // SAFETY: setting a signal disposition to its default.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let path = control::client_socket(sock.as_deref());
            let call = |req: Value| control::request(&path, &req);
            match cmd {
                VmCmd::List { json } => {
                    let v = call(json!({"op": "list"}))?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        println!(
                            "{:<16} {:<5} {:<12} {:<24} UUID",
                            "NAME", "POWER", "TOOLS", "HOSTNAME"
                        );
                        for vm in v.as_array().into_iter().flatten() {
                            println!(
                                "{:<16} {:<5} {:<12} {:<24} {}",
                                s(&vm["name"]),
                                s(&vm["power"]),
                                s(&vm["tools"]["status"]),
                                s(&vm["guest"]["hostname"]),
                                s(&vm["uuid"])
                            );
                        }
                    }
                }
                VmCmd::Show { name, json } => {
                    let v = call(json!({"op": "show", "vm": name}))?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        print_show(&v);
                    }
                }
                VmCmd::SetVar { name, key, value } => {
                    call(json!({"op": "set-var", "vm": name, "key": key, "value": value}))?;
                }
                VmCmd::SetOption { name, key, value } => {
                    call(json!({"op": "set-option", "vm": name, "key": key, "value": value}))?;
                }
                VmCmd::NamespaceSet {
                    name,
                    namespace,
                    key,
                    value,
                } => {
                    call(
                        json!({"op": "namespace-set", "vm": name, "namespace": namespace, "key": key, "value": value}),
                    )?;
                }
                VmCmd::Power { name, action } => {
                    call(json!({"op": "power", "vm": name, "action": action}))?;
                }
                VmCmd::Clipboard { name, set } => {
                    let v = call(json!({"op": "clipboard", "vm": name, "set": set}))?;
                    if set.is_none() {
                        print!("{}", s(&v));
                    }
                }
                VmCmd::GetVar { name, key } => {
                    let v = call(json!({"op": "get-var", "vm": name, "key": key}))?;
                    println!("{}", s(&v));
                }
                VmCmd::Snapshot {
                    name,
                    quiesce,
                    timeout,
                    capture,
                    no_scripts,
                    script_arg,
                    fault,
                    legacy_start,
                    json,
                } => {
                    let v = call(json!({
                        "op": "snapshot", "vm": name, "quiesce": quiesce,
                        "timeout_s": timeout, "capture": capture,
                        "scripts": !no_scripts, "script_arg": script_arg, "fault": fault,
                        "legacy_start": legacy_start,
                    }))?;
                    if json {
                        println!("{}", serde_json::to_string_pretty(&v)?);
                    } else {
                        println!(
                            "snapshot of {name}: {}{}",
                            s(&v["result"]),
                            if v["quiesced"] == true {
                                " (quiesced)"
                            } else {
                                ""
                            }
                        );
                        if let Some(list) = v["scripts"].as_array() {
                            let l: Vec<String> = list.iter().map(s).collect();
                            println!("guest scripts: {}", l.join(", "));
                        }
                    }
                    if v["result"] != "ok" {
                        eprintln!(
                            "hvsim: snapshot of {name} {}: {}",
                            s(&v["result"]),
                            s(&v["error"])
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                }
                VmCmd::Customize {
                    name,
                    spec,
                    command,
                    files,
                    format,
                    skip_reboot,
                    ignore_cloud_init,
                    process_timeout,
                    package,
                    timeout,
                } => {
                    let pkg = match package {
                        Some(p) => std::fs::read(&p)
                            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?,
                        None => customize_package(
                            spec.as_deref(),
                            command,
                            &files,
                            &format,
                            skip_reboot,
                            ignore_cloud_init,
                            process_timeout,
                        )?,
                    };
                    let b64 = protocol::custcfg::base64_encode(&pkg);
                    call(json!({"op": "customize", "vm": name, "package": b64}))
                        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
                    let acall = |v: Value| call(v).map_err(anyhow::Error::from);
                    return follow_customization(&acall, &name, timeout);
                }
                VmCmd::Guest(args) => return guest_cli::run(&path, args),
                VmCmd::Tclo {
                    name,
                    command,
                    timeout,
                } => {
                    let ms = (timeout.max(0.0) * 1000.0) as u64;
                    let v = call(
                        json!({"op": "tclo", "vm": name, "command": command, "timeout_ms": ms}),
                    )?;
                    let reply = s(&v);
                    println!("{reply}");
                    if !reply.starts_with("OK") {
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Build the package `hvsim vm customize` sends.
fn customize_package(
    spec: Option<&std::path::Path>,
    command: Option<String>,
    files: &[String],
    format: &str,
    skip_reboot: bool,
    ignore_cloud_init: bool,
    process_timeout: u16,
) -> Result<Vec<u8>> {
    use hvsim::customize::{build_package, native_files, PackageSpec, SpecToml};
    use protocol::deploypkg::{flags, PayloadType};
    let format = match format {
        "cab" => PayloadType::Cabinet,
        "zip" => PayloadType::Zip,
        "tgz" | "tar.gz" => PayloadType::GzippedTar,
        other => anyhow::bail!("unknown package format {other:?}: use cab, zip or tgz"),
    };
    let mut content = Vec::new();
    if let Some(path) = spec {
        let (spec, base) = SpecToml::load(path)?;
        let marker = format!(
            "hvsim-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        );
        let cust = spec.to_cust(&base, path, &marker)?;
        let script = match (&spec.custom_script, &cust.custom_script) {
            (Some(p), Some(name)) => {
                let p = base.join(p);
                let data = std::fs::read(&p)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
                Some((name.as_str(), data))
            }
            _ => None,
        };
        content = native_files(&cust, script);
    }
    for f in files {
        let (name, local) = match f.split_once('=') {
            Some((n, l)) => (n.to_string(), PathBuf::from(l)),
            None => {
                let p = PathBuf::from(f);
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (n, p)
            }
        };
        let data = std::fs::read(&local)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", local.display()))?;
        content.retain(|(n, _)| *n != name);
        content.push((name, data));
    }
    let mut fl = 0;
    if skip_reboot {
        fl |= flags::SKIP_REBOOT;
    }
    if ignore_cloud_init {
        fl |= flags::IGNORE_CLOUD_INIT;
    }
    Ok(build_package(&PackageSpec {
        format,
        command: command.unwrap_or_default(),
        flags: fl,
        process_timeout,
        files: content,
    })?)
}

/// Print the guest's customization reports until it succeeds or fails.
fn follow_customization(
    call: &dyn Fn(Value) -> Result<Value>,
    name: &str,
    timeout: f64,
) -> Result<ExitCode> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(timeout.max(0.0));
    let mut printed = 0;
    loop {
        let v = call(json!({"op": "show", "vm": name}))?;
        let c = &v["customization"];
        let events = c["events"].as_array().cloned().unwrap_or_default();
        for e in events.iter().skip(printed) {
            println!(
                "state {} ({}) code {} ({}) {}",
                s(&e["state"]),
                s(&e["state_name"]),
                s(&e["code"]),
                s(&e["code_name"]),
                s(&e["message"])
            );
        }
        printed = events.len();
        match c["status"].as_str() {
            Some("succeeded") => {
                println!("customization succeeded");
                return Ok(ExitCode::SUCCESS);
            }
            Some("failed") => {
                eprintln!(
                    "hvsim: customization failed: {} (code {})",
                    s(&c["error"]),
                    s(&c["code"])
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => {}
        }
        if std::time::Instant::now() >= deadline {
            eprintln!("hvsim: no outcome after {timeout} s; the guest reported {printed} state(s)");
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_show(v: &Value) {
    println!("name:          {}", s(&v["name"]));
    println!("uuid:          {}", s(&v["uuid"]));
    println!("power:         {}", s(&v["power"]));
    println!(
        "tools:         {} (version {}, TCLO over {})",
        s(&v["tools"]["status"]),
        s(&v["tools"]["version"]),
        s(&v["tools"]["tclo_transport"])
    );
    println!("hostname:      {}", s(&v["guest"]["hostname"]));
    println!(
        "os:            {} ({})",
        s(&v["guest"]["os_full_name"]),
        s(&v["guest"]["os_name"])
    );
    if let Some(m) = v["guest"]["memory"]["stats"].as_object() {
        println!(
            "memory:        (reported {}s ago)",
            s(&v["guest"]["memory"]["age_s"])
        );
        for (name, stat) in m {
            let value = match &stat["value"] {
                Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
                other => s(other),
            };
            println!("  {name} = {value} {}", s(&stat["unit"]));
        }
    } else if let Some(e) = v["guest"]["memory_error"].as_str() {
        println!("memory:        undecodable report: {e}");
    }
    if let Some(last) = v["snapshots"].as_array().and_then(|l| l.last()) {
        println!(
            "snapshots:     {} (last {} {}{})",
            v["snapshots"].as_array().map_or(0, Vec::len),
            s(&last["time"]),
            s(&last["result"]),
            if last["quiesced"] == true {
                ", quiesced"
            } else {
                ""
            }
        );
    }
    if let Some(o) = v["options"].as_object().filter(|o| !o.is_empty()) {
        let list: Vec<String> = o.iter().map(|(k, val)| format!("{k}={}", s(val))).collect();
        println!("options:       {}", list.join(" "));
    }
    if let Some(d) = v["devices"].as_array() {
        let list: Vec<String> = d
            .iter()
            .map(|d| {
                let on = if d["connected"] == Value::Bool(true) {
                    "connected"
                } else {
                    "disconnected"
                };
                format!("{} ({on})", s(&d["name"]))
            })
            .collect();
        println!("devices:       {}", list.join(", "));
    }
    match &v["appinfo"] {
        Value::Null => {}
        a if a["enabled"] == false => println!("appinfo:       off (cleared by the guest)"),
        a if a["error"].is_string() => println!("appinfo:       undecodable: {}", s(&a["error"])),
        a => println!(
            "appinfo:       {} applications (report {}, {})",
            s(&a["count"]),
            s(&a["update_counter"]),
            s(&a["publish_time"])
        ),
    }
    if v["customization"].is_object() {
        let c = &v["customization"];
        println!(
            "customization: {} (state {}, code {} {}){}",
            s(&c["status"]),
            s(&c["state"]),
            s(&c["code"]),
            s(&c["code_name"]),
            c["error"]
                .as_str()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    println!("backdoor:      {}", s(&v["backdoor_socket"]));
    println!("vmware.log:    {}", s(&v["vmware_log"]));
    println!("channels open: {}", s(&v["channels"]));
    println!("guestinfo:");
    if let Some(m) = v["guestinfo"].as_object() {
        for (k, val) in m {
            let text = s(val);
            let short: String = text.chars().take(60).collect();
            let more = if text.chars().count() > 60 {
                format!("... ({} bytes)", text.len())
            } else {
                String::new()
            };
            println!("  {k} = {}{more}", short.replace('\n', "\\n"));
        }
    }
}
