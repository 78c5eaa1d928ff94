//! The snapshot trees of the VMs as the API shows them: each VM's
//! snapshots with their parents, and the current one (where the VM "is":
//! the parent of the next snapshot).
//!
//! hvsim simulates no disks or memory, so a snapshot holds what hvsim does
//! keep of a VM's configuration (the extraConfig keys that are not guest
//! variables) and the guest's vmbackup outcome; reverting restores that
//! configuration and the power state the snapshot was taken in (off: a
//! snapshot without memory leaves the VM off, as on ESXi).

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::val::Val;

/// Most snapshots per VM (ESXi supports 32 in a chain; a tree may hold
/// more, but a bound is needed).
pub const MAX_PER_VM: usize = 256;

/// One snapshot.
#[derive(Debug, Clone)]
pub struct Snap {
    /// Its moref value (`VM-snapshot-N`).
    pub id: String,
    /// The number in the tree (`VirtualMachineSnapshotTree.id`).
    pub num: i32,
    /// The snapshot it was taken after.
    pub parent: Option<String>,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// When it was taken.
    pub created: SystemTime,
    /// Whether the guest was quiesced.
    pub quiesced: bool,
    /// The extraConfig hvsim kept (not guest variables) at the time.
    pub extra: BTreeMap<String, String>,
}

/// One VM's snapshots.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// In the order they were taken.
    pub list: Vec<Snap>,
    /// The current snapshot.
    pub current: Option<String>,
}

impl Tree {
    /// The snapshot with this moref value.
    pub fn get(&self, id: &str) -> Option<&Snap> {
        self.list.iter().find(|s| s.id == id)
    }

    /// Add a snapshot as a child of the current one; it becomes current.
    pub fn add(&mut self, mut s: Snap) -> Result<(), String> {
        if self.list.len() >= MAX_PER_VM {
            return Err(format!(
                "the VM has {MAX_PER_VM} snapshots: remove some first"
            ));
        }
        s.parent = self.current.clone();
        self.current = Some(s.id.clone());
        self.list.push(s);
        Ok(())
    }

