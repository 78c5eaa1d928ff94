//! The managed objects a standalone ESXi host shows, built from the VM
//! inventory on every read: the same data CIM, IPMI and Redfish serve.
//!
//! Layout (as hostd names it): `ha-folder-root` → `ha-datacenter` →
//! `ha-folder-vm` (the VMs, ids `1`, `2`, ... in name order),
//! `ha-folder-host` → `ha-compute-res` → `ha-host` and `ha-root-pool`,
//! `ha-folder-datastore` → `datastore1`, `ha-folder-network` →
//! `HaNetwork-VM Network`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::cim::provider::VmView;
use crate::vm::{Power, Vm};

use super::val::{Mor, Val};

/// The product this host claims to be (what `about` says).
pub const PRODUCT_VERSION: &str = "8.0.3";
/// Build number in `about.build`.
pub const PRODUCT_BUILD: &str = "24022510";
/// The vim25 API version served.
pub const API_VERSION: &str = "8.0.3.0";
/// Older vim25 versions a client may ask for (vimServiceVersions.xml).
pub const PRIOR_VERSIONS: &[&str] = &[
    "8.0.2.0", "8.0.1.0", "8.0.0.2", "8.0.0.1", "8.0.0.0", "7.0.3.0", "7.0.2.0", "7.0.1.0",
    "7.0.0.0", "6.7.3", "6.7.2", "6.7.1", "6.7", "6.5", "6.0", "5.5", "5.1", "5.0", "4.1", "4.0",
];

/// The host's name (HostSystem.name).
pub const HOST_NAME: &str = "hvsim.localdomain";
/// The one datastore.
pub const DATASTORE: &str = "datastore1";
/// The one network.
pub const NETWORK: &str = "HaNetwork-VM Network";
/// The network's name.
pub const NETWORK_NAME: &str = "VM Network";

/// Types that are `ManagedEntity` (for property specs and views that name
/// the base type).
pub fn is_a(ty: &str, base: &str) -> bool {
    if ty == base {
        return true;
    }
    match base {
        "ManagedEntity" => matches!(
            ty,
            "Folder"
                | "Datacenter"
                | "ComputeResource"
                | "ClusterComputeResource"
                | "HostSystem"
                | "VirtualMachine"
                | "ResourcePool"
                | "Datastore"
                | "Network"
        ),
        "ComputeResource" => ty == "ClusterComputeResource",
        "ExtensibleManagedObject" => is_a(ty, "ManagedEntity"),
        "ManagedObject" => true,
        _ => false,
    }
}

/// One VM as the API sees it: its id and the hvsim VM behind it.
#[derive(Debug, Clone)]
pub struct VmEntry {
    /// The moref value (`1`, `2`, ...).
    pub id: String,
    /// The VM.
    pub vm: Arc<Vm>,
}

/// The VMs by id, and ids by name.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// In name order.
    pub vms: Vec<VmEntry>,
}

impl Inventory {
    /// Number the VMs of hvsim's inventory (name order, from 1).
    pub fn new(inv: &crate::control::Inventory) -> Inventory {
        Inventory {
            vms: inv
                .values()
                .enumerate()
                .map(|(i, vm)| VmEntry {
                    id: (i + 1).to_string(),
                    vm: vm.clone(),
                })
                .collect(),
        }
    }

    /// The VM with this moref value.
    pub fn vm(&self, id: &str) -> Option<&VmEntry> {
        self.vm_index(id).map(|(_, e)| e)
    }

    /// The VM with this moref value and its place in [`Inventory::vms`].
    pub fn vm_index(&self, id: &str) -> Option<(usize, &VmEntry)> {
        // Ids are the places plus one.
        let i = id.parse::<usize>().ok()?.checked_sub(1)?;
        self.vms.get(i).filter(|e| e.id == id).map(|e| (i, e))
    }

    /// All VM references.
    pub fn vm_mors(&self) -> Val {
        Val::List(
            "ManagedObjectReference",
            self.vms
                .iter()
                .map(|e| Val::mor("VirtualMachine", &e.id))
                .collect(),
        )
    }
}

fn mors(ty: &str, ids: &[&str]) -> Val {
    Val::List(
        "ManagedObjectReference",
        ids.iter().map(|v| Val::mor(ty, v)).collect(),
    )
}

