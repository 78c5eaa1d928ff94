//! Instance providers: the VM inventory seen as CIM instances.
//!
//! Every request takes a fresh [`Snapshot`] of the VMs (one short lock per
//! VM), so what the guest agent reported last is what the next response
//! says. Instances are built per request; nothing is cached.

use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use protocol::guestinfo_key as gk;

use super::schema::{ClassDef, Schema, CIMV2, INTEROP};
use super::value::{datetime, Instance, ObjectPath, Value};
use crate::vm::{Power, PowerAction, Vm};

/// `root/cimv2`.
pub const NS_CIMV2: &str = "root/cimv2";
/// `root/interop`.
pub const NS_INTEROP: &str = "root/interop";
/// The object manager's Name.
pub const CIMOM_NAME: &str = "hvsim:cimom";

/// What one NIC's IP address looks like to CIM.
#[derive(Debug, Clone)]
pub struct IpView {
    /// Textual address.
    pub addr: String,
    /// IPv6.
    pub v6: bool,
    /// Prefix length.
    pub prefix: u32,
    /// nicinfo `IpAddressOrigin`, if reported.
    pub origin: Option<u32>,
}

/// One NIC.
#[derive(Debug, Clone)]
pub struct NicView {
    /// MAC as the guest reported it.
    pub mac: String,
    /// Addresses.
    pub ips: Vec<IpView>,
}

/// One VM, copied out under its lock.
#[derive(Debug, Clone)]
pub struct VmView {
    /// Name.
    pub name: String,
    /// BIOS UUID text.
    pub uuid: String,
    /// Power state.
    pub power: Power,
    /// A graceful action is pending.
    pub pending: Option<PowerAction>,
    /// Tools running.
    pub tools_running: bool,
    /// Tools version.
    pub tools_version: Option<String>,
    /// Tools version type.
    pub tools_version_type: Option<String>,
    /// Guest host name.
    pub hostname: Option<String>,
    /// Guest OS short name.
    pub os_name: Option<String>,
    /// Guest OS full name.
    pub os_full: Option<String>,
    /// NICs.
    pub nics: Vec<NicView>,
    /// DNS domain, if reported.
    pub domain: Option<String>,
    /// When it last booted.
    pub booted: SystemTime,
    /// Memory in MiB.
    pub memory_mb: u32,
}

