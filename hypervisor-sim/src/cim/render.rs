//! EnumerateInstances rendering with a per-VM cache of CIM-XML fragments.
//!
//! Most instances belong to one VM ([`Gen::PerVm`]). For each VM the cache
//! keeps the [`VmView`] and, per provider and per rendering choice (the
//! options that change the XML: LocalOnly, IncludeQualifiers,
//! IncludeClassOrigin, PropertyList, and the class DeepInheritance=false
//! restricts to), the finished `VALUE.NAMEDINSTANCE` elements of that VM's
//! instances. A fragment is valid while the VM's [`VmKey`] is unchanged:
//! [`Vm::revision`] plus the two things it does not count (whether the
//! tools are alive, which also depends on time, and a pending graceful
//! power request). An enumeration then costs a key check per VM and a copy
//! of each fragment into the response.
//!
//! Threat table: property lists come from clients, so the number of
//! renderings kept per VM is bounded ([`MAX_VARIANTS`]); the oldest is
//! dropped beyond it.

use std::sync::{Arc, Mutex};

use super::encode::{self, Opts};
use super::provider::{Gen, Snapshot, VmView};
use super::schema::{ClassDef, Schema};
use super::value::Instance;
use crate::control::Inventory;
use crate::vm::{PowerAction, Vm};

/// Renderings kept per VM (provider and options combined).
pub const MAX_VARIANTS: usize = 16;

/// What a VM's cached renderings depend on besides its fixed facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmKey {
    revision: u64,
    tools_running: bool,
    pending: Option<PowerAction>,
}

impl VmKey {
    /// Read the key of `vm`. Read before its data is copied: a change in
    /// between leaves the entry with an older key, so the next request
    /// rebuilds it (never the other way round).
    pub fn of(vm: &Vm) -> VmKey {
        let (revision, pending) = {
            let st = vm.lock();
            (vm.revision(), st.data.pending_soft)
        };
        VmKey {
            revision,
            // Time-dependent (the last TCLO poll ages): not in the revision.
            tools_running: vm.tools_running(),
            pending,
        }
    }
}

/// The rendering choices a fragment was made with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    provider: usize,
    restrict: Option<&'static str>,
    local_only: bool,
    include_qualifiers: bool,
    include_class_origin: bool,
    property_list: Option<Vec<String>>,
    /// Another encoding than CIM-XML's (WS-Management's), with what its
    /// output depends on.
    format: Option<String>,
}

/// One VM's view and renderings, valid for one key.
#[derive(Debug)]
struct Entry {
    key: VmKey,
    view: VmView,
    fragments: Mutex<Vec<(Variant, Arc<str>)>>,
}

/// The cache: one slot per VM, in inventory order.
#[derive(Debug)]
pub struct Cache {
    slots: Vec<Mutex<Option<Arc<Entry>>>>,
}

