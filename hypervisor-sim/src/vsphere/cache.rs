//! A per-VM cache of the VirtualMachine property tree and of its
//! properties written as XML, so that RetrievePropertiesEx over many VMs
//! costs a key check per VM and a copy of each asked property's XML.
//!
//! An entry is valid while its [`Key`] is unchanged: the VM's
//! [`Vm::revision`](crate::vm::Vm::revision) (guest reports, power,
//! tools, variables), whether the tools are alive (time-dependent, so not
//! in the revision), the service's own revision (extraConfig kept here,
//! snapshots, anything changed through the API) and the 20-second period
//! of `summary.quickStats.uptimeSeconds` (ESXi refreshes quick stats on
//! that interval too). The key is read before the data is: a change in
//! between leaves the entry with an older key, so the next request
//! rebuilds it; a reader never gets data older than its key.
//!
//! Besides each property's XML, an entry keeps the VM's whole
//! ObjectContent per property selection (what RetrievePropertiesEx
//! answers for it), so a repeated query copies one string per VM.
//!
//! Threat table: property paths come from clients, so the number of XML
//! fragments and of ObjectContents kept per VM is bounded
//! ([`MAX_FRAGMENTS`] each); beyond it the XML is written for the request
//! and not kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::val::{prerender, Val};
use crate::vm::Vm;

/// XML fragments kept per VM (distinct property paths).
pub const MAX_FRAGMENTS: usize = 64;
/// Seconds `uptimeSeconds` stays the same (ESXi's quick stats interval).
pub const UPTIME_PERIOD_S: u64 = 20;

/// What a VM's cached tree depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    revision: u64,
    tools_running: bool,
    api_revision: u64,
    period: u64,
}

impl Key {
    /// Read the key of `vm` now; `api_revision` is the service's.
    pub fn of(vm: &Vm, api_revision: u64, now: SystemTime) -> Key {
        Key {
            revision: vm.revision(),
            tools_running: vm.tools_running(),
            api_revision,
            period: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() / UPTIME_PERIOD_S)
                .unwrap_or(0),
        }
    }
}

/// One VM's property tree and the XML of the properties asked so far.
#[derive(Debug)]
pub struct Entry {
    key: Key,
    /// When it was built (the `now` its time-dependent fields show).
    pub built: SystemTime,
    /// The VM's top-level properties.
    pub obj: Arc<Val>,
    fragments: Mutex<HashMap<String, Arc<str>>>,
    /// Whole ObjectContent XML per property selection.
    contents: Mutex<HashMap<String, Arc<str>>>,
}

impl Entry {
    /// The VM's ObjectContent (its content XML) for the property selection
    /// `key`, written by `render` the first time.
    pub fn content(&self, key: &str, render: impl FnOnce() -> String) -> Arc<str> {
        if let Some(c) = self
            .contents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return c.clone();
        }
        // Rendered without the lock: it takes the fragments' lock.
        let c: Arc<str> = render().into();
        let mut contents = self.contents.lock().unwrap_or_else(|p| p.into_inner());
        if contents.len() < MAX_FRAGMENTS {
            contents.insert(key.to_string(), c.clone());
        }
        c
    }

    /// The property at `path` as a pre-written value ([`Val::Pre`]);
    /// `None` when the VM has no such property (unset).
    pub fn property(&self, path: &str) -> Option<Val> {
        let mut frags = self.fragments.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = frags.get(path) {
            return Some(Val::Pre(f.clone()));
        }
        let f = prerender(self.obj.path(path)?);
        if frags.len() < MAX_FRAGMENTS {
            frags.insert(path.to_string(), f.clone());
        }
        Some(Val::Pre(f))
    }
}

/// The cache: one slot per VM, in the API's inventory order.
#[derive(Debug)]
pub struct VmCache {
    slots: Vec<Mutex<Option<Arc<Entry>>>>,
}