impl VmView {
    /// Copy what CIM shows out of a VM.
    pub fn of(vm: &Vm) -> VmView {
        let tools_running = vm.tools_running();
        let st = vm.lock();
        let d = &st.data;
        let text = |k: u32| {
            d.guest.get(&k).map(|v| {
                String::from_utf8_lossy(v)
                    .trim_end_matches('\0')
                    .to_string()
            })
        };
        let nics = d
            .nics
            .as_ref()
            .map(|n| {
                n.nics
                    .iter()
                    .map(|nic| NicView {
                        mac: nic.mac.clone(),
                        ips: nic
                            .ips
                            .iter()
                            .filter_map(|ip| {
                                let a = ip.addr.to_ip()?;
                                Some(IpView {
                                    addr: a.to_string(),
                                    v6: matches!(a, IpAddr::V6(_)),
                                    prefix: ip.prefix,
                                    origin: ip.origin,
                                })
                            })
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let domain = d
            .nics
            .as_ref()
            .and_then(|n| n.dns.as_ref())
            .and_then(|dns| dns.domain_name.clone());
        let since = Instant::now().saturating_duration_since(d.booted_at);
        VmView {
            name: vm.info.name.clone(),
            uuid: crate::config::format_uuid(&vm.info.uuid),
            power: d.power,
            pending: d.pending_soft,
            tools_running,
            tools_version: d.tools.version.clone(),
            tools_version_type: d.tools.version_type.clone(),
            hostname: text(gk::DNS_NAME).filter(|s| !s.is_empty()),
            os_name: text(gk::OS_NAME).filter(|s| !s.is_empty()),
            os_full: text(gk::OS_NAME_FULL).filter(|s| !s.is_empty()),
            nics,
            domain,
            booted: SystemTime::now()
                .checked_sub(since)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            memory_mb: vm.info.memory_mb,
        }
    }
}

/// The data one request works on.
#[derive(Debug)]
pub struct Snapshot<'a> {
    /// Classes.
    pub schema: &'a Schema,
    /// The simulated host's name (its CIM_ComputerSystem Name).
    pub host: &'a str,
    /// VMs, in name order.
    pub vms: Vec<VmView>,
    /// Indication filters, destinations and subscriptions.
    pub dynamic: Vec<Instance>,
}

/// A generator of one concrete class's instances.
type Gen = fn(&Snapshot, &mut Vec<Instance>);

/// The providers: namespace bit, concrete class, generator.
const PROVIDERS: &[(u8, &str, Gen)] = &[
    (CIMV2, "CIM_ComputerSystem", computer_systems),
    (CIMV2, "CIM_VirtualSystemSettingData", vssd),
    (CIMV2, "CIM_OperatingSystem", operating_systems),
    (CIMV2, "CIM_EthernetPort", ethernet_ports),
    (CIMV2, "CIM_IPProtocolEndpoint", ip_endpoints),
    (CIMV2, "CIM_DNSProtocolEndpoint", dns_endpoints),
    (CIMV2, "HVSIM_GuestTools", guest_tools),
    (CIMV2, "CIM_HostedDependency", hosted_dependency),
    (CIMV2, "CIM_HostedAccessPoint", hosted_access_points),
    (CIMV2, "CIM_RunningOS", running_os),
    (CIMV2, "CIM_InstalledOS", installed_os),
    (CIMV2, "CIM_SystemDevice", system_devices),
    (
        CIMV2,
        "CIM_PortImplementsEndpoint",
        port_implements_endpoint,
    ),
    (CIMV2, "CIM_SettingsDefineState", settings_define_state),
    (CIMV2, "CIM_InstalledSoftwareIdentity", installed_software),
    (INTEROP, "CIM_Namespace", namespaces),
    (INTEROP, "CIM_ObjectManager", object_manager),
    (INTEROP, "CIM_NamespaceInManager", namespace_in_manager),
    (INTEROP, "CIM_RegisteredProfile", registered_profiles),
    (INTEROP, "CIM_ElementConformsToProfile", conforms_to_profile),
    (INTEROP, "CIM_IndicationFilter", dynamic),
    (INTEROP, "CIM_ListenerDestinationCIMXML", dynamic),
    (INTEROP, "CIM_IndicationSubscription", dynamic),
];

impl Snapshot<'_> {
    /// Instances of `class` and its subclasses in namespace `ns`.
    pub fn instances(&self, ns: u8, class: &ClassDef) -> Vec<Instance> {
        let mut out = Vec::new();
        for (pns, pclass, gen) in PROVIDERS {
            if pns & ns != 0 && self.schema.is_a(pclass, class.name) {
                if *pclass == "CIM_IndicationFilter"
                    || *pclass == "CIM_ListenerDestinationCIMXML"
                    || *pclass == "CIM_IndicationSubscription"
                {
                    out.extend(
                        self.dynamic
                            .iter()
                            .filter(|i| i.class.eq_ignore_ascii_case(pclass))
                            .cloned(),
                    );
                } else {
                    gen(self, &mut out);
                }
            }
        }
        out
    }

    /// The path of an instance in `ns`, from its class's keys.
    pub fn path(&self, inst: &Instance, ns: &str) -> ObjectPath {
        path_of(self.schema, inst, ns)
    }
}

/// The path of an instance in `ns`, from its class's keys.
pub fn path_of(schema: &Schema, inst: &Instance, ns: &str) -> ObjectPath {
    let keys = schema
        .get(&inst.class)
        .map(|c| {
            c.keys()
                .map(|k| (k.name.to_string(), inst.get(k.name).clone()))
                .collect()
        })
        .unwrap_or_default();
    ObjectPath::new(&inst.class, keys).in_ns(ns)
}

const CS: &str = "CIM_ComputerSystem";

fn host_path(s: &Snapshot) -> ObjectPath {
    ObjectPath::new(
        CS,
        vec![
            ("CreationClassName".into(), Value::s(CS)),
            ("Name".into(), Value::s(s.host)),
        ],
    )
    .in_ns(NS_CIMV2)
}

/// The path of a VM's CIM_ComputerSystem.
pub fn vm_path(v: &VmView) -> ObjectPath {
    ObjectPath::new(
        CS,
        vec![
            ("CreationClassName".into(), Value::s(CS)),
            ("Name".into(), Value::s(&v.uuid)),
        ],
    )
    .in_ns(NS_CIMV2)
}

fn rf(p: ObjectPath) -> Value {
    Value::Ref(Box::new(p))
}

fn enabled(v: &VmView) -> u64 {
    match (v.power, v.pending) {
        (Power::On, Some(PowerAction::SoftOff)) => 4,
        (Power::On, _) => 2,
        (Power::Off, _) => 3,
    }
}

fn requested(v: &VmView) -> u64 {
    match v.pending {
        Some(PowerAction::SoftOff) => 4,
        Some(PowerAction::SoftReboot) => 10,
        _ => 12,
    }
}

/// The CIM_ComputerSystem of a VM.
pub fn vm_instance(v: &VmView) -> Instance {
    let on = v.power == Power::On;
    Instance::new(CS)
        .with("CreationClassName", Value::s(CS))
        .with("Name", Value::s(&v.uuid))
        .with("NameFormat", Value::s("Other"))
        .with("ElementName", Value::s(&v.name))
        .with("Caption", Value::s("Virtual machine"))
        .with(
            "Description",
            Value::s("A virtual machine of the simulated host"),
        )
        .with("EnabledState", Value::Uint(enabled(v)))
        .with("RequestedState", Value::Uint(requested(v)))
        .with("EnabledDefault", Value::Uint(2))
        .with("AvailableRequestedStates", Value::uints(&[2, 3, 4, 10, 11]))
        .with(
            "OperationalStatus",
            Value::uints(if on { &[2] } else { &[10] }),
        )
        .with("HealthState", Value::Uint(5))
        .with("OtherIdentifyingInfo", Value::strs(&[&v.name]))
        .with("IdentifyingDescriptions", Value::strs(&["VM name"]))
        .with("Dedicated", Value::uints(&[0]))
        .with("ResetCapability", Value::Uint(4))
}

fn computer_systems(s: &Snapshot, out: &mut Vec<Instance>) {
    out.push(
        Instance::new(CS)
            .with("CreationClassName", Value::s(CS))
            .with("Name", Value::s(s.host))
            .with("NameFormat", Value::s("Other"))
            .with("ElementName", Value::s(s.host))
            .with("Caption", Value::s("Simulated host"))
            .with("Description", Value::s("The hvsim simulated VMware host"))
            .with("EnabledState", Value::Uint(2))
            .with("RequestedState", Value::Uint(12))
            .with("OperationalStatus", Value::uints(&[2]))
            .with("HealthState", Value::Uint(5))
            .with("Dedicated", Value::uints(&[0]))
            .with("Roles", Value::strs(&["Hypervisor host"])),
    );
    out.extend(s.vms.iter().map(vm_instance));
}

fn vssd(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        out.push(
            Instance::new("CIM_VirtualSystemSettingData")
                .with("InstanceID", Value::s(format!("hvsim:{}", v.uuid)))
                .with("ElementName", Value::s(&v.name))
                .with("VirtualSystemIdentifier", Value::s(&v.name))
                .with("VirtualSystemType", Value::s("hvsim"))
                .with("ConfigurationID", Value::s(&v.uuid)),
        );
    }
}

/// The CIM_OperatingSystem of a VM.
pub fn os_instance(v: &VmView) -> Instance {
    let os_type = match v.os_name.as_deref().or(v.os_full.as_deref()) {
        None => 0,
        Some(n) => {
            let n = n.to_ascii_lowercase();
            if [
                "linux", "debian", "ubuntu", "centos", "rhel", "fedora", "suse", "sles", "photon",
                "alma", "rocky", "oracle",
            ]
            .iter()
            .any(|k| n.contains(k))
            {
                36
            } else {
                1
            }
        }
    };
    let on = v.power == Power::On;
    Instance::new("CIM_OperatingSystem")
        .with("CSCreationClassName", Value::s(CS))
        .with("CSName", Value::s(&v.uuid))
        .with("CreationClassName", Value::s("CIM_OperatingSystem"))
        .with("Name", Value::s("guest"))
        .with("ElementName", Value::opt(v.os_full.clone()))
        .with("Caption", Value::opt(v.os_full.clone()))
        .with("Version", Value::opt(v.os_name.clone()))
        .with("OSType", Value::Uint(os_type))
        .with(
            "OtherTypeDescription",
            if os_type == 1 {
                Value::opt(v.os_name.clone())
            } else {
                Value::Null
            },
        )
        .with("EnabledState", Value::Uint(if on { 2 } else { 3 }))
        .with("RequestedState", Value::Uint(12))
        .with(
            "LastBootUpTime",
            if on {
                Value::s(datetime(v.booted))
            } else {
                Value::Null
            },
        )
        .with(
            "TotalVisibleMemorySize",
            Value::Uint(v.memory_mb as u64 * 1024),
        )
}

fn operating_systems(s: &Snapshot, out: &mut Vec<Instance>) {
    out.extend(s.vms.iter().map(os_instance));
}

fn port(v: &VmView, i: usize, n: &NicView) -> Instance {
    let hex: String = n
        .mac
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_uppercase();
    Instance::new("CIM_EthernetPort")
        .with("SystemCreationClassName", Value::s(CS))
        .with("SystemName", Value::s(&v.uuid))
        .with("CreationClassName", Value::s("CIM_EthernetPort"))
        .with("DeviceID", Value::s(&n.mac))
        .with(
            "ElementName",
            Value::s(format!("Network adapter {}", i + 1)),
        )
        .with("PermanentAddress", Value::s(&hex))
        .with("NetworkAddresses", Value::strs(&[&hex]))
        .with("LinkTechnology", Value::Uint(2))
        .with("EnabledState", Value::Uint(2))
        .with("RequestedState", Value::Uint(12))
        .with("OperationalStatus", Value::uints(&[2]))
}

fn ethernet_ports(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        for (i, n) in v.nics.iter().enumerate() {
            out.push(port(v, i, n));
        }
    }
}