fn strings(v: &[&str]) -> Val {
    Val::List("string", v.iter().map(|s| Val::s(*s)).collect())
}

fn status(s: &str) -> Val {
    Val::Enum("ManagedEntityStatus", s.into())
}

fn empty(elem: &'static str) -> Val {
    Val::List(elem, Vec::new())
}

/// The `about` data object.
pub fn about() -> Val {
    Val::Obj(
        "AboutInfo",
        vec![
            ("name", Val::s("VMware ESXi")),
            (
                "fullName",
                Val::s(format!(
                    "VMware ESXi {PRODUCT_VERSION} build-{PRODUCT_BUILD}"
                )),
            ),
            ("vendor", Val::s("VMware, Inc.")),
            ("version", Val::s(PRODUCT_VERSION)),
            ("build", Val::s(PRODUCT_BUILD)),
            ("localeVersion", Val::s("INTL")),
            ("localeBuild", Val::s("000")),
            ("osType", Val::s("vmnix-x86")),
            ("productLineId", Val::s("embeddedEsx")),
            ("apiType", Val::s("HostAgent")),
            ("apiVersion", Val::s(API_VERSION)),
            (
                "instanceUuid",
                Val::s(crate::config::format_uuid(&crate::config::uuid_from_name(
                    "hvsim-vsphere-host",
                ))),
            ),
            ("licenseProductName", Val::s("VMware ESX Server")),
            ("licenseProductVersion", Val::s("8.0")),
        ],
    )
}

/// `ServiceInstance.content`.
pub fn service_content() -> Val {
    let m = |ty: &str, v: &str| Val::mor(ty, v);
    Val::Obj(
        "ServiceContent",
        vec![
            ("rootFolder", m("Folder", "ha-folder-root")),
            (
                "propertyCollector",
                m("PropertyCollector", "ha-property-collector"),
            ),
            ("viewManager", m("ViewManager", "ViewManager")),
            ("about", about()),
            ("sessionManager", m("SessionManager", "ha-sessionmgr")),
            ("taskManager", m("TaskManager", "ha-taskmgr")),
            ("searchIndex", m("SearchIndex", "ha-searchindex")),
            (
                "guestOperationsManager",
                m("GuestOperationsManager", "ha-guest-operations-manager"),
            ),
        ],
    )
}