    fn children_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a Snap> + 'a {
        self.list
            .iter()
            .filter(move |s| s.parent.as_deref() == Some(id))
    }

    /// Remove `id` (its children move up to its parent) or, with
    /// `children`, its whole subtree. A removed current snapshot leaves
    /// its parent current. False when there is no such snapshot.
    pub fn remove(&mut self, id: &str, children: bool) -> bool {
        let Some(parent) = self.get(id).map(|s| s.parent.clone()) else {
            return false;
        };
        let mut gone = vec![id.to_string()];
        if children {
            let mut i = 0;
            while i < gone.len() {
                let kids: Vec<String> = self.children_of(&gone[i]).map(|s| s.id.clone()).collect();
                gone.extend(kids);
                i += 1;
            }
        } else {
            for s in &mut self.list {
                if s.parent.as_deref() == Some(id) {
                    s.parent = parent.clone();
                }
            }
        }
        self.list.retain(|s| !gone.contains(&s.id));
        if self.current.as_ref().is_some_and(|c| gone.contains(c)) {
            self.current = parent;
        }
        true
    }

    fn tree_of(&self, s: &Snap, vm_id: &str) -> Val {
        Val::Obj(
            "VirtualMachineSnapshotTree",
            vec![
                ("snapshot", Val::mor("VirtualMachineSnapshot", &s.id)),
                ("vm", Val::mor("VirtualMachine", vm_id)),
                ("name", Val::s(s.name.clone())),
                ("description", Val::s(s.description.clone())),
                ("id", Val::Int(s.num)),
                ("createTime", Val::Time(s.created)),
                (
                    "state",
                    Val::Enum("VirtualMachinePowerState", "poweredOff".into()),
                ),
                ("quiesced", Val::Bool(s.quiesced)),
                (
                    "childSnapshotList",
                    Val::List(
                        "VirtualMachineSnapshotTree",
                        self.children_of(&s.id)
                            .map(|c| self.tree_of(c, vm_id))
                            .collect(),
                    ),
                ),
                ("replaySupported", Val::Bool(false)),
            ],
        )
    }

    /// `VirtualMachine.snapshot` and `rootSnapshot`; `None` without
    /// snapshots (the properties are unset then).
    pub fn properties(&self, vm_id: &str) -> Option<(Val, Val)> {
        let roots: Vec<&Snap> = self.list.iter().filter(|s| s.parent.is_none()).collect();
        if roots.is_empty() {
            return None;
        }
        let mut info = Vec::new();
        if let Some(c) = &self.current {
            info.push(("currentSnapshot", Val::mor("VirtualMachineSnapshot", c)));
        }
        info.push((
            "rootSnapshotList",
            Val::List(
                "VirtualMachineSnapshotTree",
                roots.iter().map(|s| self.tree_of(s, vm_id)).collect(),
            ),
        ));
        let root_refs = Val::List(
            "ManagedObjectReference",
            roots
                .iter()
                .map(|s| Val::mor("VirtualMachineSnapshot", &s.id))
                .collect(),
        );
        Some((Val::Obj("VirtualMachineSnapshotInfo", info), root_refs))
    }

    /// The `VirtualMachineSnapshot` object's properties.
    pub fn snapshot_object(&self, id: &str, vm_id: &str) -> Option<Val> {
        self.get(id)?;
        Some(Val::Obj(
            "",
            vec![
                ("vm", Val::mor("VirtualMachine", vm_id)),
                (
                    "childSnapshot",
                    Val::List(
                        "ManagedObjectReference",
                        self.children_of(id)
                            .map(|c| Val::mor("VirtualMachineSnapshot", &c.id))
                            .collect(),
                    ),
                ),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: i32) -> Snap {
        Snap {
            id: format!("1-snapshot-{n}"),
            num: n,
            parent: None,
            name: format!("s{n}"),
            description: String::new(),
            created: SystemTime::now(),
            quiesced: false,
            extra: BTreeMap::new(),
        }
    }

    fn names(t: &Tree, v: &Val) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(v: &Val, out: &mut Vec<String>, depth: usize) {
            if let Some(Val::List(_, items)) =
                v.field("rootSnapshotList").or(v.field("childSnapshotList"))
            {
                for it in items {
                    out.push(format!(
                        "{}{}",
                        " ".repeat(depth),
                        it.field("name").and_then(Val::as_str).unwrap()
                    ));
                    walk(it, out, depth + 1);
                }
            }
        }
        let _ = t;
        walk(v, &mut out, 0);
        out
    }

    #[test]
    fn a_tree_branches_after_a_revert_and_removal_keeps_the_children() {
        let mut t = Tree::default();
        t.add(snap(1)).unwrap();
        t.add(snap(2)).unwrap();
        // "Revert" to s1: the next snapshot is its child, beside s2.
        t.current = Some("1-snapshot-1".into());
        t.add(snap(3)).unwrap();
        let (info, roots) = t.properties("1").unwrap();
        assert_eq!(names(&t, &info), ["s1", " s2", " s3"]);
        assert_eq!(roots.mors().len(), 1);
        // Removing s1 alone: its children become roots; s3 stays current.
        assert!(t.remove("1-snapshot-1", false));
        let (info, roots) = t.properties("1").unwrap();
        assert_eq!(names(&t, &info), ["s2", "s3"]);
        assert_eq!(roots.mors().len(), 2);
        assert_eq!(t.current.as_deref(), Some("1-snapshot-3"));
        // Removing the current one leaves its parent (none) current.
        assert!(t.remove("1-snapshot-3", true));
        assert_eq!(t.current, None);
        assert!(!t.remove("1-snapshot-3", true));
        assert!(t.remove("1-snapshot-2", false));
        assert!(t.properties("1").is_none());
    }
}