impl VmCache {
    /// Slots for `n` VMs.
    pub fn new(n: usize) -> VmCache {
        VmCache {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The entry of VM number `index` for `key`, built with `build` when
    /// the kept one has another key. Concurrent readers of one VM wait for
    /// one build rather than each building.
    pub fn entry(
        &self,
        index: usize,
        key: Key,
        now: SystemTime,
        build: impl FnOnce() -> Val,
    ) -> Option<Arc<Entry>> {
        let mut slot = self
            .slots
            .get(index)?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some(e) if e.key == key => Some(e.clone()),
            _ => {
                let e = Arc::new(Entry {
                    key,
                    built: now,
                    obj: Arc::new(build()),
                    fragments: Mutex::new(HashMap::new()),
                    contents: Mutex::new(HashMap::new()),
                });
                *slot = Some(e.clone());
                Some(e)
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::model::VmEntry;
    use super::super::soap;
    use super::super::Service;
    use super::*;
    use crate::store::Store;
    use crate::users::UserStore;
    use crate::vm::{PowerAction, VmInfo, VmLimits};
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub(in crate::vsphere) fn service() -> (Arc<Service>, Vec<Arc<Vm>>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut inv = BTreeMap::new();
        let mut vms = Vec::new();
        for (n, name) in ["a", "b", "c"].iter().enumerate() {
            let info = VmInfo {
                name: (*name).into(),
                uuid: [n as u8 + 1; 16],
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
            inv.insert(name.to_string(), vm.clone());
            vms.push(vm);
        }
        let users = Arc::new(UserStore::load(&[], store).unwrap());
        let svc = Service::with_max_wait(&Arc::new(inv), users, Duration::from_secs(1));
        (svc, vms, dir)
    }

    /// Every top-level property of every VM: the cached XML equals the
    /// XML of a tree built afresh (at the same time).
    fn compare_all(svc: &Service) {
        for e in &svc.inventory().vms {
            let entry = svc.vm_entry(&e.id).unwrap();
            let fresh = svc.vm_object_for_test(e, entry.built);
            let Val::Obj(_, fields) = &fresh else {
                panic!("not an object")
            };
            assert!(!fields.is_empty());
            for (k, v) in fields {
                for _ in 0..2 {
                    let cached = entry.property(k).unwrap();
                    assert_eq!(cached, Val::Pre(prerender(v)), "{}: {k}", e.id);
                }
            }
        }
    }

    fn prop(svc: &Service, e: &VmEntry, path: &str) -> String {
        match svc.vm_entry(&e.id).unwrap().property(path) {
            Some(Val::Pre(x)) => x.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn cached_properties_equal_fresh_ones_and_follow_changes() {
        let (svc, vms, _dir) = service();
        compare_all(&svc);
        let e = svc.inventory().vms[1].clone();
        assert!(prop(&svc, &e, "runtime.powerState").contains("poweredOn"));
        // A change is seen by the very next read, whoever made it.
        vms[1].power(PowerAction::Off, "test").unwrap();
        assert!(prop(&svc, &e, "runtime.powerState").contains("poweredOff"));
        vms[1].set_var("guestinfo.role", b"db").unwrap();
        assert!(prop(&svc, &e, "config.extraConfig").contains(">db<"));
        let spec = soap::parse(
            b"<spec><extraConfig><key>disk.EnableUUID</key><value>TRUE</value></extraConfig></spec>",
        )
        .unwrap();
        svc.reconfigure_for_test(&e, &spec);
        assert!(prop(&svc, &e, "config.extraConfig").contains(">TRUE<"));
        // The other VMs were not touched and still compare equal.
        compare_all(&svc);
        assert!(prop(&svc, &svc.inventory().vms[0], "runtime.powerState").contains("poweredOn"));
    }

    #[test]
    fn fragments_per_vm_are_bounded() {
        let (svc, _vms, _dir) = service();
        let entry = svc.vm_entry("1").unwrap();
        for i in 0..MAX_FRAGMENTS * 2 {
            // Paths that exist and paths that do not.
            let _ = entry.property(&format!("config.nope{i}"));
            let _ = entry.property(if i % 2 == 0 { "name" } else { "guest" });
        }
        assert!(entry.fragments.lock().unwrap().len() <= MAX_FRAGMENTS);
        assert!(svc.vm_entry("0").is_none());
        assert!(svc.vm_entry("4").is_none());
        assert!(svc.vm_entry("01").is_none());
    }
}