/// The static objects' properties.
pub fn static_object(mor: &Mor, inv: &Inventory) -> Option<Val> {
    let v = mor.value.as_str();
    let props: Vec<(&'static str, Val)> = match (mor.ty.as_str(), v) {
        ("ServiceInstance", "ServiceInstance") => vec![
            ("content", service_content()),
            ("serverClock", Val::Time(SystemTime::now())),
            (
                "capability",
                Val::Obj(
                    "Capability",
                    vec![
                        ("provisioningSupported", Val::Bool(false)),
                        ("multiHostSupported", Val::Bool(false)),
                        ("userShellAccessSupported", Val::Bool(false)),
                    ],
                ),
            ),
        ],
        ("Folder", "ha-folder-root") => folder(
            "ha-folder-root",
            None,
            &["Datacenter"],
            mors("Datacenter", &["ha-datacenter"]),
        ),
        ("Folder", "ha-folder-vm") => folder(
            "vm",
            Some(("Datacenter", "ha-datacenter")),
            &["VirtualMachine", "VirtualApp", "Folder"],
            inv.vm_mors(),
        ),
        ("Folder", "ha-folder-host") => folder(
            "host",
            Some(("Datacenter", "ha-datacenter")),
            &["ComputeResource", "Folder"],
            mors("ComputeResource", &["ha-compute-res"]),
        ),
        ("Folder", "ha-folder-datastore") => folder(
            "datastore",
            Some(("Datacenter", "ha-datacenter")),
            &["Datastore", "Folder"],
            mors("Datastore", &[DATASTORE]),
        ),
        ("Folder", "ha-folder-network") => folder(
            "network",
            Some(("Datacenter", "ha-datacenter")),
            &["Network", "Folder"],
            mors("Network", &[NETWORK]),
        ),
        ("Datacenter", "ha-datacenter") => vec![
            ("name", Val::s("ha-datacenter")),
            ("parent", Val::mor("Folder", "ha-folder-root")),
            ("overallStatus", status("green")),
            ("vmFolder", Val::mor("Folder", "ha-folder-vm")),
            ("hostFolder", Val::mor("Folder", "ha-folder-host")),
            ("datastoreFolder", Val::mor("Folder", "ha-folder-datastore")),
            ("networkFolder", Val::mor("Folder", "ha-folder-network")),
            ("datastore", mors("Datastore", &[DATASTORE])),
            ("network", mors("Network", &[NETWORK])),
        ],
        ("ComputeResource", "ha-compute-res") => vec![
            ("name", Val::s(HOST_NAME)),
            ("parent", Val::mor("Folder", "ha-folder-host")),
            ("overallStatus", status("green")),
            ("host", mors("HostSystem", &["ha-host"])),
            ("resourcePool", Val::mor("ResourcePool", "ha-root-pool")),
            ("datastore", mors("Datastore", &[DATASTORE])),
            ("network", mors("Network", &[NETWORK])),
        ],
        ("ResourcePool", "ha-root-pool") => vec![
            ("name", Val::s("Resources")),
            ("parent", Val::mor("ComputeResource", "ha-compute-res")),
            ("overallStatus", status("green")),
            ("owner", Val::mor("ComputeResource", "ha-compute-res")),
            ("vm", inv.vm_mors()),
            ("resourcePool", empty("ManagedObjectReference")),
        ],
        ("HostSystem", "ha-host") => host(inv),
        ("Datastore", DATASTORE) => vec![
            ("name", Val::s(DATASTORE)),
            ("parent", Val::mor("Folder", "ha-folder-datastore")),
            ("overallStatus", status("green")),
            ("host", empty("DatastoreHostMount")),
            ("vm", inv.vm_mors()),
            (
                "info",
                Val::Obj(
                    "VmfsDatastoreInfo",
                    vec![
                        ("name", Val::s(DATASTORE)),
                        ("url", Val::s("ds:///vmfs/volumes/hvsim-datastore1/")),
                        ("freeSpace", Val::Long(1 << 39)),
                        ("maxFileSize", Val::Long(62 << 40)),
                        ("maxVirtualDiskCapacity", Val::Long(62 << 40)),
                        ("maxMemoryFileSize", Val::Long(62 << 40)),
                    ],
                ),
            ),
            (
                "summary",
                Val::Obj(
                    "DatastoreSummary",
                    vec![
                        ("datastore", Val::mor("Datastore", DATASTORE)),
                        ("name", Val::s(DATASTORE)),
                        ("url", Val::s("ds:///vmfs/volumes/hvsim-datastore1/")),
                        ("capacity", Val::Long(1 << 40)),
                        ("freeSpace", Val::Long(1 << 39)),
                        ("accessible", Val::Bool(true)),
                        ("multipleHostAccess", Val::Bool(false)),
                        ("type", Val::s("VMFS")),
                    ],
                ),
            ),
        ],
        ("Network", NETWORK) => vec![
            ("name", Val::s(NETWORK_NAME)),
            ("parent", Val::mor("Folder", "ha-folder-network")),
            ("overallStatus", status("green")),
            ("host", mors("HostSystem", &["ha-host"])),
            ("vm", inv.vm_mors()),
            (
                "summary",
                Val::Obj(
                    "NetworkSummary",
                    vec![
                        ("network", Val::mor("Network", NETWORK)),
                        ("name", Val::s(NETWORK_NAME)),
                        ("accessible", Val::Bool(true)),
                    ],
                ),
            ),
        ],
        ("GuestOperationsManager", "ha-guest-operations-manager") => vec![
            (
                "authManager",
                Val::mor("GuestAuthManager", "ha-guest-operations-auth-manager"),
            ),
            (
                "fileManager",
                Val::mor("GuestFileManager", "ha-guest-operations-file-manager"),
            ),
            (
                "processManager",
                Val::mor("GuestProcessManager", "ha-guest-operations-process-manager"),
            ),
        ],
        ("GuestAuthManager", "ha-guest-operations-auth-manager")
        | ("GuestFileManager", "ha-guest-operations-file-manager")
        | ("GuestProcessManager", "ha-guest-operations-process-manager")
        | ("ViewManager", "ViewManager")
        | ("SearchIndex", "ha-searchindex") => vec![],
        _ => return None,
    };
    Some(Val::Obj("", props))
}