impl Cache {
    /// An empty cache for `inventory` (whose VMs never change).
    pub fn new(inventory: &Inventory) -> Cache {
        Cache {
            slots: inventory.values().map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The current entry of each VM, rebuilt where the VM changed.
    fn entries(&self, inventory: &Inventory) -> Vec<Arc<Entry>> {
        inventory
            .values()
            .zip(&self.slots)
            .map(|(vm, slot)| {
                let key = VmKey::of(vm);
                let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
                match &*slot {
                    Some(e) if e.key == key => e.clone(),
                    _ => {
                        let e = Arc::new(Entry {
                            key,
                            view: VmView::of(vm),
                            fragments: Mutex::new(Vec::new()),
                        });
                        *slot = Some(e.clone());
                        e
                    }
                }
            })
            .collect()
    }
}

/// Append the `VALUE.NAMEDINSTANCE` of each instance.
fn named_instances(
    out: &mut String,
    schema: &Schema,
    insts: &[Instance],
    ns: &str,
    opts: &Opts,
    restrict: Option<&ClassDef>,
) {
    for i in insts {
        out.push_str("<VALUE.NAMEDINSTANCE>");
        encode::instance_name(out, schema, &super::provider::path_of(schema, i, ns));
        encode::instance(out, schema, i, opts, restrict);
        out.push_str("</VALUE.NAMEDINSTANCE>");
    }
}

/// Append the `VALUE.NAMEDINSTANCE` elements of every instance of `class`
/// (and subclasses) in namespace `bit` (named `ns`), as EnumerateInstances
/// answers them, using and refreshing the cache of `svc`.
pub fn enumerate_instances(
    svc: &super::Service,
    bit: u8,
    ns: &str,
    class: &ClassDef,
    opts: &Opts,
    restrict: Option<&ClassDef>,
    out: &mut String,
) {
    let schema: &Schema = &svc.schema;
    let variant = |provider| Variant {
        provider,
        restrict: restrict.map(|c| c.name),
        local_only: opts.local_only,
        include_qualifiers: opts.include_qualifiers,
        include_class_origin: opts.include_class_origin,
        property_list: opts.property_list.clone(),
        format: None,
    };
    let render = |out: &mut String, insts: &[Instance]| {
        named_instances(out, schema, insts, ns, opts, restrict)
    };
    enumerate_with(svc, bit, class, &variant, &render, out);
}

/// Append the rendering of every instance of `class` (and subclasses) in
/// namespace `bit`, each made by `render` and followed by a NUL (which no
/// rendered XML contains: the escaping replaces control characters), using
/// and refreshing the cache of `svc` under `format`: what besides the
/// instance the rendering depends on. For other encodings of the provider
/// (WS-Management).
pub fn enumerate_rendered(
    svc: &super::Service,
    bit: u8,
    class: &ClassDef,
    format: &str,
    render: &dyn Fn(&mut String, &Instance),
    out: &mut String,
) {
    let variant = |provider| Variant {
        provider,
        restrict: None,
        local_only: false,
        include_qualifiers: false,
        include_class_origin: false,
        property_list: None,
        format: Some(format.to_string()),
    };
    let each = |out: &mut String, insts: &[Instance]| {
        for i in insts {
            render(out, i);
            out.push('\0');
        }
    };
    enumerate_with(svc, bit, class, &variant, &each, out);
}

fn enumerate_with(
    svc: &super::Service,
    bit: u8,
    class: &ClassDef,
    variant: &dyn Fn(usize) -> Variant,
    render: &dyn Fn(&mut String, &[Instance]),
    out: &mut String,
) {
    let schema: &Schema = &svc.schema;
    // The VMs are read through the cache; `vms` stays empty (per-VM
    // generators do not read it), `dynamic` is filled only when needed.
    let mut snap = Snapshot {
        schema,
        host: &svc.host,
        vms: Vec::new(),
        dynamic: Vec::new(),
    };
    let providers: Vec<_> = snap.providers(bit, class).collect();
    if providers.iter().any(|(_, p)| matches!(p.gen, Gen::Dynamic)) {
        snap.dynamic = svc.indications.instances();
    }
    let entries = if providers
        .iter()
        .any(|(_, p)| matches!(p.gen, Gen::PerVm(..)))
    {
        svc.cache.entries(&svc.inventory)
    } else {
        Vec::new()
    };
    let mut insts = Vec::new();
    for (index, p) in providers {
        insts.clear();
        snap.fixed_instances(p, &mut insts);
        render(out, &insts);
        let Gen::PerVm(_, gen) = p.gen else {
            continue;
        };
        let want = variant(index);
        for e in &entries {
            let found = {
                let f = e.fragments.lock().unwrap_or_else(|p| p.into_inner());
                f.iter().find(|(v, _)| *v == want).map(|(_, s)| s.clone())
            };
            let frag = match found {
                Some(s) => s,
                None => {
                    insts.clear();
                    gen(&snap, &e.view, &mut insts);
                    let mut s = String::new();
                    render(&mut s, &insts);
                    let s: Arc<str> = s.into();
                    let mut f = e.fragments.lock().unwrap_or_else(|p| p.into_inner());
                    if f.len() >= MAX_VARIANTS {
                        f.remove(0);
                    }
                    f.push((want.clone(), s.clone()));
                    s
                }
            };
            out.push_str(&frag);
        }
    }
}

/// The same as [`enumerate_instances`] without the cache: every instance
/// built and rendered afresh from a new snapshot (the reference the cached
/// path is tested against).
pub fn enumerate_instances_uncached(
    svc: &super::Service,
    bit: u8,
    ns: &str,
    class: &ClassDef,
    opts: &Opts,
    restrict: Option<&ClassDef>,
    out: &mut String,
) {
    let snap = svc.snapshot();
    let insts = snap.instances(bit, class);
    named_instances(out, &svc.schema, &insts, ns, opts, restrict);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cim::provider::NS_INTEROP;
    use crate::cim::schema::{CIMV2, INTEROP};
    use crate::cim::Service;
    use crate::store::Store;
    use crate::vm::{VmInfo, VmLimits};
    use protocol::nicinfo::{self, GuestNicV3, IpEntry, NicInfoV3};
    use std::collections::BTreeMap;

    fn vm(store: &Arc<Store>, name: &str, n: u8) -> Arc<Vm> {
        let info = VmInfo {
            name: name.into(),
            uuid: [n; 16],
            memory_mb: 1024,
            backdoor_socket: "/nonexistent".into(),
            clipboard: false,
            model: "VMware Virtual Platform".into(),
        };
        let limits = VmLimits {
            channels: Default::default(),
            max_guest_vars: 64,
        };
        let vm = Arc::new(Vm::new(info, limits, store.clone(), 1).unwrap());
        set_nics(&vm, n, 2);
        vm
    }

    fn set_nics(vm: &Vm, n: u8, ips: usize) {
        let addrs = ["10.0.0.1", "fd00::1", "192.168.7.9", "fe80::5"];
        let info = NicInfoV3 {
            nics: vec![GuestNicV3 {
                mac: format!("00:50:56:00:00:{n:02x}"),
                ips: addrs[..ips]
                    .iter()
                    .map(|a| IpEntry {
                        addr: a.parse::<std::net::IpAddr>().unwrap().into(),
                        prefix: 24,
                        origin: Some(nicinfo::origin::DHCP),
                        status: None,
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut st = vm.lock();
        st.data.nics = Some(info);
        st.data.guest.insert(
            protocol::guestinfo_key::DNS_NAME,
            b"guest<&>\x01\0".to_vec(),
        );
        drop(st);
        vm.touch();
    }

    fn service() -> (Arc<Service>, Vec<Arc<Vm>>) {
        let store = Arc::new(Store::in_memory().unwrap());
        let vms: Vec<_> = (1..=3).map(|i| vm(&store, &format!("vm{i}"), i)).collect();
        let inv: BTreeMap<_, _> = vms
            .iter()
            .map(|v| (v.info.name.clone(), v.clone()))
            .collect();
        (Service::new(Arc::new(inv), "host\"x".into()), vms)
    }

    fn option_sets() -> Vec<Opts> {
        let mut v = Vec::new();
        for q in [false, true] {
            for o in [false, true] {
                for pl in [
                    None,
                    Some(vec![]),
                    Some(vec!["name".to_string(), "IPv4Address".to_string()]),
                ] {
                    v.push(Opts {
                        local_only: false,
                        include_qualifiers: q,
                        include_class_origin: o,
                        property_list: pl,
                    });
                }
            }
        }
        v
    }

    /// LastBootUpTime is derived from two clocks read one after the other,
    /// so two fresh renderings may differ in its last microsecond digit
    /// (the cache keeps the first); everything else must match exactly.
    fn without_boot_time(s: &str) -> String {
        let name = "NAME=\"LastBootUpTime\"";
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(name) {
            let end = i + rest[i..].find("</PROPERTY>").unwrap();
            let prop = &rest[..end];
            match prop
                .strip_suffix("</VALUE>")
                .and_then(|p| p.rfind("<VALUE>"))
            {
                Some(v) => out.push_str(&prop[..v]),
                None => out.push_str(prop),
            }
            rest = &rest[end..];
        }
        out.push_str(rest);
        out
    }

    /// Every class, every option set, with and without DeepInheritance:
    /// cached (cold, then warm) equals uncached byte for byte.
    fn compare_all(svc: &Service) -> usize {
        let mut compared = 0;
        for (bit, ns) in [(CIMV2, "root/cimv2"), (INTEROP, NS_INTEROP)] {
            for c in svc.schema.classes(bit) {
                for opts in option_sets() {
                    for restrict in [None, Some(c)] {
                        let mut want = String::new();
                        enumerate_instances_uncached(svc, bit, ns, c, &opts, restrict, &mut want);
                        for _ in 0..2 {
                            let mut got = String::new();
                            enumerate_instances(svc, bit, ns, c, &opts, restrict, &mut got);
                            let (got, want) = (without_boot_time(&got), without_boot_time(&want));
                            if got != want {
                                let at = got
                                    .bytes()
                                    .zip(want.bytes())
                                    .position(|(a, b)| a != b)
                                    .unwrap_or(got.len().min(want.len()));
                                let ctx = |s: &str| {
                                    s[at.saturating_sub(300)..(at + 200).min(s.len())].to_string()
                                };
                                panic!(
                                    "{} {opts:?} {restrict:?}: differ at {at}:\n cached: {}\n  fresh: {}",
                                    c.name,
                                    ctx(&got),
                                    ctx(&want)
                                );
                            }
                        }
                        compared += want.len();
                    }
                }
            }
        }
        compared
    }

    #[test]
    fn cached_rendering_equals_uncached() {
        let (svc, vms) = service();
        assert!(compare_all(&svc) > 100_000);
        // Changes the revision counts: NIC and power changes.
        set_nics(&vms[1], 2, 4);
        vms[2].power(PowerAction::Off, "test").unwrap();
        compare_all(&svc);
        let ep = svc.schema.get("CIM_IPProtocolEndpoint").unwrap();
        let mut s = String::new();
        enumerate_instances(
            &svc,
            CIMV2,
            "root/cimv2",
            ep,
            &Opts::default(),
            None,
            &mut s,
        );
        assert_eq!(s.matches("<VALUE.NAMEDINSTANCE>").count(), 2 + 4 + 2);
        assert!(s.contains("192.168.7.9"));
    }

    #[test]
    fn changes_outside_the_revision_are_seen() {
        let (svc, vms) = service();
        let cs = svc.schema.get("CIM_ComputerSystem").unwrap();
        let render = || {
            let mut s = String::new();
            enumerate_instances(
                &svc,
                CIMV2,
                "root/cimv2",
                cs,
                &Opts::default(),
                None,
                &mut s,
            );
            s
        };
        let before = render();
        // A graceful request pending does not touch the revision.
        vms[0].lock().data.pending_soft = Some(PowerAction::SoftOff);
        let after = render();
        assert_ne!(before, after);
        let mut want = String::new();
        enumerate_instances_uncached(
            &svc,
            CIMV2,
            "root/cimv2",
            cs,
            &Opts::default(),
            None,
            &mut want,
        );
        assert_eq!(after, want);
    }

    #[test]
    fn other_formats_follow_the_vms() {
        let (svc, vms) = service();
        let c = svc.schema.get("CIM_IPProtocolEndpoint").unwrap();
        let f = |out: &mut String, i: &Instance| out.push_str(&i.get("Name").text());
        let expect = |svc: &Service| -> String {
            svc.snapshot()
                .instances(CIMV2, c)
                .iter()
                .map(|i| format!("{}\0", i.get("Name").text()))
                .collect()
        };
        for round in 0..2 {
            let mut a = String::new();
            enumerate_rendered(&svc, CIMV2, c, "test", &f, &mut a);
            assert_eq!(a, expect(&svc), "round {round}");
            assert_eq!(a.matches('\0').count(), 6);
        }
        // A VM reports more addresses: the next enumeration has them, and
        // the CIM-XML rendering of the same VM is a separate entry.
        set_nics(&vms[0], 1, 4);
        let mut a = String::new();
        enumerate_rendered(&svc, CIMV2, c, "test", &f, &mut a);
        assert_eq!(a, expect(&svc));
        assert_eq!(a.matches('\0').count(), 8);
        assert!(compare_all(&svc) > 0);
    }

    #[test]
    fn variants_are_bounded() {
        let (svc, _) = service();
        let ep = svc.schema.get("CIM_IPProtocolEndpoint").unwrap();
        for i in 0..100 {
            let opts = Opts {
                property_list: Some(vec![format!("p{i}")]),
                ..Opts::default()
            };
            let mut s = String::new();
            enumerate_instances(&svc, CIMV2, "root/cimv2", ep, &opts, None, &mut s);
        }
        for e in svc.cache.entries(&svc.inventory) {
            assert!(e.fragments.lock().unwrap().len() <= MAX_VARIANTS);
        }
    }
}
