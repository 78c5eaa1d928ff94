//! Instance providers: the VM inventory seen as CIM instances.
//!
//! Every request takes a fresh [`Snapshot`] of the VMs (one short lock per
//! VM), so what the guest agent reported last is what the next response
//! says. Most providers make their instances VM by VM ([`Gen::PerVm`]), so
//! [`super::render`] can cache each VM's rendering and rebuild it only when
//! the VM changes.

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

/// Instances from the snapshot as a whole (the VMs not looked at one by one).
pub type WholeGen = fn(&Snapshot, &mut Vec<Instance>);

/// One VM's instances. Reads only the VM, the schema and the host name of
/// the snapshot, never `vms` or `dynamic`: its output is a function of the
/// VM's data, which is what lets [`super::render`] cache it.
pub type VmGen = fn(&Snapshot, &VmView, &mut Vec<Instance>);

/// How a provider makes its instances.
#[derive(Clone, Copy)]
pub enum Gen {
    /// All at once.
    Whole(WholeGen),
    /// The instances not tied to a VM (often none), then each VM's in
    /// name order.
    PerVm(WholeGen, VmGen),
    /// The indication filters, destinations and subscriptions of this class
    /// (from [`Snapshot::dynamic`]).
    Dynamic,
}

impl std::fmt::Debug for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Gen::Whole(_) => "Whole",
            Gen::PerVm(..) => "PerVm",
            Gen::Dynamic => "Dynamic",
        })
    }
}

/// One concrete class's provider.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// Namespace bits.
    pub ns: u8,
    /// The concrete class.
    pub class: &'static str,
    /// Its generator.
    pub gen: Gen,
}

const fn whole(ns: u8, class: &'static str, g: WholeGen) -> Provider {
    Provider {
        ns,
        class,
        gen: Gen::Whole(g),
    }
}

const fn per_vm(ns: u8, class: &'static str, g: VmGen) -> Provider {
    Provider {
        ns,
        class,
        gen: Gen::PerVm(none, g),
    }
}

const fn dyn_(class: &'static str) -> Provider {
    Provider {
        ns: INTEROP,
        class,
        gen: Gen::Dynamic,
    }
}

fn none(_: &Snapshot, _: &mut Vec<Instance>) {}

/// The providers, in the order their instances are listed.
pub const PROVIDERS: &[Provider] = &[
    Provider {
        ns: CIMV2,
        class: CS,
        gen: Gen::PerVm(host_system, vm_system),
    },
    per_vm(CIMV2, "CIM_VirtualSystemSettingData", vssd),
    per_vm(CIMV2, "CIM_OperatingSystem", operating_system),
    per_vm(CIMV2, "CIM_EthernetPort", ethernet_ports),
    per_vm(CIMV2, "CIM_IPProtocolEndpoint", ip_endpoints),
    per_vm(CIMV2, "CIM_DNSProtocolEndpoint", dns_endpoint),
    per_vm(CIMV2, "HVSIM_GuestTools", guest_tools),
    per_vm(CIMV2, "CIM_HostedDependency", hosted_dependency),
    per_vm(CIMV2, "CIM_HostedAccessPoint", hosted_access_points),
    per_vm(CIMV2, "CIM_RunningOS", running_os),
    per_vm(CIMV2, "CIM_InstalledOS", installed_os),
    per_vm(CIMV2, "CIM_SystemDevice", system_devices),
    per_vm(
        CIMV2,
        "CIM_PortImplementsEndpoint",
        port_implements_endpoint,
    ),
    per_vm(CIMV2, "CIM_SettingsDefineState", settings_define_state),
    per_vm(CIMV2, "CIM_InstalledSoftwareIdentity", installed_software),
    whole(INTEROP, "CIM_Namespace", namespaces),
    whole(INTEROP, "CIM_ObjectManager", object_manager),
    whole(INTEROP, "CIM_NamespaceInManager", namespace_in_manager),
    whole(INTEROP, "CIM_RegisteredProfile", registered_profiles),
    Provider {
        ns: INTEROP,
        class: "CIM_ElementConformsToProfile",
        gen: Gen::PerVm(conforms_cimom, conforms_vm),
    },
    dyn_("CIM_IndicationFilter"),
    dyn_("CIM_ListenerDestinationCIMXML"),
    dyn_("CIM_IndicationSubscription"),
];