fn v4_mask(prefix: u32) -> String {
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(m).to_string()
}

fn address_origin(ip: &IpView) -> u64 {
    use protocol::nicinfo::origin;
    match (ip.origin, ip.v6) {
        (None, _) => 0,
        (Some(origin::MANUAL), _) => 3,
        (Some(origin::DHCP), false) => 4,
        (Some(origin::DHCP), true) => 7,
        (Some(origin::LINKLAYER), false) => 6,
        (Some(origin::LINKLAYER), true) => 10,
        (Some(origin::RANDOM), _) => 9,
        (Some(_), _) => 1,
    }
}

fn ip_endpoint(v: &VmView, n: &NicView, ip: &IpView) -> Instance {
    let mut i = Instance::new("CIM_IPProtocolEndpoint")
        .with("SystemCreationClassName", Value::s(CS))
        .with("SystemName", Value::s(&v.uuid))
        .with("CreationClassName", Value::s("CIM_IPProtocolEndpoint"))
        .with("Name", Value::s(format!("{}/{}", n.mac, ip.addr)))
        .with("NameFormat", Value::s("<MAC>/<address>"))
        .with("ElementName", Value::s(&ip.addr))
        .with("PrefixLength", Value::Uint(ip.prefix.min(128) as u64))
        .with("AddressOrigin", Value::Uint(address_origin(ip)))
        .with(
            "ProtocolIFType",
            Value::Uint(if ip.v6 { 4097 } else { 4096 }),
        )
        .with("EnabledState", Value::Uint(2))
        .with("RequestedState", Value::Uint(12));
    if ip.v6 {
        i.set("IPv6Address", Value::s(&ip.addr));
    } else {
        i.set("IPv4Address", Value::s(&ip.addr));
        i.set("SubnetMask", Value::s(v4_mask(ip.prefix)));
    }
    i
}

