//! `hvsim exec` presents VMware's DMI (`/sys/class/dmi/id`) to the program,
//! from the VM's UUID and model, in a private mount namespace: systemd's
//! virtualization detection and DMI readers agree with CPUID, and the
//! machine's own files stay as they were.

use std::process::{Command, Stdio};

use e2e_tests::{bin, stderr, stdout, Sim};

const UUID: &str = "564d1234-5678-9abc-def0-123456789abc";

fn sim(model: Option<&str>) -> Sim {
    let model = model.map_or(String::new(), |m| format!("model = \"{m}\"\n"));
    Sim::with_config(&format!(
        "[[vm]]\nname = \"vm0\"\nuuid = \"{UUID}\"\n{model}"
    ))
}

fn run(sim: &Sim, args: &[&str]) -> std::process::Output {
    let mut c = sim.exec("vm0", std::path::Path::new(args[0]));
    c.args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .expect("run hvsim exec")
}

/// What the machine itself says, outside any namespace.
fn machine_dmi() -> Vec<(String, Option<String>)> {
    ["sys_vendor", "product_name", "bios_vendor", "board_vendor"]
        .iter()
        .map(|f| {
            let p = format!("/sys/class/dmi/id/{f}");
            (p.clone(), std::fs::read_to_string(&p).ok())
        })
        .collect()
}

#[test]
fn systemd_detect_virt_says_vmware() {
    let sim = sim(None);
    let o = run(&sim, &["systemd-detect-virt", "--vm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "vmware\n");
    // Without --vm, a container (this machine may be one) comes first, as
    // on a VMware VM that runs containers; otherwise it is vmware too.
    let container = Command::new("systemd-detect-virt")
        .arg("--container")
        .output()
        .expect("systemd-detect-virt");
    let o = run(&sim, &["systemd-detect-virt"]);
    if container.status.success() {
        assert_eq!(stdout(&o), stdout(&container));
    } else {
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), "vmware\n");
    }
}

#[test]
fn dmi_files_carry_the_vms_uuid_and_model() {
    let before = machine_dmi();
    let sim = sim(Some("VMware20,1"));
    let dir = "/sys/class/dmi/id";
    let files = [
        "sys_vendor",
        "product_name",
        "product_serial",
        "product_uuid",
        "bios_vendor",
        "board_vendor",
        "chassis_vendor",
    ];
    let script = files
        .iter()
        .map(|f| format!("cat {dir}/{f}"))
        .collect::<Vec<_>>()
        .join(" && ");
    let o = run(&sim, &["/bin/sh", "-c", &script]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let got: Vec<&str> = out.lines().collect();
    assert_eq!(
        got,
        [
            "VMware, Inc.",
            "VMware20,1",
            // The serial number: the UUID's bytes in order.
            "VMware-56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc",
            // product_uuid: the first three fields byte-swapped (SMBIOS 2.7).
            "34124d56-7856-bc9a-def0-123456789abc",
            "Phoenix Technologies LTD",
            "Intel Corporation",
            "No Enclosure",
        ]
    );
    // The same VM as the host shows it.
    let show = sim.show("vm0");
    assert_eq!(show["uuid"], UUID);
    assert_eq!(show["model"], "VMware20,1");
    // Read-only, as sysfs; and nothing changed outside.
    let o = run(
        &sim,
        &["/bin/sh", "-c", "echo x > /sys/class/dmi/id/sys_vendor"],
    );
    assert!(!o.status.success());
    assert_eq!(machine_dmi(), before);
    // --no-dmi: the machine's view.
    let o = Command::new(bin("hvsim"))
        .args(["exec", "--no-dmi", "--vm", "vm0", "--", "cat"])
        .arg(format!("{dir}/sys_vendor"))
        .env("HVSIM_CONTROL", &sim.control)
        .stdin(Stdio::null())
        .output()
        .expect("hvsim exec --no-dmi");
    assert_eq!(
        o.status.success().then(|| stdout(&o)),
        before[0].1,
        "{}",
        stderr(&o)
    );
}
