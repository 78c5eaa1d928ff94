//! The classes hvsim serves: a subset of the DMTF CIM Schema (2.x) with the
//! real inheritance chains, key properties, types and the qualifiers clients
//! look at (Abstract, Association, Indication, Key, Override, Required,
//! Description, ValueMap/Values, In/Out, EmbeddedInstance, Deprecated), plus
//! one vendor class, `HVSIM_GuestTools`. Each class carries the properties
//! hvsim fills in and the ones its profiles (DSP1057 Virtual System, DSP1036
//! IP Interface, DSP1033 Profile Registration, DSP1054 Indications) name;
//! other schema properties are left out rather than served as NULL forever.
//! Descriptions are our own short summaries, not the schema's text.
//!
//! Defined in code (not MOF) so the tables are checked by the compiler; the
//! README lists the classes.

use std::collections::HashMap;

use super::value::CimType as T;
pub use super::value::CimType;

/// Namespace bit: `root/cimv2`.
pub const CIMV2: u8 = 1;
/// Namespace bit: `root/interop`.
pub const INTEROP: u8 = 2;

/// The namespaces served, with their bits.
pub const NAMESPACES: [(&str, u8); 2] = [("root/cimv2", CIMV2), ("root/interop", INTEROP)];

/// A qualifier value.
#[derive(Debug, Clone, PartialEq)]
pub enum QValue {
    /// boolean
    Bool(bool),
    /// string
    Str(&'static str),
    /// string array
    Strs(Vec<&'static str>),
}

/// A qualifier on a class, property, method or parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Qualifier {
    /// Name.
    pub name: &'static str,
    /// Value.
    pub value: QValue,
    /// Flavor: may a subclass override it.
    pub overridable: bool,
    /// Flavor: does it propagate to subclasses.
    pub tosubclass: bool,
}

fn qb(name: &'static str) -> Qualifier {
    Qualifier {
        name,
        value: QValue::Bool(true),
        overridable: false,
        tosubclass: true,
    }
}

fn qs(name: &'static str, v: &'static str) -> Qualifier {
    Qualifier {
        name,
        value: QValue::Str(v),
        overridable: true,
        tosubclass: true,
    }
}

/// A property definition.
#[derive(Debug, Clone)]
pub struct PropertyDef {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: CimType,
    /// Array property.
    pub array: bool,
    /// For references: the class referred to.
    pub ref_class: Option<&'static str>,
    /// Qualifiers declared here (or inherited, when propagated).
    pub qualifiers: Vec<Qualifier>,
    /// The class that defined it.
    pub class_origin: &'static str,
    /// Inherited unchanged from a superclass.
    pub propagated: bool,
    /// A key property.
    pub key: bool,
    /// A string holding an embedded instance.
    pub embedded: bool,
}

fn p(name: &'static str, ty: CimType) -> PropertyDef {
    PropertyDef {
        name,
        ty,
        array: false,
        ref_class: None,
        qualifiers: Vec::new(),
        class_origin: "",
        propagated: false,
        key: false,
        embedded: false,
    }
}

fn r(name: &'static str, class: &'static str) -> PropertyDef {
    PropertyDef {
        ref_class: Some(class),
        ..p(name, T::Reference)
    }
}

impl PropertyDef {
    fn key(mut self) -> Self {
        self.key = true;
        self.qualifiers.push(qb("Key"));
        self
    }
    fn d(mut self, s: &'static str) -> Self {
        self.qualifiers.push(qs("Description", s));
        self
    }
    fn arr(mut self) -> Self {
        self.array = true;
        self
    }
    fn req(mut self) -> Self {
        self.qualifiers.push(qb("Required"));
        self
    }
    fn dep(mut self) -> Self {
        self.qualifiers.push(Qualifier {
            name: "Deprecated",
            value: QValue::Strs(vec!["No value"]),
            overridable: false,
            tosubclass: true,
        });
        self
    }
    fn vm(mut self, map: &[&'static str], values: &[&'static str]) -> Self {
        self.qualifiers.push(Qualifier {
            name: "ValueMap",
            value: QValue::Strs(map.to_vec()),
            overridable: true,
            tosubclass: true,
        });
        self.qualifiers.push(Qualifier {
            name: "Values",
            value: QValue::Strs(values.to_vec()),
            overridable: true,
            tosubclass: true,
        });
        self
    }
    fn emb(mut self, class: &'static str) -> Self {
        self.embedded = true;
        self.qualifiers.push(qs("EmbeddedInstance", class));
        self
    }
}

/// A method parameter.
#[derive(Debug, Clone)]
pub struct ParamDef {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: CimType,
    /// Array parameter.
    pub array: bool,
    /// For references: the class referred to.
    pub ref_class: Option<&'static str>,
    /// Qualifiers (In, Out, Description, ...).
    pub qualifiers: Vec<Qualifier>,
}

/// A method definition.
#[derive(Debug, Clone)]
pub struct MethodDef {
    /// Name.
    pub name: &'static str,
    /// Return type.
    pub ret: CimType,
    /// Parameters.
    pub params: Vec<ParamDef>,
    /// Qualifiers.
    pub qualifiers: Vec<Qualifier>,
    /// The class that defined it.
    pub class_origin: &'static str,
    /// Inherited unchanged.
    pub propagated: bool,
}

/// A resolved class: its own and inherited properties and methods.
#[derive(Debug, Clone)]
pub struct ClassDef {
    /// Name.
    pub name: &'static str,
    /// Superclass.
    pub superclass: Option<&'static str>,
    /// Class qualifiers.
    pub qualifiers: Vec<Qualifier>,
    /// All properties, inherited first.
    pub properties: Vec<PropertyDef>,
    /// All methods.
    pub methods: Vec<MethodDef>,
    /// Namespace bits ([`CIMV2`], [`INTEROP`]).
    pub ns: u8,
    /// Abstract classes have no instances of their own.
    pub is_abstract: bool,
    /// Association class.
    pub is_assoc: bool,
}

impl ClassDef {
    /// A property by name (case-insensitive).
    pub fn property(&self, name: &str) -> Option<&PropertyDef> {
        self.properties
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// A method by name (case-insensitive).
    pub fn method(&self, name: &str) -> Option<&MethodDef> {
        self.methods
            .iter()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// The key properties in order.
    pub fn keys(&self) -> impl Iterator<Item = &PropertyDef> {
        self.properties.iter().filter(|p| p.key)
    }
}

/// Builder for one class.
struct C {
    name: &'static str,
    sup: Option<&'static str>,
    quals: Vec<Qualifier>,
    props: Vec<PropertyDef>,
    methods: Vec<MethodDef>,
    ns: u8,
}

fn c(name: &'static str, sup: Option<&'static str>, desc: &'static str) -> C {
    C {
        name,
        sup,
        quals: vec![qs("Description", desc)],
        props: Vec::new(),
        methods: Vec::new(),
        ns: 0,
    }
}

impl C {
    fn abs(mut self) -> Self {
        self.quals.insert(0, qb("Abstract"));
        self.quals[0].tosubclass = false;
        self
    }
    fn assoc(mut self) -> Self {
        self.quals.insert(0, qb("Association"));
        self
    }
    fn indication(mut self) -> Self {
        self.quals.insert(0, qb("Indication"));
        self
    }
    fn ns(mut self, ns: u8) -> Self {
        self.ns = ns;
        self
    }
    fn props(mut self, v: Vec<PropertyDef>) -> Self {
        self.props = v;
        self
    }
    fn method(mut self, m: MethodDef) -> Self {
        self.methods.push(m);
        self
    }
}

/// The class repository.
#[derive(Debug)]
pub struct Schema {
    classes: Vec<ClassDef>,
    index: HashMap<String, usize>,
    exact: HashMap<&'static str, usize>,
}

impl Schema {
    /// A class by name (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&ClassDef> {
        // Exact spelling first: the common case, and no allocation.
        self.exact
            .get(name)
            .or_else(|| self.index.get(&name.to_ascii_lowercase()))
            .map(|&i| &self.classes[i])
    }

    /// A class visible in namespace `ns`.
    pub fn get_in(&self, ns: u8, name: &str) -> Option<&ClassDef> {
        self.get(name).filter(|c| c.ns & ns != 0)
    }

    /// Whether `sub` is `sup` or derives from it.
    pub fn is_a(&self, sub: &str, sup: &str) -> bool {
        let mut cur = self.get(sub);
        while let Some(c) = cur {
            if c.name.eq_ignore_ascii_case(sup) {
                return true;
            }
            cur = c.superclass.and_then(|s| self.get(s));
        }
        false
    }

    /// Classes in namespace `ns`, in definition order (superclasses first).
    pub fn classes(&self, ns: u8) -> impl Iterator<Item = &ClassDef> {
        self.classes.iter().filter(move |c| c.ns & ns != 0)
    }

    fn build(defs: Vec<C>) -> Schema {
        let mut s = Schema {
            classes: Vec::new(),
            index: HashMap::new(),
            exact: HashMap::new(),
        };
        // Namespaces flow up: a superclass lives wherever a subclass does.
        let mut ns: HashMap<&'static str, u8> = defs.iter().map(|d| (d.name, d.ns)).collect();
        for d in defs.iter().rev() {
            let mine = ns[d.name];
            if let Some(sup) = d.sup {
                *ns.get_mut(sup).expect("superclass defined first") |= mine;
            }
        }
        for d in defs {
            let (mut props, mut methods) = match d.sup.and_then(|n| s.get(n)) {
                Some(sup) => (sup.properties.clone(), sup.methods.clone()),
                None => (Vec::new(), Vec::new()),
            };
            for p in props.iter_mut() {
                p.propagated = true;
                p.qualifiers.retain(|q| q.tosubclass);
            }
            for m in methods.iter_mut() {
                m.propagated = true;
            }
            for mut np in d.props {
                np.class_origin = d.name;
                match props
                    .iter()
                    .position(|p| p.name.eq_ignore_ascii_case(np.name))
                {
                    Some(i) => {
                        // Overrides move to the end, so keys list in the
                        // order the subclass declares them.
                        let old = props.remove(i);
                        // An override keeps the key-ness and adds Override.
                        np.key |= old.key;
                        if old.key && !np.qualifiers.iter().any(|q| q.name == "Key") {
                            np.qualifiers.insert(0, qb("Key"));
                        }
                        np.qualifiers.push(Qualifier {
                            name: "Override",
                            value: QValue::Str(old.name),
                            overridable: true,
                            tosubclass: false,
                        });
                        props.push(np);
                    }
                    None => props.push(np),
                }
            }
            for mut nm in d.methods {
                nm.class_origin = d.name;
                match methods.iter_mut().find(|m| m.name == nm.name) {
                    Some(old) => *old = nm,
                    None => methods.push(nm),
                }
            }
            let quals = &d.quals;
            let def = ClassDef {
                name: d.name,
                superclass: d.sup,
                is_abstract: quals.iter().any(|q| q.name == "Abstract"),
                is_assoc: quals.iter().any(|q| q.name == "Association")
                    || d.sup.and_then(|n| s.get(n)).is_some_and(|c| c.is_assoc),
                qualifiers: d.quals,
                properties: props,
                methods,
                ns: ns[d.name],
            };
            s.index.insert(d.name.to_ascii_lowercase(), s.classes.len());
            s.exact.insert(d.name, s.classes.len());
            s.classes.push(def);
        }
        s
    }
}

const ENABLED_STATE_MAP: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "10",
    "11..32767",
    "32768..65535",
];
const ENABLED_STATE_VALUES: &[&str] = &[
    "Unknown",
    "Other",
    "Enabled",
    "Disabled",
    "Shutting Down",
    "Not Applicable",
    "Enabled but Offline",
    "In Test",
    "Deferred",
    "Quiesce",
    "Starting",
    "DMTF Reserved",
    "Vendor Reserved",
];
const REQUESTED_STATE_MAP: &[&str] = &[
    "0",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "10",
    "11",
    "12",
    "..",
    "32768..65535",
];
const REQUESTED_STATE_VALUES: &[&str] = &[
    "Unknown",
    "Enabled",
    "Disabled",
    "Shut Down",
    "No Change",
    "Offline",
    "Test",
    "Deferred",
    "Quiesce",
    "Reboot",
    "Reset",
    "Not Applicable",
    "DMTF Reserved",
    "Vendor Reserved",
];

fn request_state_change() -> MethodDef {
    let q = |n: &'static str| qb(n);
    MethodDef {
        name: "RequestStateChange",
        ret: T::Uint32,
        params: vec![
            ParamDef {
                name: "RequestedState",
                ty: T::Uint16,
                array: false,
                ref_class: None,
                qualifiers: vec![q("In")],
            },
            ParamDef {
                name: "Job",
                ty: T::Reference,
                array: false,
                ref_class: Some("CIM_ConcreteJob"),
                qualifiers: vec![q("In"), q("Out")],
            },
            ParamDef {
                name: "TimeoutPeriod",
                ty: T::Datetime,
                array: false,
                ref_class: None,
                qualifiers: vec![q("In")],
            },
        ],
        qualifiers: vec![
            qs(
                "Description",
                "Asks for a change of EnabledState. 2 on, 3 off, 4 graceful shutdown, 10 reboot, 11 reset.",
            ),
            Qualifier {
                name: "ValueMap",
                value: QValue::Strs(vec![
                    "0", "1", "2", "3", "4", "5", "6", "..", "4096", "4097", "4098", "4099",
                    "4100..32767", "32768..65535",
                ]),
                overridable: true,
                tosubclass: true,
            },
            Qualifier {
                name: "Values",
                value: QValue::Strs(vec![
                    "Completed with No Error",
                    "Not Supported",
                    "Unknown or Unspecified Error",
                    "Cannot complete within Timeout Period",
                    "Failed",
                    "Invalid Parameter",
                    "In Use",
                    "DMTF Reserved",
                    "Method Parameters Checked - Job Started",
                    "Invalid State Transition",
                    "Use of Timeout Parameter Not Supported",
                    "Busy",
                    "Method Reserved",
                    "Vendor Specific",
                ]),
                overridable: true,
                tosubclass: true,
            },
        ],
        class_origin: "",
        propagated: false,
    }
}

/// The schema hvsim serves.
pub fn schema() -> Schema {
    let s = T::String;
    let u16_ = T::Uint16;
    let scoped_sys_keys = || {
        vec![
            p("SystemCreationClassName", s)
                .key()
                .d("The scoping system's class."),
            p("SystemName", s).key().d("The scoping system's Name."),
            p("CreationClassName", s)
                .key()
                .d("The class of this instance."),
        ]
    };
    Schema::build(vec![
        c(
            "CIM_ManagedElement",
            None,
            "The root of the CIM class hierarchy.",
        )
        .abs()
        .props(vec![
            p("InstanceID", s).d("An opaque, unique identifier within the namespace."),
            p("Caption", s).d("A one-line description."),
            p("Description", s).d("A textual description."),
            p("ElementName", s).d("A user-friendly name."),
            p("Generation", T::Uint64).d("Changes whenever the element changes."),
        ]),
        c(
            "CIM_ManagedSystemElement",
            Some("CIM_ManagedElement"),
            "Elements that are part of a system.",
        )
        .abs()
        .props(vec![
            p("InstallDate", T::Datetime),
            p("Name", s).d("The label by which the element is known."),
            p("OperationalStatus", u16_).arr().vm(
                &["0", "1", "2", "3", "5", "6", "10", "12", ".."],
                &[
                    "Unknown",
                    "Other",
                    "OK",
                    "Degraded",
                    "Predictive Failure",
                    "Error",
                    "Stopped",
                    "No Contact",
                    "DMTF Reserved",
                ],
            ),
            p("StatusDescriptions", s).arr(),
            p("Status", s).dep(),
            p("HealthState", u16_).vm(
                &["0", "5", "10", "15", "20", "25", "30", ".."],
                &[
                    "Unknown",
                    "OK",
                    "Degraded/Warning",
                    "Minor failure",
                    "Major failure",
                    "Critical failure",
                    "Non-recoverable error",
                    "DMTF Reserved",
                ],
            ),
        ]),
        c(
            "CIM_LogicalElement",
            Some("CIM_ManagedSystemElement"),
            "Abstractions of system components.",
        )
        .abs(),
        c(
            "CIM_EnabledLogicalElement",
            Some("CIM_LogicalElement"),
            "Elements that can be enabled and disabled.",
        )
        .abs()
        .props(vec![
            p("EnabledState", u16_).vm(ENABLED_STATE_MAP, ENABLED_STATE_VALUES),
            p("OtherEnabledState", s),
            p("RequestedState", u16_).vm(REQUESTED_STATE_MAP, REQUESTED_STATE_VALUES),
            p("EnabledDefault", u16_),
            p("TimeOfLastStateChange", T::Datetime),
            p("AvailableRequestedStates", u16_).arr(),
        ])
        .method(request_state_change()),
        c(
            "CIM_System",
            Some("CIM_EnabledLogicalElement"),
            "A managed entity made of components that works as a whole.",
        )
        .abs()
        .props(vec![
            p("CreationClassName", s)
                .key()
                .d("The class of this instance."),
            p("Name", s)
                .key()
                .d("The system's identity within its CreationClassName."),
            p("NameFormat", s),
            p("PrimaryOwnerName", s),
            p("Roles", s).arr(),
            p("OtherIdentifyingInfo", s).arr(),
            p("IdentifyingDescriptions", s).arr(),
        ]),
        c(
            "CIM_ComputerSystem",
            Some("CIM_System"),
            "A computer system: here the simulated host and each virtual machine.",
        )
        .ns(CIMV2)
        .props(vec![
            p("NameFormat", s).d("How Name is built."),
            p("Dedicated", u16_).arr(),
            p("ResetCapability", u16_),
        ]),
        c(
            "CIM_SettingData",
            Some("CIM_ManagedElement"),
            "Settings of a managed element.",
        )
        .props(vec![
            p("InstanceID", s).key().d("Unique within the namespace."),
            p("ElementName", s).req(),
        ]),
        c(
            "CIM_VirtualSystemSettingData",
            Some("CIM_SettingData"),
            "The configuration of a virtual system.",
        )
        .ns(CIMV2)
        .props(vec![
            p("VirtualSystemIdentifier", s).d("The virtual system's identity (its name)."),
            p("VirtualSystemType", s),
            p("Notes", s).arr(),
            p("CreationTime", T::Datetime),
            p("ConfigurationID", s).d("A unique id of the configuration (the BIOS UUID)."),
        ]),
        c(
            "CIM_OperatingSystem",
            Some("CIM_EnabledLogicalElement"),
            "The operating system running in a computer system, as the guest agent reports it.",
        )
        .ns(CIMV2)
        .props(vec![
            p("CSCreationClassName", s).key(),
            p("CSName", s).key(),
            p("CreationClassName", s).key(),
            p("Name", s).key(),
            p("OSType", u16_).vm(
                &["0", "1", "36", "..."],
                &["Unknown", "Other", "LINUX", "see schema"],
            ),
            p("OtherTypeDescription", s),
            p("Version", s),
            p("LastBootUpTime", T::Datetime),
            p("LocalDateTime", T::Datetime),
            p("TotalVisibleMemorySize", T::Uint64),
        ]),
        c(
            "CIM_LogicalDevice",
            Some("CIM_EnabledLogicalElement"),
            "A hardware entity's logical view.",
        )
        .abs()
        .props({
            let mut v = scoped_sys_keys();
            v.push(p("DeviceID", s).key());
            v
        }),
        c(
            "CIM_LogicalPort",
            Some("CIM_LogicalDevice"),
            "A port of a device.",
        )
        .props(vec![
            p("Speed", T::Uint64),
            p("MaxSpeed", T::Uint64),
            p("PortType", u16_),
        ]),
        c(
            "CIM_NetworkPort",
            Some("CIM_LogicalPort"),
            "A network port.",
        )
        .props(vec![
            p("PermanentAddress", s).d("The burned-in address: 12 hex digits for Ethernet."),
            p("NetworkAddresses", s).arr(),
            p("LinkTechnology", u16_)
                .vm(&["0", "1", "2"], &["Unknown", "Other", "Ethernet"])
                .dep(),
            p("ActiveMaximumTransmissionUnit", T::Uint64),
        ]),
        c(
            "CIM_EthernetPort",
            Some("CIM_NetworkPort"),
            "An Ethernet network adapter of a virtual machine.",
        )
        .ns(CIMV2),
        c(
            "CIM_ServiceAccessPoint",
            Some("CIM_EnabledLogicalElement"),
            "A means to use a service.",
        )
        .abs()
        .props({
            let mut v = scoped_sys_keys();
            v.push(p("Name", s).key());
            v
        }),
        c(
            "CIM_ProtocolEndpoint",
            Some("CIM_ServiceAccessPoint"),
            "A communication point of a protocol.",
        )
        .props(vec![
            p("NameFormat", s),
            p("ProtocolIFType", u16_).vm(
                &["1", "6", "4096", "4097", "4098"],
                &["Other", "Ethernet CSMA/CD", "IPv4", "IPv6", "IPv4/v6"],
            ),
            p("OtherTypeDescription", s),
        ]),
        c(
            "CIM_IPProtocolEndpoint",
            Some("CIM_ProtocolEndpoint"),
            "An IP address of a guest interface, as the guest agent reports it.",
        )
        .ns(CIMV2)
        .props(vec![
            p("IPv4Address", s),
            p("IPv6Address", s),
            p("SubnetMask", s),
            p("PrefixLength", T::Uint8),
            p("AddressOrigin", u16_).vm(
                &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
                &[
                    "Unknown",
                    "Other",
                    "Not Applicable",
                    "Static",
                    "DHCP",
                    "BOOTP",
                    "IPv4 Link Local",
                    "DHCPv6",
                    "IPv6AutoConfig",
                    "Stateless",
                    "Link Local",
                ],
            ),
            p("IPVersionSupport", u16_).dep(),
        ]),
        c(
            "CIM_DNSProtocolEndpoint",
            Some("CIM_ProtocolEndpoint"),
            "The guest's DNS identity: its host name.",
        )
        .ns(CIMV2)
        .props(vec![
            p("Hostname", s).d("The host name the guest reports."),
            p("DomainName", s),
        ]),
        c(
            "CIM_SoftwareIdentity",
            Some("CIM_LogicalElement"),
            "A piece of software.",
        )
        .props(vec![
            p("InstanceID", s).key(),
            p("VersionString", s),
            p("Manufacturer", s),
            p("IsEntity", T::Boolean),
        ]),
        c(
            "HVSIM_GuestTools",
            Some("CIM_SoftwareIdentity"),
            "The guest tools (vm-agent or open-vm-tools) in a virtual machine.",
        )
        .ns(CIMV2)
        .props(vec![
            p("ToolsStatus", s)
                .vm(&["running", "not-running"], &["Running", "Not running"])
                .d("Whether a guest agent polls the host."),
            p("VersionType", s).d("What tools.set.versiontype said."),
        ]),
        // Associations.
        c("CIM_Dependency", None, "One element depends on another.")
            .assoc()
            .abs()
            .props(vec![
                r("Antecedent", "CIM_ManagedElement").key(),
                r("Dependent", "CIM_ManagedElement").key(),
            ]),
        c(
            "CIM_HostedDependency",
            Some("CIM_Dependency"),
            "An element is hosted by another: here a VM on the host.",
        )
        .ns(CIMV2)
        .props(vec![
            r("Antecedent", "CIM_ManagedElement").key(),
            r("Dependent", "CIM_ManagedElement").key(),
        ]),
        c(
            "CIM_HostedAccessPoint",
            Some("CIM_HostedDependency"),
            "A system hosts an access point.",
        )
        .ns(CIMV2)
        .props(vec![
            r("Antecedent", "CIM_System").key(),
            r("Dependent", "CIM_ServiceAccessPoint").key(),
        ]),
        c(
            "CIM_RunningOS",
            Some("CIM_Dependency"),
            "The operating system running on a computer system.",
        )
        .ns(CIMV2)
        .props(vec![
            r("Antecedent", "CIM_OperatingSystem").key(),
            r("Dependent", "CIM_ComputerSystem").key(),
        ]),
        c(
            "CIM_DeviceSAPImplementation",
            Some("CIM_Dependency"),
            "A device implements an access point.",
        )
        .props(vec![
            r("Antecedent", "CIM_LogicalDevice").key(),
            r("Dependent", "CIM_ServiceAccessPoint").key(),
        ]),
        c(
            "CIM_PortImplementsEndpoint",
            Some("CIM_DeviceSAPImplementation"),
            "A port implements a protocol endpoint: a NIC carries an IP address.",
        )
        .ns(CIMV2)
        .props(vec![
            r("Antecedent", "CIM_LogicalPort").key(),
            r("Dependent", "CIM_ProtocolEndpoint").key(),
        ]),
        c("CIM_Component", None, "A part of a whole.")
            .assoc()
            .abs()
            .props(vec![
                r("GroupComponent", "CIM_ManagedElement").key(),
                r("PartComponent", "CIM_ManagedElement").key(),
            ]),
        c(
            "CIM_SystemComponent",
            Some("CIM_Component"),
            "A part of a system.",
        )
        .props(vec![
            r("GroupComponent", "CIM_System").key(),
            r("PartComponent", "CIM_ManagedSystemElement").key(),
        ]),
        c(
            "CIM_SystemDevice",
            Some("CIM_SystemComponent"),
            "A device of a system.",
        )
        .ns(CIMV2)
        .props(vec![
            r("GroupComponent", "CIM_System").key(),
            r("PartComponent", "CIM_LogicalDevice").key(),
        ]),
        c(
            "CIM_InstalledOS",
            Some("CIM_SystemComponent"),
            "An operating system installed on a computer system.",
        )
        .ns(CIMV2)
        .props(vec![
            r("GroupComponent", "CIM_ComputerSystem").key(),
            r("PartComponent", "CIM_OperatingSystem").key(),
            p("PrimaryOS", T::Boolean),
        ]),
        c(
            "CIM_SettingsDefineState",
            None,
            "Settings that describe an element's current state.",
        )
        .assoc()
        .ns(CIMV2)
        .props(vec![
            r("ManagedElement", "CIM_ManagedElement").key(),
            r("SettingData", "CIM_SettingData").key(),
        ]),
        c(
            "CIM_InstalledSoftwareIdentity",
            None,
            "Software installed on a system.",
        )
        .assoc()
        .ns(CIMV2)
        .props(vec![
            r("System", "CIM_System").key(),
            r("InstalledSoftware", "CIM_SoftwareIdentity").key(),
        ]),
        // Interop.
        c(
            "CIM_Namespace",
            Some("CIM_ManagedElement"),
            "A namespace of this object manager.",
        )
        .ns(INTEROP)
        .props(vec![
            p("SystemCreationClassName", s).key(),
            p("SystemName", s).key(),
            p("ObjectManagerCreationClassName", s).key(),
            p("ObjectManagerName", s).key(),
            p("CreationClassName", s).key(),
            p("Name", s)
                .key()
                .d("The namespace's name, e.g. root/cimv2."),
            p("ClassInfo", u16_).dep(),
            p("ClassType", u16_).vm(&["0", "1", "2"], &["Unknown", "Other", "CIM"]),
        ]),
        c(
            "CIM_Service",
            Some("CIM_EnabledLogicalElement"),
            "A function offered by a system.",
        )
        .abs()
        .props({
            let mut v = scoped_sys_keys();
            v.push(p("Name", s).key());
            v.push(p("Started", T::Boolean).dep());
            v
        }),
        c("CIM_WBEMService", Some("CIM_Service"), "A WBEM service.").abs(),
        c(
            "CIM_ObjectManager",
            Some("CIM_WBEMService"),
            "This CIM object manager.",
        )
        .ns(INTEROP)
        .props(vec![p("GatherStatisticalData", T::Boolean)]),
        c(
            "CIM_NamespaceInManager",
            Some("CIM_Dependency"),
            "The namespaces an object manager serves.",
        )
        .ns(INTEROP)
        .props(vec![
            r("Antecedent", "CIM_ObjectManager").key(),
            r("Dependent", "CIM_Namespace").key(),
        ]),
        c(
            "CIM_RegisteredProfile",
            Some("CIM_ManagedElement"),
            "A management profile this server implements.",
        )
        .ns(INTEROP)
        .props(vec![
            p("InstanceID", s).key(),
            p("RegisteredOrganization", u16_)
                .req()
                .vm(&["1", "2"], &["Other", "DMTF"]),
            p("OtherRegisteredOrganization", s),
            p("RegisteredName", s).req(),
            p("RegisteredVersion", s).req(),
            p("AdvertiseTypes", u16_)
                .arr()
                .req()
                .vm(&["1", "2", "3"], &["Other", "Not Advertised", "SLP"]),
            p("AdvertiseTypeDescriptions", s).arr(),
        ]),
        c(
            "CIM_ElementConformsToProfile",
            None,
            "An element conforms to a registered profile (its central instance).",
        )
        .assoc()
        .ns(INTEROP)
        .props(vec![
            r("ConformantStandard", "CIM_RegisteredProfile").key(),
            r("ManagedElement", "CIM_ManagedElement").key(),
        ]),
        c(
            "CIM_ReferencedProfile",
            Some("CIM_Dependency"),
            "A profile that another profile references.",
        )
        .ns(INTEROP)
        .props(vec![
            r("Antecedent", "CIM_RegisteredProfile").key(),
            r("Dependent", "CIM_RegisteredProfile").key(),
        ]),
        // Indications (DSP1054).
        c(
            "CIM_IndicationFilter",
            Some("CIM_ManagedElement"),
            "Which indications a subscriber wants: a query.",
        )
        .ns(INTEROP)
        .props({
            let mut v = scoped_sys_keys();
            v.push(p("Name", s).key());
            v.push(p("SourceNamespace", s).dep());
            v.push(p("SourceNamespaces", s).arr());
            v.push(p("Query", s).req());
            v.push(p("QueryLanguage", s).req());
            v.push(p("IndividualSubscriptionSupported", T::Boolean));
            v
        }),
        c(
            "CIM_ListenerDestination",
            Some("CIM_ManagedElement"),
            "Where indications go.",
        )
        .abs()
        .props({
            let mut v = scoped_sys_keys();
            v.push(p("Name", s).key());
            v.push(
                p("PersistenceType", u16_)
                    .vm(&["1", "2", "3"], &["Other", "Permanent", "Transient"]),
            );
            v.push(p("Protocol", u16_).vm(
                &["1", "2", "3", "4"],
                &["Other", "CIM-XML", "SM CLP", "WS-Management"],
            ));
            v.push(p("Destination", s).d("The listener's URL."));
            v
        }),
        c(
            "CIM_ListenerDestinationCIMXML",
            Some("CIM_ListenerDestination"),
            "A CIM-XML indication listener.",
        )
        .ns(INTEROP),
        c(
            "CIM_IndicationSubscription",
            None,
            "Sends what a filter selects to a listener.",
        )
        .assoc()
        .ns(INTEROP)
        .props(vec![
            r("Filter", "CIM_ManagedElement").key(),
            r("Handler", "CIM_ListenerDestination").key(),
            p("OnFatalErrorPolicy", u16_).vm(
                &["1", "2", "3", "4"],
                &["Other", "Ignore", "Disable", "Remove"],
            ),
            p("SubscriptionState", u16_).vm(
                &["0", "1", "2", "3", "4"],
                &[
                    "Unknown",
                    "Other",
                    "Enabled",
                    "Enabled Degraded",
                    "Disabled",
                ],
            ),
            p("SubscriptionStartTime", T::Datetime),
        ]),
        c("CIM_Indication", None, "An event.")
            .indication()
            .abs()
            .props(vec![
                p("IndicationIdentifier", s),
                p("IndicationTime", T::Datetime),
                p("PerceivedSeverity", u16_),
                p("IndicationFilterName", s),
                p("SequenceContext", s),
                p("SequenceNumber", T::Sint64),
            ]),
        c(
            "CIM_InstIndication",
            Some("CIM_Indication"),
            "An event about an instance.",
        )
        .abs()
        .props(vec![
            p("SourceInstance", s).emb("CIM_ManagedElement").req(),
            p("SourceInstanceModelPath", s),
            p("SourceInstanceHost", s),
        ]),
        c(
            "CIM_InstModification",
            Some("CIM_InstIndication"),
            "An instance changed: a VM's power state or guest info.",
        )
        .ns(INTEROP | CIMV2)
        .props(vec![p("PreviousInstance", s).emb("CIM_ManagedElement")]),
        c(
            "CIM_InstCreation",
            Some("CIM_InstIndication"),
            "An instance appeared: an IP endpoint for an address the guest now reports.",
        )
        .ns(INTEROP | CIMV2),
        c(
            "CIM_InstDeletion",
            Some("CIM_InstIndication"),
            "An instance went away: an IP endpoint for an address the guest no longer reports. SourceInstance is its last state.",
        )
        .ns(INTEROP | CIMV2),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_resolves_keys_and_origins() {
        let s = schema();
        let ip = s.get("cim_ipprotocolendpoint").unwrap();
        let keys: Vec<&str> = ip.keys().map(|p| p.name).collect();
        assert_eq!(
            keys,
            [
                "SystemCreationClassName",
                "SystemName",
                "CreationClassName",
                "Name"
            ]
        );
        assert_eq!(
            ip.property("Caption").unwrap().class_origin,
            "CIM_ManagedElement"
        );
        assert!(ip.property("Caption").unwrap().propagated);
        assert!(ip.method("RequestStateChange").is_some());
        assert!(s.is_a("CIM_EthernetPort", "CIM_LogicalDevice"));
        assert!(!s.is_a("CIM_LogicalDevice", "CIM_EthernetPort"));
        let cs = s.get("CIM_ComputerSystem").unwrap();
        let name = cs.property("Name").unwrap();
        assert!(name.key && name.class_origin == "CIM_System");
        assert!(s.get("CIM_HostedAccessPoint").unwrap().is_assoc);
        // Namespaces flow up to superclasses.
        assert!(s.get_in(INTEROP, "CIM_ManagedElement").is_some());
        assert!(s.get_in(CIMV2, "CIM_ComputerSystem").is_some());
        assert!(s.get_in(INTEROP, "CIM_ComputerSystem").is_none());
    }
}