fn ip_endpoints(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        for n in &v.nics {
            for ip in &n.ips {
                out.push(ip_endpoint(v, n, ip));
            }
        }
    }
}

/// The CIM_DNSProtocolEndpoint of a VM (its host name).
pub fn dns_instance(v: &VmView) -> Instance {
    Instance::new("CIM_DNSProtocolEndpoint")
        .with("SystemCreationClassName", Value::s(CS))
        .with("SystemName", Value::s(&v.uuid))
        .with("CreationClassName", Value::s("CIM_DNSProtocolEndpoint"))
        .with("Name", Value::s("dns"))
        .with("ElementName", Value::s("Guest DNS identity"))
        .with("Hostname", Value::opt(v.hostname.clone()))
        .with("DomainName", Value::opt(v.domain.clone()))
        .with("ProtocolIFType", Value::Uint(1))
        .with("OtherTypeDescription", Value::s("DNS"))
        .with("EnabledState", Value::Uint(2))
        .with("RequestedState", Value::Uint(12))
}

fn dns_endpoints(s: &Snapshot, out: &mut Vec<Instance>) {
    out.extend(s.vms.iter().map(dns_instance));
}

/// The HVSIM_GuestTools instance of a VM.
pub fn tools_instance(v: &VmView) -> Instance {
    Instance::new("HVSIM_GuestTools")
        .with("InstanceID", Value::s(format!("hvsim:{}:tools", v.uuid)))
        .with("ElementName", Value::s("Guest tools"))
        .with("VersionString", Value::opt(v.tools_version.clone()))
        .with(
            "ToolsStatus",
            Value::s(if v.tools_running {
                "running"
            } else {
                "not-running"
            }),
        )
        .with("VersionType", Value::opt(v.tools_version_type.clone()))
        .with("IsEntity", Value::Bool(true))
}

