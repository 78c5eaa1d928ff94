//! Guest customization (deployPkg): hvsim builds packages as vCenter does,
//! vm-agent applies them in a throwaway root, and Debian's vmtoolsd (its
//! deployPkg plugin) is held to the same states and codes.
//!
//! Nothing here touches the machine: vm-agent writes only under a prepared
//! tree (`[customization] root`), runs in a private mount namespace where
//! /etc is read-only, and its reboot and password commands are stubs that
//! record what they got. vmtoolsd only ever gets packages whose command
//! records its arguments (never a bare cust.cfg, which it would apply to
//! the machine), always with the skip-reboot flag, in a private mount
//! namespace where /run and /var/log are fresh, /etc is read-only and
//! systemctl and telinit are stubs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::{bin, stderr, stdout, Sim};
use hvsim::customize::{build_package, native_files, PackageSpec, SpecToml};
use protocol::deploypkg::{flags, PayloadType};

/// A running vm-agent; stopped on drop.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            e2e_tests::stop_child(c, Duration::from_secs(5));
        }
    }
}

impl Agent {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A prepared guest tree and the files around it.
struct Guest {
    dir: tempfile::TempDir,
}

impl Guest {
    /// A tree with /etc/hosts, a zone database entry, `sys/class/net` for
    /// two NICs, and what makes `stack` the detected network stack.
    fn new(stack: &str) -> Guest {
        let dir = tempfile::Builder::new()
            .prefix("hvsim-cust")
            .tempdir()
            .unwrap();
        let g = Guest { dir };
        g.write(
            "etc/hosts",
            "127.0.0.1\tlocalhost\n127.0.1.1\ttemplate\n::1\tlocalhost ip6-localhost\n",
        );
        g.write("etc/hostname", "template\n");
        g.write("usr/share/zoneinfo/Europe/Berlin", "TZif fake\n");
        g.write("sys/class/net/ens192/address", "00:50:56:aa:00:01\n");
        g.write("sys/class/net/ens224/address", "00:50:56:aa:00:02\n");
        std::fs::create_dir_all(g.root().join("var/run/vmware-imc")).unwrap();
        match stack {
            "netplan" => {
                std::fs::create_dir_all(g.root().join("etc/netplan")).unwrap();
                g.write("usr/sbin/netplan", "");
            }
            "networkmanager" => {
                std::fs::create_dir_all(g.root().join("etc/NetworkManager/system-connections"))
                    .unwrap();
                g.write("usr/sbin/NetworkManager", "");
            }
            "networkd" => {
                g.write(
                    "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
                    "",
                );
            }
            "ifupdown" => g.write(
                "etc/network/interfaces",
                "auto lo\niface lo inet loopback\n",
            ),
            other => panic!("no stack {other}"),
        }
        std::fs::create_dir_all(g.dir.path().join("out")).unwrap();
        g
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.root().join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}\ntree: {:#?}", self.snapshot().keys()))
    }

    /// Every path under the root (but the deployment log and the package
    /// directories) with its content, link target and mode.
    fn snapshot(&self) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                if rel.starts_with("var/log") || rel.starts_with("var/run") {
                    continue;
                }
                let m = std::fs::symlink_metadata(&p).unwrap();
                use std::os::unix::fs::PermissionsExt;
                let mode = m.permissions().mode();
                if m.file_type().is_symlink() {
                    out.insert(
                        rel,
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    );
                } else if m.is_dir() {
                    out.insert(rel, format!("dir {mode:o}"));
                    walk(base, &p, out);
                } else {
                    let body = std::fs::read_to_string(&p).unwrap_or_default();
                    out.insert(rel, format!("{mode:o} {body}"));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root(), &self.root(), &mut out);
        out
    }