impl Snapshot<'_> {
    /// The providers whose instances an enumeration of `class` in namespace
    /// `ns` lists, in order, with their index in [`PROVIDERS`].
    pub fn providers(
        &self,
        ns: u8,
        class: &ClassDef,
    ) -> impl Iterator<Item = (usize, &'static Provider)> + '_ {
        let name = class.name;
        PROVIDERS
            .iter()
            .enumerate()
            .filter(move |(_, p)| p.ns & ns != 0 && self.schema.is_a(p.class, name))
    }

    /// The instances a provider makes that are not one VM's: all of them
    /// for [`Gen::Whole`] and [`Gen::Dynamic`].
    pub fn fixed_instances(&self, p: &Provider, out: &mut Vec<Instance>) {
        match p.gen {
            Gen::Whole(g) | Gen::PerVm(g, _) => g(self, out),
            Gen::Dynamic => out.extend(
                self.dynamic
                    .iter()
                    .filter(|i| i.class.eq_ignore_ascii_case(p.class))
                    .cloned(),
            ),
        }
    }

    /// Instances of `class` and its subclasses in namespace `ns`.
    pub fn instances(&self, ns: u8, class: &ClassDef) -> Vec<Instance> {
        let mut out = Vec::new();
        for (_, p) in self.providers(ns, class) {
            self.fixed_instances(p, &mut out);
            if let Gen::PerVm(_, g) = p.gen {
                for v in &self.vms {
                    g(self, v, &mut out);
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
        // The graceful states (4 shut down, 10 reboot) only while the guest
        // agent that carries them out runs; without it they are refused.
        .with(
            "AvailableRequestedStates",
            Value::uints(if v.tools_running {
                &[2, 3, 4, 10, 11]
            } else {
                &[2, 3, 11]
            }),
        )
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

fn host_system(s: &Snapshot, out: &mut Vec<Instance>) {
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
}

fn vm_system(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(vm_instance(v));
}

fn vssd_instance(v: &VmView) -> Instance {
    Instance::new("CIM_VirtualSystemSettingData")
        .with("InstanceID", Value::s(format!("hvsim:{}", v.uuid)))
        .with("ElementName", Value::s(&v.name))
        .with("VirtualSystemIdentifier", Value::s(&v.name))
        .with("VirtualSystemType", Value::s("hvsim"))
        .with("ConfigurationID", Value::s(&v.uuid))
}

fn vssd(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(vssd_instance(v));
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

fn operating_system(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(os_instance(v));
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

fn ethernet_ports(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    for (i, n) in v.nics.iter().enumerate() {
        out.push(port(v, i, n));
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

/// The CIM_IPProtocolEndpoint instances of a VM, one per address the guest
/// reports (keyed by `<MAC>/<address>`).
pub fn ip_endpoint_instances(v: &VmView) -> Vec<Instance> {
    v.nics
        .iter()
        .flat_map(|n| n.ips.iter().map(move |ip| ip_endpoint(v, n, ip)))
        .collect()
}

fn ip_endpoints(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.extend(ip_endpoint_instances(v));
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

fn dns_endpoint(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(dns_instance(v));
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

fn guest_tools(_: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(tools_instance(v));
}

fn assoc(class: &str, a: (&str, ObjectPath), b: (&str, ObjectPath)) -> Instance {
    Instance::new(class).with(a.0, rf(a.1)).with(b.0, rf(b.1))
}

fn hosted_dependency(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(assoc(
        "CIM_HostedDependency",
        ("Antecedent", host_path(s)),
        ("Dependent", vm_path(v)),
    ));
}

fn hosted_access_points(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
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

fn running_os(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    if v.power == Power::On {
        out.push(assoc(
            "CIM_RunningOS",
            ("Antecedent", s.path(&os_instance(v), NS_CIMV2)),
            ("Dependent", vm_path(v)),
        ));
    }
}

fn installed_os(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(
        assoc(
            "CIM_InstalledOS",
            ("GroupComponent", vm_path(v)),
            ("PartComponent", s.path(&os_instance(v), NS_CIMV2)),
        )
        .with("PrimaryOS", Value::Bool(true)),
    );
}

fn system_devices(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    for (i, n) in v.nics.iter().enumerate() {
        out.push(assoc(
            "CIM_SystemDevice",
            ("GroupComponent", vm_path(v)),
            ("PartComponent", s.path(&port(v, i, n), NS_CIMV2)),
        ));
    }
}

fn port_implements_endpoint(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
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

fn settings_define_state(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(assoc(
        "CIM_SettingsDefineState",
        ("ManagedElement", vm_path(v)),
        ("SettingData", s.path(&vssd_instance(v), NS_CIMV2)),
    ));
}

fn installed_software(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(assoc(
        "CIM_InstalledSoftwareIdentity",
        ("System", vm_path(v)),
        ("InstalledSoftware", s.path(&tools_instance(v), NS_CIMV2)),
    ));
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

fn profile_path(s: &Snapshot, i: usize) -> ObjectPath {
    s.path(&profile(PROFILES[i].0, PROFILES[i].1), NS_INTEROP)
}

fn ectp(p: ObjectPath, e: ObjectPath) -> Instance {
    assoc(
        "CIM_ElementConformsToProfile",
        ("ConformantStandard", p),
        ("ManagedElement", e),
    )
}

fn conforms_cimom(s: &Snapshot, out: &mut Vec<Instance>) {
    out.push(ectp(profile_path(s, 0), s.path(&cimom(s), NS_INTEROP)));
}

fn conforms_vm(s: &Snapshot, v: &VmView, out: &mut Vec<Instance>) {
    out.push(ectp(profile_path(s, 1), vm_path(v)));
    for n in &v.nics {
        for ip in &n.ips {
            out.push(ectp(
                profile_path(s, 2),
                s.path(&ip_endpoint(v, n, ip), NS_CIMV2),
            ));
        }
    }
}