fn guest_tools(s: &Snapshot, out: &mut Vec<Instance>) {
    out.extend(s.vms.iter().map(tools_instance));
}

fn assoc(class: &str, a: (&str, ObjectPath), b: (&str, ObjectPath)) -> Instance {
    Instance::new(class).with(a.0, rf(a.1)).with(b.0, rf(b.1))
}

fn hosted_dependency(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        out.push(assoc(
            "CIM_HostedDependency",
            ("Antecedent", host_path(s)),
            ("Dependent", vm_path(v)),
        ));
    }
}

fn hosted_access_points(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        let sys = vm_path(v);
        for n in &v.nics {
            for ip in &n.ips {
                out.push(assoc(
                    "CIM_HostedAccessPoint",
                    ("Antecedent", sys.clone()),
                    ("Dependent", s.path(&ip_endpoint(v, n, ip), NS_CIMV2)),
                ));
            }
        }
        out.push(assoc(
            "CIM_HostedAccessPoint",
            ("Antecedent", sys),
            ("Dependent", s.path(&dns_instance(v), NS_CIMV2)),
        ));
    }
}

fn running_os(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in s.vms.iter().filter(|v| v.power == Power::On) {
        out.push(assoc(
            "CIM_RunningOS",
            ("Antecedent", s.path(&os_instance(v), NS_CIMV2)),
            ("Dependent", vm_path(v)),
        ));
    }
}

fn installed_os(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        out.push(
            assoc(
                "CIM_InstalledOS",
                ("GroupComponent", vm_path(v)),
                ("PartComponent", s.path(&os_instance(v), NS_CIMV2)),
            )
            .with("PrimaryOS", Value::Bool(true)),
        );
    }
}

fn system_devices(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        for (i, n) in v.nics.iter().enumerate() {
            out.push(assoc(
                "CIM_SystemDevice",
                ("GroupComponent", vm_path(v)),
                ("PartComponent", s.path(&port(v, i, n), NS_CIMV2)),
            ));
        }
    }
}

fn port_implements_endpoint(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        for (i, n) in v.nics.iter().enumerate() {
            let pp = s.path(&port(v, i, n), NS_CIMV2);
            for ip in &n.ips {
                out.push(assoc(
                    "CIM_PortImplementsEndpoint",
                    ("Antecedent", pp.clone()),
                    ("Dependent", s.path(&ip_endpoint(v, n, ip), NS_CIMV2)),
                ));
            }
        }
    }
}

fn settings_define_state(s: &Snapshot, out: &mut Vec<Instance>) {
    let mut settings = Vec::new();
    vssd(s, &mut settings);
    for (v, sd) in s.vms.iter().zip(settings) {
        out.push(assoc(
            "CIM_SettingsDefineState",
            ("ManagedElement", vm_path(v)),
            ("SettingData", s.path(&sd, NS_CIMV2)),
        ));
    }
}