    /// vm-agent on `vm` with this tree as its root, in a private mount
    /// namespace with /etc read-only.
    fn agent(&self, sim: &Sim, vm: &str, extra: &str) -> Agent {
        let config = self.dir.path().join("agent.toml");
        // No cloud-init unless the test brings its own.
        let cloud = if extra.contains("cloud_init") {
            ""
        } else {
            "cloud_init = false\n"
        };
        std::fs::write(
            &config,
            format!(
                "[agent]\nlog_level = \"debug\"\n[guestinfo]\nenabled = false\n[timesync]\nenabled = false\n\
                 [powerops]\nenabled = false\n[customization]\nroot = \"{}\"\n{cloud}\
                 reboot_command = \"echo reboot >> {}\"\npassword_command = \"cat >> {}\"\n{extra}",
                self.root().display(),
                self.out("reboots").display(),
                self.out("password").display(),
            ),
        )
        .unwrap();
        let log = self.dir.path().join("agent.log");
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args([
                "-m",
                "--",
                "sh",
                "-c",
                "mount --bind -o ro /etc /etc && exec \"$0\" \"$@\"",
            ])
            .arg(bin("vm-agent"))
            .arg("--backdoor")
            .arg(sim.backdoor(vm))
            .arg("--config")
            .arg(&config)
            .env_remove("VM_BACKDOOR")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .spawn()
            .expect("start vm-agent");
        let agent = Agent {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while sim.show(vm)["tools"]["status"] != "running" {
            assert!(
                Instant::now() < deadline,
                "vm-agent did not start:\n{}",
                agent.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        agent
    }
}

/// SPEC.toml for two NICs (static v4+v6, DHCP), DNS, time zone, password.
const SPEC: &str = r#"
hostname = "web1"
domain = "example.test"
time_zone = "Europe/Berlin"
utc = true
password_file = "pw"
dns_servers = ["192.0.2.53", "2001:db8::53"]
dns_suffixes = ["example.test", "corp.test"]
marker_id = "marker-1"

[[nic]]
mac = "00:50:56:AA:00:01"
ipv4 = "192.0.2.10/24"
gateway4 = "192.0.2.1"
ipv6 = ["2001:db8::10/64"]
gateway6 = "2001:db8::1"

[[nic]]
mac = "00:50:56:aa:00:02"
dhcp = true
"#;

/// A native package from [`SPEC`] (plus `extra` TOML lines).
fn native_package(g: &Guest, extra: &str, format: PayloadType, fl: u8) -> Vec<u8> {
    let spec_path = g.dir.path().join("spec.toml");
    std::fs::write(g.dir.path().join("pw"), "s3cret-pw\n").unwrap();
    std::fs::write(&spec_path, format!("{extra}\n{SPEC}")).unwrap();
    let (spec, base) = SpecToml::load(&spec_path).unwrap();
    let cust = spec.to_cust(&base, &spec_path, "unused").unwrap();
    let script = spec.custom_script.as_ref().map(|p| {
        (
            cust.custom_script.clone().unwrap(),
            std::fs::read(base.join(p)).unwrap(),
        )
    });
    let files = native_files(&cust, script.as_ref().map(|(n, d)| (n.as_str(), d.clone())));
    build_package(&PackageSpec {
        format,
        command: String::new(),
        flags: fl,
        process_timeout: 0,
        files,
    })
    .unwrap()
}

/// The `(state, code)` of each report.
type Codes = Vec<(u64, Option<u64>)>;

/// Where a guest path is on this machine (for vmtoolsd, whose package
/// directory is a bind mount of a test directory).
type PathMap<'a> = &'a dyn Fn(&str) -> PathBuf;

/// Deliver `pkg` as a VMX does (begin, the file into the directory the
/// guest named, deploy) and wait until the guest removed the package: the
/// deployment ended. The reports hvsim recorded, as `(state, code)` and
/// messages, and the deploy reply.
fn deliver(
    sim: &Sim,
    vm: &str,
    pkg: Option<&[u8]>,
    map: PathMap,
    private: bool,
) -> (Codes, Vec<String>, String) {
    let o = sim.hvsim(&["vm", "tclo", vm, "deployPkg.begin"]);
    let reply = stdout(&o);
    let dir = reply
        .trim()
        .strip_prefix("OK ")
        .unwrap_or_else(|| panic!("deployPkg.begin: {reply}{}", stderr(&o)))
        .to_string();
    assert!(dir.ends_with('/'), "{dir}");
    let local_dir = map(&dir);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&local_dir).unwrap().permissions().mode();
    // vm-agent's is private; vmtoolsd's is 0755 (umask).
    if private {
        assert_eq!(mode & 0o777, 0o700, "the package directory is private");
    }
    let guest_path = format!("{dir}hvsim-customization.pkg");
    let local = map(&guest_path);
    if let Some(p) = pkg {
        std::fs::write(&local, p).unwrap();
    }
    let o = sim.hvsim(&["vm", "tclo", vm, &format!("deployPkg.deploy {guest_path}")]);
    let deploy_reply = stdout(&o).trim().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while local.exists() {
        assert!(Instant::now() < deadline, "the deployment did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = &sim.show(vm)["customization"];
    let events = c["events"].as_array().cloned().unwrap_or_default();
    (
        events
            .iter()
            .map(|e| (e["state"].as_u64().unwrap(), e["code"].as_u64()))
            .collect(),
        events
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("").to_string())
            .collect(),
        deploy_reply,
    )
}

fn identity(p: &str) -> PathBuf {
    PathBuf::from(p)
}

const LOG: &str = "/var/log/vmware-imc/toolsDeployPkg.log";

/// One `key=value` of an INI-style file's section.
fn ini_values(text: &str, section: &str, key: &str) -> Vec<String> {
    let mut cur = String::new();
    let mut out = Vec::new();
    for l in text.lines() {
        let l = l.trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            cur = s.to_string();
        } else if cur == section {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == key {
                    out.push(v.trim().to_string());
                }
            }
        }
    }
    out
}

/// Apply [`SPEC`] through vm-agent for `stack`; check what every reader
/// of the files gets; deploy the same marker again and see nothing change.
fn customize_for(stack: &str) -> Guest {
    let g = Guest::new(stack);
    let sim = Sim::start();
    let _agent = g.agent(&sim, "vm0", "");
    let pkg = native_package(&g, "", PayloadType::Cabinet, 0);
    let (codes, msgs, reply) = deliver(&sim, "vm0", Some(&pkg), &identity, true);
    assert_eq!(reply, "OK");
    let c = sim.show("vm0")["customization"].clone();
    assert_eq!(c["status"], "succeeded", "{c:#}\n{}", _agent.log());
    // As vmtoolsd: DEPLOYING, RUNNING, the NIC reconnect exchange for
    // nics.txt (answered by hvsim), DONE.
    assert_eq!(
        codes,
        [
            (3, None),
            (4, Some(0)),
            (4, Some(103)),
            (4, Some(104)),
            (5, Some(0))
        ],
        "{msgs:?}"
    );
    assert_eq!(msgs[1], LOG);
    assert_eq!(msgs[2], format!("{LOG}@1,2"));
    assert_eq!(c["nics_connected"], true);
    // Host name, hosts, time zone, clock, password, reboot.
    assert_eq!(g.read("etc/hostname"), "web1\n");
    assert_eq!(
        g.read("etc/hosts"),
        "127.0.0.1\tlocalhost\n127.0.1.1\tweb1.example.test web1\n::1\tlocalhost ip6-localhost\n"
    );
    assert_eq!(
        std::fs::read_link(g.root().join("etc/localtime")).unwrap(),
        Path::new("/usr/share/zoneinfo/Europe/Berlin")
    );
    assert_eq!(g.read("etc/timezone"), "Europe/Berlin\n");
    assert_eq!(g.read("etc/adjtime").lines().nth(2), Some("UTC"));
    assert_eq!(
        std::fs::read_to_string(g.out("password")).unwrap(),
        "root:s3cret-pw\n"
    );
    assert_eq!(
        std::fs::read_to_string(g.out("reboots")).unwrap(),
        "reboot\n"
    );
    assert!(g
        .root()
        .join("var/lib/vm-agent/customization/marker-marker-1")
        .exists());
    assert!(
        std::fs::read_to_string(g.root().join("var/log/vmware-imc/toolsDeployPkg.log"))
            .unwrap()
            .contains(&format!("network stack: {stack}")),
    );

    // The same marker again: reported done, nothing written, no reboot.
    let before = g.snapshot();
    let (codes, msgs, _) = deliver(&sim, "vm0", Some(&pkg), &identity, true);
    assert_eq!(codes, [(3, None), (4, Some(0)), (5, Some(0))], "{msgs:?}");
    assert!(msgs[2].contains("already customized"), "{msgs:?}");
    assert_eq!(
        g.snapshot(),
        before,
        "a second deploy of the marker changed files"
    );
    assert_eq!(
        std::fs::read_to_string(g.out("reboots")).unwrap(),
        "reboot\n"
    );
    g
}

#[test]
fn networkd_reads_the_static_and_dhcp_nics() {
    let g = customize_for("networkd");
    let n1 = g.read("etc/systemd/network/10-vm-agent-nic1.network");
    assert_eq!(
        ini_values(&n1, "Match", "MACAddress"),
        ["00:50:56:aa:00:01"]
    );
    assert_eq!(ini_values(&n1, "Network", "DHCP"), ["no"]);
    assert_eq!(
        ini_values(&n1, "Network", "Address"),
        ["192.0.2.10/24", "2001:db8::10/64"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "Gateway"),
        ["192.0.2.1", "2001:db8::1"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "DNS"),
        ["192.0.2.53", "2001:db8::53"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "Domains"),
        ["example.test corp.test"]
    );
    let n2 = g.read("etc/systemd/network/10-vm-agent-nic2.network");
    assert_eq!(ini_values(&n2, "Network", "DHCP"), ["ipv4"]);
    assert_eq!(ini_values(&n2, "DHCPv4", "UseDNS"), ["no"]);
}

#[test]
fn netplan_generates_networkd_files_from_ours() {
    let g = customize_for("netplan");
    use std::os::unix::fs::PermissionsExt;
    let yaml = g.root().join("etc/netplan/99-vm-agent.yaml");
    assert_eq!(
        std::fs::metadata(&yaml).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // netplan itself reads the file and renders it for networkd
    // (scripts/test-deps.sh installs netplan.io).
    let o = Command::new("netplan")
        .arg("generate")
        .arg("--root-dir")
        .arg(g.root())
        .output()
        .expect("run netplan (install netplan.io; scripts/test-deps.sh does)");
    assert!(o.status.success(), "netplan generate: {}", stderr(&o));
    let n1 = g.read("run/systemd/network/10-netplan-nic1.network");
    assert_eq!(
        ini_values(&n1, "Match", "PermanentMACAddress"),
        ["00:50:56:aa:00:01"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "Address"),
        ["192.0.2.10/24", "2001:db8::10/64"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "DNS"),
        ["192.0.2.53", "2001:db8::53"]
    );
    assert_eq!(
        ini_values(&n1, "Network", "Domains"),
        ["example.test corp.test"]
    );
    let gws: Vec<String> = ini_values(&n1, "Route", "Gateway");
    assert_eq!(gws, ["192.0.2.1", "2001:db8::1"], "{n1}");
    let n2 = g.read("run/systemd/network/10-netplan-nic2.network");
    assert_eq!(ini_values(&n2, "Network", "DHCP"), ["ipv4"], "{n2}");
}

#[test]
fn networkmanager_keyfiles_match_by_mac() {
    let g = customize_for("networkmanager");
    let k = g.read("etc/NetworkManager/system-connections/vm-agent-nic1.nmconnection");
    assert_eq!(ini_values(&k, "connection", "type"), ["ethernet"]);
    assert_eq!(
        ini_values(&k, "ethernet", "mac-address"),
        ["00:50:56:AA:00:01"]
    );
    assert_eq!(ini_values(&k, "ipv4", "method"), ["manual"]);
    assert_eq!(
        ini_values(&k, "ipv4", "address1"),
        ["192.0.2.10/24,192.0.2.1"]
    );
    assert_eq!(ini_values(&k, "ipv4", "dns"), ["192.0.2.53;"]);
    assert_eq!(
        ini_values(&k, "ipv4", "dns-search"),
        ["example.test;corp.test;"]
    );
    assert_eq!(
        ini_values(&k, "ipv6", "address1"),
        ["2001:db8::10/64,2001:db8::1"]
    );
    assert_eq!(ini_values(&k, "ipv6", "dns"), ["2001:db8::53;"]);
    let uuid = ini_values(&k, "connection", "uuid");
    assert_eq!(uuid[0].len(), 36, "{uuid:?}");
    let k2 = g.read("etc/NetworkManager/system-connections/vm-agent-nic2.nmconnection");
    assert_eq!(ini_values(&k2, "ipv4", "method"), ["auto"]);
    assert_eq!(ini_values(&k2, "ipv4", "ignore-auto-dns"), ["true"]);
}

#[test]
fn ifupdown_names_the_interfaces_with_those_macs() {
    let g = customize_for("ifupdown");
    let t = g.read("etc/network/interfaces");
    // ifupdown's stanzas: `iface NAME FAMILY METHOD` and indented options.
    let mut stanzas: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cur = String::new();
    for l in t.lines() {
        if let Some(rest) = l.strip_prefix("iface ") {
            cur = rest.to_string();
            stanzas.entry(cur.clone()).or_default();
        } else if l.starts_with("    ") {
            stanzas.get_mut(&cur).unwrap().push(l.trim().to_string());
        }
    }
    assert_eq!(
        stanzas["ens192 inet static"],
        [
            "address 192.0.2.10/24",
            "gateway 192.0.2.1",
            "dns-nameservers 192.0.2.53 2001:db8::53",
            "dns-search example.test corp.test"
        ]
    );
    assert_eq!(
        stanzas["ens192 inet6 static"],
        ["address 2001:db8::10/64", "gateway 2001:db8::1"]
    );
    assert!(stanzas.contains_key("ens224 inet dhcp"), "{t}");
    assert!(
        t.contains("auto ens192\n") && t.contains("auto ens224\n"),
        "{t}"
    );
    let r = g.read("etc/resolv.conf");
    assert!(r.contains("search example.test corp.test\n"), "{r}");
    assert!(
        r.contains("nameserver 192.0.2.53\nnameserver 2001:db8::53\n"),
        "{r}"
    );
}

#[test]
fn refusals_and_bad_packages_change_nothing() {
    let g = Guest::new("networkd");
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let agent = g.agent(&sim, "vm0", "");
    let before = g.snapshot();
    let fail = |pkg: Option<&[u8]>| {
        let (codes, msgs, reply) = deliver(&sim, "vm0", pkg, &identity, true);
        let c = sim.show("vm0")["customization"].clone();
        (codes, msgs, reply, c)
    };

    // A custom script while [customization] custom_scripts is false: code 6.
    std::fs::write(
        g.dir.path().join("script01.bat"),
        "#!/bin/sh\necho ran >> /dev/null\n",
    )
    .unwrap();
    let pkg = native_package(&g, "custom_script = \"script01.bat\"", PayloadType::Zip, 0);
    let (codes, msgs, _, c) = fail(Some(&pkg));
    assert_eq!(
        codes,
        [(3, None), (4, Some(0)), (4, Some(6))],
        "{msgs:?}\n{}",
        agent.log()
    );
    assert_eq!(c["status"], "failed");
    assert_eq!(c["code_name"], "custom-script-disabled");

    // Not a package: RUNNING, then a customize-failed report that says why.
    let (codes, msgs, _, c) = fail(Some(b"VMWAREDEPLOY but far too short"));
    assert_eq!(codes, [(3, None), (4, Some(0)), (4, Some(100))]);
    assert!(
        msgs[2].starts_with(&format!("{LOG}@bad package header")),
        "{msgs:?}"
    );
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("shorter than its 512-byte header"),
        "{c:#}"
    );

    // A header whose payload is not the archive it claims.
    let mut pkg = native_package(&g, "", PayloadType::GzippedTar, 0);
    let n = pkg.len();
    pkg[n - 40..].fill(0x55);
    let (codes, msgs, _, _) = fail(Some(&pkg));
    assert_eq!(codes.last(), Some(&(4, Some(100))), "{msgs:?}");
    assert!(
        msgs.last().unwrap().contains("cannot unpack the payload"),
        "{msgs:?}"
    );

    // A cust.cfg that does not parse.
    let bad = build_package(&PackageSpec {
        format: PayloadType::Cabinet,
        command: String::new(),
        flags: 0,
        process_timeout: 0,
        files: vec![(
            "cust.cfg".into(),
            b"[NETWORK]\nHOSTNAME = not a host\n".to_vec(),
        )],
    })
    .unwrap();
    let (codes, msgs, _, _) = fail(Some(&bad));
    assert_eq!(codes.last(), Some(&(4, Some(100))));
    assert!(
        msgs.last().unwrap().contains("NETWORK|HOSTNAME"),
        "{msgs:?}"
    );

    // The package is not where deploy says: DEPLOYING with DEPLOY_FAILED,
    // and the TCLO command fails, as vmtoolsd.
    let (codes, msgs, reply, _) = fail(None);
    assert_eq!(codes, [(3, None), (3, Some(5))]);
    assert!(
        msgs[1].starts_with("Package file /") && msgs[1].ends_with(" not found"),
        "{msgs:?}"
    );
    assert_eq!(reply, "ERROR failed to get package file");

    assert_eq!(
        g.snapshot(),
        before,
        "a refused customization changed files"
    );
    assert!(!g.out("reboots").exists());
    drop(agent);

    // Customization disabled in agent.toml: code 7 with vmtoolsd's words.
    let _agent = g.agent(&sim, "vm1", "enabled = false\n");
    let pkg = native_package(&g, "", PayloadType::Cabinet, 0);
    let (codes, msgs, _) = deliver(&sim, "vm1", Some(&pkg), &identity, true);
    assert_eq!(codes, [(3, None), (3, Some(7))]);
    assert_eq!(msgs[1], "Customization is disabled by guest admin");
    assert_eq!(g.snapshot(), before);
}

/// An open-vm-tools program, or a panic that says how to install it.
fn ovt(name: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is missing: install Debian's open-vm-tools (scripts/test-deps.sh does)");
}

const OVT_PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/open-vm-tools/plugins";

/// Debian's vmtoolsd with only its deployPkg (and hgfsServer) plugins,
/// under `hvsim exec`, in a private mount namespace: /run is a fresh tmpfs
/// whose `vmware-imc` (where deployPkg puts packages) is `imc`, /var/log is
/// `logs`, /etc is read-only, and systemctl/telinit are a stub that only
/// records being called.
struct Vmtoolsd {
    child: Option<Child>,
    dir: PathBuf,
}

impl Drop for Vmtoolsd {
    fn drop(&mut self) {
        if let Some(c) = self.child.take() {
            e2e_tests::stop_child(c, Duration::from_secs(10));
        }
    }
}

impl Vmtoolsd {
    fn start(sim: &Sim, vm: &str, dir: &Path) -> Vmtoolsd {
        let vmtoolsd = ovt("vmtoolsd");
        let (plugins, common) = (dir.join("plugins"), dir.join("common"));
        let (imc, logs) = (dir.join("imc"), dir.join("logs"));
        for d in [&plugins, &common, &imc, &logs] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(
            format!("{OVT_PLUGINS}/vmsvc/libdeployPkgPlugin.so"),
            plugins.join("libdeployPkgPlugin.so"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            format!("{OVT_PLUGINS}/common/libhgfsServer.so"),
            common.join("libhgfsServer.so"),
        )
        .unwrap();
        let stub = dir.join("reboot-stub");
        std::fs::write(
            &stub,
            format!(
                "#!/bin/sh\necho \"$0 $*\" >> {}/reboot-attempts\nexit 1\n",
                dir.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        let conf = dir.join("tools.conf");
        std::fs::write(
            &conf,
            format!(
                "[logging]\nlog = true\nvmsvc.level = debug\nvmsvc.handler = file\nvmsvc.data = {}\n",
                dir.join("vmsvc.log").display()
            ),
        )
        .unwrap();
        let setup = format!(
            "set -e; mount -t tmpfs tmpfs /run; mkdir /run/vmware-imc; mount --bind {imc} /run/vmware-imc; \
             mount --bind {logs} /var/log; mount --bind -o ro /etc /etc; \
             for p in /usr/bin/systemctl /bin/systemctl /sbin/telinit /usr/sbin/telinit; do \
               if [ -e $p ]; then mount --bind {stub} $p; fi; done; \
             exec \"$0\" \"$@\"",
            imc = imc.display(),
            logs = logs.display(),
            stub = stub.display()
        );
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", &setup])
            .arg(bin("hvsim"))
            .args(["exec", "--vm", vm, "--"])
            .arg(&vmtoolsd)
            .args(["-n", "vmsvc", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&plugins)
            .arg("--common-path")
            .arg(&common)
            .env("HVSIM_CONTROL", &sim.control)
            .env_remove("VM_BACKDOOR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vmtoolsd under hvsim exec");
        let v = Vmtoolsd {
            child: Some(child),
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let o = sim.hvsim(&["vm", "tclo", vm, "ping", "--timeout", "1"]);
            if stdout(&o).starts_with("OK") && v.log().contains("deployPkg") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "vmtoolsd did not come up:\n{}",
                v.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        v
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vmsvc.log")).unwrap_or_default()
    }

    /// A guest path under /var/run/vmware-imc as this machine sees it.
    fn map(&self, guest: &str) -> PathBuf {
        let rel = guest
            .strip_prefix("/var/run/vmware-imc/")
            .or_else(|| guest.strip_prefix("/run/vmware-imc/"))
            .unwrap_or_else(|| panic!("vmtoolsd put the package at {guest}"));
        self.dir.join("imc").join(rel)
    }
}

/// The package's command: records its arguments (with the extraction
/// directory as DIR), the files beside it and that directory's mode one
/// level up (the base directory outlives the extraction), then exits with
/// its first argument after sleeping its second.
const RECORD_SH: &str = r#"#!/bin/sh
d=$(dirname "$0")
sleep "$2"
{
  echo "args: $*" | sed "s|$d|DIR|g"
  echo "files: $(ls "$d" | tr '\n' ' ')"
  echo "mode: $(stat -c %a "$d")"
  echo "path: ${PATH:+set}"
} > "$d/../recorded.tmp"
mv "$d/../recorded.tmp" "$d/../recorded.txt"
exit "$1"
"#;

fn record_package(exit: u32, sleep: u32, timeout: u16, nics: bool) -> Vec<u8> {
    let mut files = vec![
        ("record.sh".to_string(), RECORD_SH.as_bytes().to_vec()),
        (
            "cust.cfg".to_string(),
            b"[NETWORK]\nHOSTNAME = never-applied\n".to_vec(),
        ),
    ];
    if nics {
        files.push(("nics.txt".to_string(), b"1".to_vec()));
    }
    build_package(&PackageSpec {
        format: PayloadType::Cabinet,
        command: format!(
            "/bin/sh @@IMC_TMP_PATH_VAR@@/record.sh {exit} {sleep} @@IMC_TMP_PATH_VAR@@/cust.cfg"
        ),
        // Never a reboot, whatever happens.
        flags: flags::SKIP_REBOOT | flags::IGNORE_CLOUD_INIT,
        process_timeout: timeout,
        files,
    })
    .unwrap()
}

#[test]
fn vmtoolsd_and_vm_agent_reach_the_same_states_and_codes() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let vdir = sim.dir.path().join("vmtoolsd");
    let theirs = Vmtoolsd::start(&sim, "vm0", &vdir);
    let g = Guest::new("networkd");
    let ours = g.agent(&sim, "vm1", "");
    let their_record = vdir.join("imc/recorded.txt");
    let our_record = g.root().join("var/run/vmware-imc/recorded.txt");

    // (name, package, the reports both send)
    let cases: Vec<(&str, Option<Vec<u8>>, Codes)> = vec![
        (
            "success",
            Some(record_package(0, 0, 0, false)),
            vec![(3, None), (4, Some(0)), (5, Some(0))],
        ),
        (
            "command fails",
            Some(record_package(3, 0, 0, false)),
            vec![(3, None), (4, Some(0)), (4, Some(100))],
        ),
        (
            "network error",
            Some(record_package(254, 0, 0, false)),
            vec![(3, None), (4, Some(0)), (4, Some(101))],
        ),
        (
            "scripts disabled",
            Some(record_package(6, 0, 0, false)),
            vec![(3, None), (4, Some(0)), (4, Some(6))],
        ),
        (
            "timeout",
            Some(record_package(0, 5, 1, false)),
            vec![(3, None), (4, Some(0)), (4, Some(100))],
        ),
        ("no package", None, vec![(3, None), (3, Some(5))]),
        (
            "NIC reconnect",
            Some(record_package(0, 0, 0, true)),
            vec![
                (3, None),
                (4, Some(0)),
                (4, Some(103)),
                (4, Some(104)),
                (5, Some(0)),
            ],
        ),
    ];
    for (name, pkg, want) in &cases {
        let _ = std::fs::remove_file(&their_record);
        let _ = std::fs::remove_file(&our_record);
        let (tc, tm, tr) = deliver(&sim, "vm0", pkg.as_deref(), &|p| theirs.map(p), false);
        let (oc, om, or) = deliver(&sim, "vm1", pkg.as_deref(), &identity, true);
        assert_eq!(&tc, want, "{name}: vmtoolsd sent {tm:?}\n{}", theirs.log());
        assert_eq!(&oc, want, "{name}: vm-agent sent {om:?}\n{}", ours.log());
        assert_eq!(or, tr, "{name}: the deploy replies differ");
        // The package paths differ (each guest named its own directory).
        let unpath = |m: &String| match (m.find("Package file "), m.rfind(" not found")) {
            (Some(a), Some(b)) if a < b => format!("{}Package file PKG{}", &m[..a], &m[b..]),
            _ => m.clone(),
        };
        let (tm, om): (Vec<String>, Vec<String>) = (
            tm.iter().map(unpath).collect(),
            om.iter().map(unpath).collect(),
        );
        for (t, o) in tm.iter().zip(&om) {
            // Where vmtoolsd names only the log, vm-agent may add "@why".
            assert!(
                o == t || o.starts_with(&format!("{t}@")),
                "{name}: {o:?} vs vmtoolsd's {t:?}"
            );
        }
        let t = std::fs::read_to_string(&their_record).ok();
        let o = std::fs::read_to_string(&our_record).ok();
        assert_eq!(o, t, "{name}: the command saw different things");
        if *name == "success" {
            let t = t.unwrap();
            assert!(t.contains("args: 0 0 DIR/cust.cfg\n"), "{t}");
            assert!(t.contains("files: cust.cfg record.sh \n"), "{t}");
            assert!(t.contains("mode: 700\n"), "{t}");
        }
    }

    // A package that is not one: vmtoolsd reports RUNNING and then nothing
    // (on Linux it leaves the failure unreported, so hostd times out);
    // vm-agent sends the same and then says it failed, and why.
    let (tc, _, _) = deliver(
        &sim,
        "vm0",
        Some(b"not a deployment package"),
        &|p| theirs.map(p),
        false,
    );
    let (oc, om, _) = deliver(
        &sim,
        "vm1",
        Some(b"not a deployment package"),
        &identity,
        true,
    );
    assert_eq!(tc, [(3, None), (4, Some(0))], "{}", theirs.log());
    assert_eq!(oc, [(3, None), (4, Some(0)), (4, Some(100))]);
    assert!(om[2].contains("bad package header"), "{om:?}");
    assert!(
        !vdir.join("reboot-attempts").exists(),
        "vmtoolsd tried to reboot"
    );
    assert!(!g.out("reboots").exists());
}

/// `hvsim vm customize` end to end: the package goes into the guest through
/// the guest's own HGFS server (TCLO `f` packets), in vmtoolsd (its
/// hgfsServer plugin) and in vm-agent, and the CLI follows the reports to
/// the outcome.
#[test]
fn hvsim_vm_customize_copies_the_package_over_hgfs() {
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let g = Guest::new("networkd");
    let _ours = g.agent(&sim, "vm1", "");
    std::fs::write(g.dir.path().join("pw"), "s3cret-pw\n").unwrap();
    let spec = g.dir.path().join("spec.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let spec = spec.display().to_string();

    // vm-agent applies the spec (a ZIP payload this time).
    let o = sim.hvsim(&[
        "vm",
        "customize",
        "vm1",
        "--spec",
        &spec,
        "--format",
        "zip",
        "--skip-reboot",
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("state 5 (done) code 0 (success)"), "{out}");
    assert!(out.ends_with("customization succeeded\n"), "{out}");
    let c = sim.show("vm1")["customization"].clone();
    assert_eq!(c["status"], "succeeded", "{c:#}");
    let pkg = c["package"].as_str().unwrap();
    assert!(
        pkg.starts_with(&g.root().join("var/run/vmware-imc/").display().to_string()),
        "{pkg}"
    );
    assert!(!Path::new(pkg).exists(), "the guest removed the package");
    assert_eq!(g.read("etc/hostname"), "web1\n");
    assert!(!g.out("reboots").exists(), "--skip-reboot");
    // The same spec and marker again: nothing to do, still a success.
    let o = sim.hvsim(&["vm", "customize", "vm1", "--spec", &spec, "--skip-reboot"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("already customized"), "{}", stdout(&o));

    // vmtoolsd gets the package with a recording command (never cust.cfg alone).
    let vdir = sim.dir.path().join("vmtoolsd");
    let theirs = Vmtoolsd::start(&sim, "vm0", &vdir);
    let record = sim.dir.path().join("record.sh");
    std::fs::write(&record, RECORD_SH).unwrap();
    let file = format!("record.sh={}", record.display());
    let run = |exit: &str| {
        sim.hvsim(&[
            "vm",
            "customize",
            "vm0",
            "--spec",
            &spec,
            "--command",
            &format!(
                "/bin/sh @@IMC_TMP_PATH_VAR@@/record.sh {exit} 0 @@IMC_TMP_PATH_VAR@@/cust.cfg"
            ),
            "--file",
            &file,
            "--skip-reboot",
            "--ignore-cloud-init",
        ])
    };
    let o = run("0");
    assert!(
        o.status.success(),
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        theirs.log()
    );
    let rec = std::fs::read_to_string(vdir.join("imc/recorded.txt")).unwrap();
    assert!(
        rec.contains("files: cust.cfg nics.txt record.sh \n"),
        "{rec}"
    );
    let o = run("3");
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("customization failed: customize-failed (code 100)"),
        "{}",
        stderr(&o)
    );
    assert!(
        !vdir.join("reboot-attempts").exists(),
        "vmtoolsd tried to reboot"
    );
}

/// With cloud-init installed and configured to take VMware customization
/// (`disable_vmware_customization: false`), vm-agent hands the package's
/// files to it in /var/run/vmware-imc and leaves the rest (and the reports)
/// to cloud-init, as vmtoolsd does; raw cloud-init data needs cloud-init
/// 21.1 or newer, else code 8.
#[test]
fn cloud_init_takes_over_when_it_is_configured_to() {
    let g = Guest::new("networkd");
    g.write(
        "etc/cloud/cloud.cfg",
        "disable_vmware_customization: true\n",
    );
    g.write(
        "etc/cloud/cloud.cfg.d/99-vmware.cfg",
        "disable_vmware_customization: false\n",
    );
    // A stand-in for cloud-init: its version, and "done" for status.
    let stub = g.dir.path().join("cloud-init");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\ncase \"$1\" in -v) echo \"/usr/bin/cloud-init ${{CI_VERSION:-23.4.1}}\";; status) echo 'status: done';; esac\n",
            g.out("cloud-init-calls").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sim = Sim::with_config("[[vm]]\nname = \"vm0\"\n[[vm]]\nname = \"vm1\"\n");
    let agent = g.agent(
        &sim,
        "vm0",
        &format!(
            "cloud_init = true\ncloud_init_command = \"{}\"\n",
            stub.display()
        ),
    );
    let before = g.snapshot();
    let pkg = native_package(&g, "", PayloadType::Cabinet, 0);
    let (codes, msgs, _) = deliver(&sim, "vm0", Some(&pkg), &identity, true);
    assert_eq!(
        codes,
        [(3, None), (4, Some(0))],
        "{msgs:?}\n{}",
        agent.log()
    );
    let imc = g.root().join("var/run/vmware-imc");
    let cfg = std::fs::read_to_string(imc.join("cust.cfg")).unwrap();
    assert!(cfg.contains("HOSTNAME = web1"), "{cfg}");
    assert_eq!(
        std::fs::read_to_string(imc.join("nics.txt")).unwrap(),
        "1,2"
    );
    assert_eq!(g.snapshot(), before, "cloud-init applies it, not vm-agent");
    assert!(
        !g.out("reboots").exists(),
        "no reboot when cloud-init takes over"
    );
    drop(agent);

    // Raw cloud-init data for a cloud-init older than 21.1: code 8.
    let _agent = g.agent(
        &sim,
        "vm1",
        &format!(
            "cloud_init = true\ncloud_init_command = \"CI_VERSION=20.4 {}\"\n",
            stub.display()
        ),
    );
    let mut files = vec![
        (
            "cust.cfg".to_string(),
            b"[NETWORK]\nHOSTNAME = web2\n".to_vec(),
        ),
        ("metadata".to_string(), b"instance-id: i-1\n".to_vec()),
    ];
    files.push(("userdata".to_string(), b"#cloud-config\n".to_vec()));
    let pkg = build_package(&PackageSpec {
        format: PayloadType::Zip,
        command: String::new(),
        flags: 0,
        process_timeout: 0,
        files,
    })
    .unwrap();
    let (codes, msgs, _) = deliver(&sim, "vm1", Some(&pkg), &identity, true);
    assert_eq!(codes, [(3, None), (4, Some(0)), (4, Some(8))], "{msgs:?}");
    assert_eq!(
        sim.show("vm1")["customization"]["code_name"],
        "cloud-init-too-old"
    );
}

/// The port of the vSphere API a simulator logged.
fn vsphere_port(sim: &Sim) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(p) = sim
            .log()
            .lines()
            .find(|l| l.contains("vSphere API"))
            .and_then(|l| l.split("127.0.0.1:").nth(1))
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
        {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no vSphere listener:\n{}",
            sim.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn customize_vm_task_through_the_vsphere_api_reaches_vm_agent() {
    let sim = Sim::with_config(
        "[[vm]]\nname = \"vm0\"\n[vsphere]\nlisten = \"127.0.0.1:0\"\n\
         [[user]]\nname = \"admin\"\npassword = \"s3cret\"\nrole = \"Administrator\"\n",
    );
    let port = vsphere_port(&sim);
    let g = Guest::new("networkd");
    let _ours = g.agent(&sim, "vm0", "");
    let out = Command::new(e2e_tests::python())
        .arg(e2e_tests::workspace().join("tests/py/vsphere_client.py"))
        .args([
            "customize",
            "127.0.0.1",
            &port.to_string(),
            "admin",
            "s3cret",
        ])
        .args(["vm0", "00:50:56:aa:00:01"])
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "success", "{r}");
    assert_eq!(r["unsupported_spec"], "CustomizationFault", "{r}");
    // The guest applies it after the task: follow its reports.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sim.show("vm0")["customization"]["status"] != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "{:#}",
            sim.show("vm0")["customization"]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(g.read("etc/hostname"), "web2\n");
    let n1 = g.read("etc/systemd/network/10-vm-agent-nic1.network");
    assert_eq!(ini_values(&n1, "Network", "Address"), ["192.0.2.20/24"]);
    assert_eq!(ini_values(&n1, "Network", "Gateway"), ["192.0.2.1"]);
    assert_eq!(ini_values(&n1, "Network", "DNS"), ["192.0.2.53"]);
    // vCenter's packages reboot the guest: the stub ran.
    assert!(g.out("reboots").exists());
}