fn folder(
    name: &str,
    parent: Option<(&str, &str)>,
    child_types: &[&str],
    children: Val,
) -> Vec<(&'static str, Val)> {
    let mut v = vec![("name", Val::s(name))];
    if let Some((t, p)) = parent {
        v.push(("parent", Val::mor(t, p)));
    }
    v.extend([
        ("overallStatus", status("green")),
        ("childType", strings(child_types)),
        ("childEntity", children),
    ]);
    v
}

fn host(inv: &Inventory) -> Vec<(&'static str, Val)> {
    let runtime = Val::Obj(
        "HostRuntimeInfo",
        vec![
            (
                "connectionState",
                Val::Enum("HostSystemConnectionState", "connected".into()),
            ),
            (
                "powerState",
                Val::Enum("HostSystemPowerState", "poweredOn".into()),
            ),
            ("inMaintenanceMode", Val::Bool(false)),
        ],
    );
    let memory: i64 = inv
        .vms
        .iter()
        .map(|e| i64::from(e.vm.info.memory_mb) << 20)
        .sum::<i64>()
        .max(8 << 30);
    let hardware = Val::Obj(
        "HostHardwareSummary",
        vec![
            ("vendor", Val::s("VMware, Inc.")),
            ("model", Val::s("VMware Virtual Platform")),
            (
                "uuid",
                Val::s(crate::config::format_uuid(&crate::config::uuid_from_name(
                    "hvsim-vsphere-host",
                ))),
            ),
            ("memorySize", Val::Long(memory)),
            ("cpuModel", Val::s("Simulated CPU")),
            ("cpuMhz", Val::Int(2400)),
            ("numCpuPkgs", Val::Int(1)),
            ("numCpuCores", Val::Int(8)),
            ("numCpuThreads", Val::Int(8)),
            ("numNics", Val::Int(1)),
            ("numHBAs", Val::Int(1)),
        ],
    );
    vec![
        ("name", Val::s(HOST_NAME)),
        ("parent", Val::mor("ComputeResource", "ha-compute-res")),
        ("overallStatus", status("green")),
        ("runtime", runtime.clone()),
        ("vm", inv.vm_mors()),
        ("datastore", mors("Datastore", &[DATASTORE])),
        ("network", mors("Network", &[NETWORK])),
        (
            "summary",
            Val::Obj(
                "HostListSummary",
                vec![
                    ("host", Val::mor("HostSystem", "ha-host")),
                    ("hardware", hardware),
                    ("runtime", runtime),
                    (
                        "config",
                        Val::Obj(
                            "HostConfigSummary",
                            vec![
                                ("name", Val::s(HOST_NAME)),
                                ("port", Val::Int(443)),
                                ("product", about()),
                                ("vmotionEnabled", Val::Bool(false)),
                                ("faultToleranceEnabled", Val::Bool(false)),
                            ],
                        ),
                    ),
                    ("overallStatus", status("green")),
                    ("rebootRequired", Val::Bool(false)),
                    ("managementServerIp", Val::s("")),
                ],
            ),
        ),
    ]
}

/// vSphere's guest id for a tools OS short name (`debian12-64` →
/// `debian12_64Guest`).
pub fn guest_id(os_short: Option<&str>) -> String {
    match os_short {
        Some(s) if !s.is_empty() => format!("{}Guest", s.replace('-', "_")),
        _ => "otherGuest64".into(),
    }
}

/// The guest family for a guest id.
fn guest_family(id: &str, full: Option<&str>) -> &'static str {
    let lower = id.to_ascii_lowercase();
    let full = full.unwrap_or("").to_ascii_lowercase();
    if lower.starts_with("win") || full.contains("windows") {
        "windowsGuest"
    } else if lower.starts_with("darwin") {
        "darwinGuestFamily"
    } else if lower.starts_with("solaris") {
        "solarisGuest"
    } else if lower.starts_with("other") && !full.contains("linux") {
        "otherGuestFamily"
    } else {
        "linuxGuest"
    }
}

/// An instance UUID for a VM (vCenter's per-VM id; stable, from the BIOS UUID).
pub fn instance_uuid(vm: &Vm) -> String {
    let mut b = vm.info.uuid;
    b.reverse();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::config::format_uuid(&b)
}

/// A VM's MAC for NIC `i` when its guest reported none.
fn mac_of(view: &VmView, i: usize) -> String {
    view.nics.get(i).map(|n| n.mac.clone()).unwrap_or_default()
}