fn installed_software(s: &Snapshot, out: &mut Vec<Instance>) {
    for v in &s.vms {
        out.push(assoc(
            "CIM_InstalledSoftwareIdentity",
            ("System", vm_path(v)),
            ("InstalledSoftware", s.path(&tools_instance(v), NS_CIMV2)),
        ));
    }
}

fn cimom(s: &Snapshot) -> Instance {
    Instance::new("CIM_ObjectManager")
        .with("SystemCreationClassName", Value::s(CS))
        .with("SystemName", Value::s(s.host))
        .with("CreationClassName", Value::s("CIM_ObjectManager"))
        .with("Name", Value::s(CIMOM_NAME))
        .with("ElementName", Value::s("hvsim"))
        .with(
            "Description",
            Value::s(format!(
                "hvsim CIM-XML provider version {}",
                env!("CARGO_PKG_VERSION")
            )),
        )
        .with("Started", Value::Bool(true))
        .with("EnabledState", Value::Uint(2))
        .with("RequestedState", Value::Uint(12))
        .with("GatherStatisticalData", Value::Bool(false))
}

fn object_manager(s: &Snapshot, out: &mut Vec<Instance>) {
    out.push(cimom(s));
}

fn namespace(s: &Snapshot, name: &str) -> Instance {
    Instance::new("CIM_Namespace")
        .with("SystemCreationClassName", Value::s(CS))
        .with("SystemName", Value::s(s.host))
        .with(
            "ObjectManagerCreationClassName",
            Value::s("CIM_ObjectManager"),
        )
        .with("ObjectManagerName", Value::s(CIMOM_NAME))
        .with("CreationClassName", Value::s("CIM_Namespace"))
        .with("Name", Value::s(name))
        .with("ClassInfo", Value::Uint(3))
        .with("ClassType", Value::Uint(2))
}

fn namespaces(s: &Snapshot, out: &mut Vec<Instance>) {
    for (name, _) in super::schema::NAMESPACES {
        out.push(namespace(s, name));
    }
}

fn namespace_in_manager(s: &Snapshot, out: &mut Vec<Instance>) {
    let om = s.path(&cimom(s), NS_INTEROP);
    for (name, _) in super::schema::NAMESPACES {
        out.push(assoc(
            "CIM_NamespaceInManager",
            ("Antecedent", om.clone()),
            ("Dependent", s.path(&namespace(s, name), NS_INTEROP)),
        ));
    }
}

/// The profiles advertised: (name, version).
pub const PROFILES: [(&str, &str); 3] = [
    ("Profile Registration", "1.0.0"),
    ("Virtual System", "1.0.0"),
    ("IP Interface", "1.0.0"),
];

fn profile(name: &str, version: &str) -> Instance {
    Instance::new("CIM_RegisteredProfile")
        .with("InstanceID", Value::s(format!("DMTF+{name}+{version}")))
        .with("RegisteredOrganization", Value::Uint(2))
        .with("RegisteredName", Value::s(name))
        .with("RegisteredVersion", Value::s(version))
        .with("ElementName", Value::s(name))
        .with("AdvertiseTypes", Value::uints(&[2]))
}

fn registered_profiles(_: &Snapshot, out: &mut Vec<Instance>) {
    for (n, v) in PROFILES {
        out.push(profile(n, v));
    }
}

fn conforms_to_profile(s: &Snapshot, out: &mut Vec<Instance>) {
    let prof = |i: usize| s.path(&profile(PROFILES[i].0, PROFILES[i].1), NS_INTEROP);
    let ectp = |p: ObjectPath, e: ObjectPath| {
        assoc(
            "CIM_ElementConformsToProfile",
            ("ConformantStandard", p),
            ("ManagedElement", e),
        )
    };
    out.push(ectp(prof(0), s.path(&cimom(s), NS_INTEROP)));
    for v in &s.vms {
        out.push(ectp(prof(1), vm_path(v)));
        for n in &v.nics {
            for ip in &n.ips {
                out.push(ectp(prof(2), s.path(&ip_endpoint(v, n, ip), NS_CIMV2)));
            }
        }
    }
}

fn dynamic(_: &Snapshot, _: &mut Vec<Instance>) {}