/// Guest disk info from `SetGuestDiskInfo` JSON (sizes as numbers or strings).
fn disks(vm: &Vm) -> Vec<Val> {
    let st = vm.lock();
    let Some(j) = st.data.disks.as_ref() else {
        return Vec::new();
    };
    let num = |v: Option<&serde_json::Value>| -> i64 {
        match v {
            Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
            _ => 0,
        }
    };
    j.get("disks")
        .and_then(|d| d.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|d| {
                    let name = d.get("name")?.as_str()?;
                    Some(Val::Obj(
                        "GuestDiskInfo",
                        vec![
                            ("diskPath", Val::s(name)),
                            ("capacity", Val::Long(num(d.get("size")))),
                            ("freeSpace", Val::Long(num(d.get("free")))),
                            (
                                "filesystemType",
                                Val::s(d.get("filesystem").and_then(|f| f.as_str()).unwrap_or("")),
                            ),
                        ],
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The tools version status for a reported version (2147483647: guest managed).
fn tools_version_status(view: &VmView) -> &'static str {
    match view.tools_version.as_deref() {
        None => "guestToolsNotInstalled",
        Some("2147483647") => "guestToolsUnmanaged",
        Some(_) => "guestToolsCurrent",
    }
}

/// The VirtualMachine's properties.
pub fn vm_object(entry: &VmEntry, extra: &BTreeMap<String, String>, now: SystemTime) -> Val {
    let vm = &entry.vm;
    let view = VmView::of(vm);
    let on = view.power == Power::On;
    let running = view.tools_running && on;
    let vars: Vec<(String, String)> = {
        let st = vm.lock();
        st.data
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    };
    let gid = guest_id(view.os_name.as_deref());
    let family = guest_family(&gid, view.os_full.as_deref());
    let full_name = view
        .os_full
        .clone()
        .unwrap_or_else(|| "Other Linux (64-bit)".into());
    let uuid = view.uuid.clone();
    let iuuid = instance_uuid(vm);
    let vmx_path = format!("[{DATASTORE}] {0}/{0}.vmx", view.name);
    let ip = view
        .nics
        .iter()
        .flat_map(|n| n.ips.iter())
        .find(|ip| !ip.v6)
        .or_else(|| view.nics.iter().flat_map(|n| n.ips.iter()).next())
        .map(|ip| ip.addr.clone());
    let tools_status = if running {
        "toolsOk"
    } else if view.tools_version.is_some() {
        "toolsNotRunning"
    } else {
        "toolsNotInstalled"
    };
    let running_status = if running {
        "guestToolsRunning"
    } else {
        "guestToolsNotRunning"
    };
    let version_status = tools_version_status(&view);
    let heartbeat = if running { "green" } else { "gray" };
    let power_state = Val::Enum(
        "VirtualMachinePowerState",
        if on { "poweredOn" } else { "poweredOff" }.into(),
    );
    let mut guest_fields = vec![
        (
            "toolsStatus",
            Val::Enum("VirtualMachineToolsStatus", tools_status.into()),
        ),
        ("toolsVersionStatus", Val::s(version_status)),
        ("toolsVersionStatus2", Val::s(version_status)),
        ("toolsRunningStatus", Val::s(running_status)),
        (
            "toolsVersion",
            Val::s(view.tools_version.clone().unwrap_or_else(|| "0".into())),
        ),
        ("toolsInstallType", Val::s("guestToolsTypeOpenVMTools")),
        ("guestId", Val::s(gid.clone())),
        ("guestFamily", Val::s(family)),
        ("guestFullName", Val::s(full_name.clone())),
    ];
    if let Some(h) = &view.hostname {
        guest_fields.push(("hostName", Val::s(h.clone())));
    }
    if let Some(ip) = &ip {
        guest_fields.push(("ipAddress", Val::s(ip.clone())));
    }
    let nets: Vec<Val> = view
        .nics
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Val::Obj(
                "GuestNicInfo",
                vec![
                    ("network", Val::s(NETWORK_NAME)),
                    (
                        "ipAddress",
                        Val::List(
                            "string",
                            n.ips.iter().map(|ip| Val::s(ip.addr.clone())).collect(),
                        ),
                    ),
                    ("macAddress", Val::s(n.mac.clone())),
                    ("connected", Val::Bool(true)),
                    ("deviceConfigId", Val::Int(4000 + i as i32)),
                    (
                        "ipConfig",
                        Val::Obj(
                            "NetIpConfigInfo",
                            vec![(
                                "ipAddress",
                                Val::List(
                                    "NetIpConfigInfoIpAddress",
                                    n.ips
                                        .iter()
                                        .map(|ip| {
                                            Val::Obj(
                                                "NetIpConfigInfoIpAddress",
                                                vec![
                                                    ("ipAddress", Val::s(ip.addr.clone())),
                                                    ("prefixLength", Val::Int(ip.prefix as i32)),
                                                    ("state", Val::s("preferred")),
                                                ],
                                            )
                                        })
                                        .collect(),
                                ),
                            )],
                        ),
                    ),
                ],
            )
        })
        .collect();
    guest_fields.push(("net", Val::List("GuestNicInfo", nets)));
    guest_fields.push(("disk", Val::List("GuestDiskInfo", disks(vm))));
    guest_fields.push((
        "guestState",
        Val::s(if running { "running" } else { "notRunning" }),
    ));
    guest_fields.push(("guestOperationsReady", Val::Bool(running)));
    guest_fields.push(("interactiveGuestOperationsReady", Val::Bool(false)));
    guest_fields.push(("guestStateChangeSupported", Val::Bool(running)));
    let guest = Val::Obj("GuestInfo", guest_fields);

    let devices: Vec<Val> = (0..view.nics.len().max(1))
        .map(|i| {
            Val::Obj(
                "VirtualVmxnet3",
                vec![
                    ("key", Val::Int(4000 + i as i32)),
                    (
                        "deviceInfo",
                        Val::Obj(
                            "Description",
                            vec![
                                ("label", Val::s(format!("Network adapter {}", i + 1))),
                                ("summary", Val::s(NETWORK_NAME)),
                            ],
                        ),
                    ),
                    (
                        "backing",
                        Val::Obj(
                            "VirtualEthernetCardNetworkBackingInfo",
                            vec![
                                ("deviceName", Val::s(NETWORK_NAME)),
                                ("useAutoDetect", Val::Bool(false)),
                                ("network", Val::mor("Network", NETWORK)),
                            ],
                        ),
                    ),
                    (
                        "connectable",
                        Val::Obj(
                            "VirtualDeviceConnectInfo",
                            vec![
                                ("startConnected", Val::Bool(true)),
                                ("allowGuestControl", Val::Bool(true)),
                                ("connected", Val::Bool(on)),
                                ("status", Val::s("ok")),
                            ],
                        ),
                    ),
                    ("controllerKey", Val::Int(100)),
                    ("unitNumber", Val::Int(7 + i as i32)),
                    ("addressType", Val::s("assigned")),
                    ("macAddress", Val::s(mac_of(&view, i))),
                    ("wakeOnLanEnabled", Val::Bool(true)),
                ],
            )
        })
        .collect();
    let num_nics = devices.len() as i32;
    let mut extra_config: Vec<Val> = vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(k, v)| {
            Val::Obj(
                "OptionValue",
                vec![("key", Val::s(k)), ("value", Val::Any(Box::new(Val::s(v))))],
            )
        })
        .collect();
    extra_config.sort_by(|a, b| {
        a.field("key")
            .and_then(Val::as_str)
            .cmp(&b.field("key").and_then(Val::as_str))
    });
    let memory_mb = vm.info.memory_mb as i32;
    let config = Val::Obj(
        "VirtualMachineConfigInfo",
        vec![
            ("changeVersion", Val::s(vm.revision().to_string())),
            ("modified", Val::Time(now)),
            ("name", Val::s(view.name.clone())),
            ("guestFullName", Val::s(full_name.clone())),
            ("version", Val::s("vmx-21")),
            ("uuid", Val::s(uuid.clone())),
            ("instanceUuid", Val::s(iuuid.clone())),
            ("template", Val::Bool(false)),
            ("guestId", Val::s(gid.clone())),
            ("alternateGuestName", Val::s("")),
            ("annotation", Val::s("")),
            (
                "files",
                Val::Obj(
                    "VirtualMachineFileInfo",
                    vec![
                        ("vmPathName", Val::s(vmx_path.clone())),
                        (
                            "snapshotDirectory",
                            Val::s(format!("[{DATASTORE}] {}/", view.name)),
                        ),
                        (
                            "suspendDirectory",
                            Val::s(format!("[{DATASTORE}] {}/", view.name)),
                        ),
                        (
                            "logDirectory",
                            Val::s(format!("[{DATASTORE}] {}/", view.name)),
                        ),
                    ],
                ),
            ),
            (
                "tools",
                Val::Obj(
                    "ToolsConfigInfo",
                    vec![
                        (
                            "toolsVersion",
                            Val::Int(
                                view.tools_version
                                    .as_deref()
                                    .and_then(|v| v.parse::<i64>().ok())
                                    .map(|v| v as i32)
                                    .unwrap_or(0),
                            ),
                        ),
                        ("toolsInstallType", Val::s("guestToolsTypeOpenVMTools")),
                        ("afterPowerOn", Val::Bool(true)),
                        ("afterResume", Val::Bool(true)),
                        ("beforeGuestStandby", Val::Bool(true)),
                        ("beforeGuestShutdown", Val::Bool(true)),
                        ("syncTimeWithHost", Val::Bool(false)),
                    ],
                ),
            ),
            (
                "hardware",
                Val::Obj(
                    "VirtualHardware",
                    vec![
                        ("numCPU", Val::Int(1)),
                        ("numCoresPerSocket", Val::Int(1)),
                        ("memoryMB", Val::Int(memory_mb)),
                        ("device", Val::List("VirtualDevice", devices)),
                    ],
                ),
            ),
            ("extraConfig", Val::List("OptionValue", extra_config)),
            ("cpuHotAddEnabled", Val::Bool(false)),
            ("memoryHotAddEnabled", Val::Bool(false)),
        ],
    );
    let mut runtime_fields = vec![
        ("host", Val::mor("HostSystem", "ha-host")),
        (
            "connectionState",
            Val::Enum("VirtualMachineConnectionState", "connected".into()),
        ),
        ("powerState", power_state.clone()),
        (
            "faultToleranceState",
            Val::Enum("VirtualMachineFaultToleranceState", "notConfigured".into()),
        ),
        ("toolsInstallerMounted", Val::Bool(false)),
        ("suspendInterval", Val::Long(0)),
        ("maxCpuUsage", Val::Int(2400)),
        ("maxMemoryUsage", Val::Int(memory_mb)),
        ("numMksConnections", Val::Int(0)),
        (
            "recordReplayState",
            Val::Enum("VirtualMachineRecordReplayState", "inactive".into()),
        ),
        ("onlineStandby", Val::Bool(false)),
        ("consolidationNeeded", Val::Bool(false)),
        ("paused", Val::Bool(false)),
    ];
    if on {
        runtime_fields.push(("bootTime", Val::Time(view.booted)));
    }
    let runtime = Val::Obj("VirtualMachineRuntimeInfo", runtime_fields);
    let uptime = now
        .duration_since(view.booted)
        .map(|d| d.as_secs() as i32)
        .unwrap_or(0);
    let mut guest_summary = vec![
        ("guestId", Val::s(gid.clone())),
        ("guestFullName", Val::s(full_name.clone())),
        (
            "toolsStatus",
            Val::Enum("VirtualMachineToolsStatus", tools_status.into()),
        ),
        ("toolsVersionStatus", Val::s(version_status)),
        ("toolsVersionStatus2", Val::s(version_status)),
        ("toolsRunningStatus", Val::s(running_status)),
    ];
    if let Some(h) = &view.hostname {
        guest_summary.push(("hostName", Val::s(h.clone())));
    }
    if let Some(ip) = &ip {
        guest_summary.push(("ipAddress", Val::s(ip.clone())));
    }
    let summary = Val::Obj(
        "VirtualMachineSummary",
        vec![
            ("vm", Val::mor("VirtualMachine", &entry.id)),
            ("runtime", runtime.clone()),
            (
                "guest",
                Val::Obj("VirtualMachineGuestSummary", guest_summary),
            ),
            (
                "config",
                Val::Obj(
                    "VirtualMachineConfigSummary",
                    vec![
                        ("name", Val::s(view.name.clone())),
                        ("template", Val::Bool(false)),
                        ("vmPathName", Val::s(vmx_path)),
                        ("memorySizeMB", Val::Int(memory_mb)),
                        ("numCpu", Val::Int(1)),
                        ("numEthernetCards", Val::Int(num_nics)),
                        ("numVirtualDisks", Val::Int(0)),
                        ("uuid", Val::s(uuid)),
                        ("instanceUuid", Val::s(iuuid)),
                        ("guestId", Val::s(gid)),
                        ("guestFullName", Val::s(full_name)),
                        ("annotation", Val::s("")),
                    ],
                ),
            ),
            (
                "quickStats",
                Val::Obj(
                    "VirtualMachineQuickStats",
                    vec![
                        ("overallCpuUsage", Val::Int(0)),
                        ("guestMemoryUsage", Val::Int(0)),
                        ("uptimeSeconds", Val::Int(if on { uptime } else { 0 })),
                        ("guestHeartbeatStatus", status(heartbeat)),
                    ],
                ),
            ),
            ("overallStatus", status("green")),
        ],
    );
    Val::Obj(
        "",
        vec![
            ("name", Val::s(view.name.clone())),
            ("parent", Val::mor("Folder", "ha-folder-vm")),
            ("resourcePool", Val::mor("ResourcePool", "ha-root-pool")),
            ("overallStatus", status("green")),
            ("configStatus", status("green")),
            ("guestHeartbeatStatus", status(heartbeat)),
            ("capability", capability()),
            ("config", config),
            ("runtime", runtime),
            ("guest", guest),
            ("summary", summary),
            ("datastore", mors("Datastore", &[DATASTORE])),
            ("network", mors("Network", &[NETWORK])),
            ("availableField", empty("CustomFieldDef")),
            ("customValue", empty("CustomFieldValue")),
            ("value", empty("CustomFieldValue")),
            ("recentTask", empty("ManagedObjectReference")),
            ("triggeredAlarmState", empty("AlarmState")),
            ("declaredAlarmState", empty("AlarmState")),
            ("disabledMethod", empty("string")),
            ("tag", empty("Tag")),
        ],
    )
}

/// `VirtualMachine.capability`: what clients check before they ask
/// (Ansible's vmware_guest_snapshot quiesces only when
/// `quiescedSnapshotsSupported`). Snapshots record no memory image here,
/// so memory snapshots are not offered.
fn capability() -> Val {
    let yes = [
        "snapshotOperationsSupported",
        "multipleSnapshotsSupported",
        "snapshotConfigSupported",
        "poweredOffSnapshotsSupported",
        "revertToSnapshotSupported",
        "quiescedSnapshotsSupported",
        "toolsAutoUpdateSupported",
        "bootOptionsSupported",
        "settingScreenResolutionSupported",
        "toolsSyncTimeSupported",
        "changeTrackingSupported",
    ];
    let no = [
        "memorySnapshotsSupported",
        "disableSnapshotsSupported",
        "lockSnapshotsSupported",
        "consolePreferencesSupported",
        "cpuFeatureMaskSupported",
        "s1AcpiManagementSupported",
        "settingDisplayTopologySupported",
        "recordReplaySupported",
        "perVmEvcSupported",
    ];
    Val::Obj(
        "VirtualMachineCapability",
        yes.iter()
            .map(|k| (*k, Val::Bool(true)))
            .chain(no.iter().map(|k| (*k, Val::Bool(false))))
            .collect(),
    )
}

/// Does this VM have this IP address (any NIC)?
pub fn vm_has_ip(vm: &Vm, ip: &str) -> bool {
    let Ok(want) = ip.parse::<IpAddr>() else {
        return false;
    };
    VmView::of(vm)
        .nics
        .iter()
        .flat_map(|n| n.ips.iter())
        .any(|a| a.addr.parse::<IpAddr>().ok() == Some(want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_ids_and_families() {
        assert_eq!(guest_id(Some("debian12-64")), "debian12_64Guest");
        assert_eq!(guest_id(None), "otherGuest64");
        assert_eq!(guest_family("debian12_64Guest", None), "linuxGuest");
        assert_eq!(guest_family("windows9_64Guest", None), "windowsGuest");
    }

    #[test]
    fn entity_subtypes() {
        assert!(is_a("VirtualMachine", "ManagedEntity"));
        assert!(is_a("Folder", "Folder"));
        assert!(!is_a("Folder", "VirtualMachine"));
    }
}
