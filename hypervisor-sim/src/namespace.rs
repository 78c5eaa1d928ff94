//! The namespace DB: named key/value stores of a VM that guest and host
//! share (ESXi's `VirtualMachineNamespaceManager`). The guest reads and
//! writes them with the RPCI commands `namespace-priv-get-values` and
//! `namespace-priv-set-keys` (open-vm-tools' `vmware-namespace-cmd` and its
//! serviceDiscovery plugin), over a *privileged* channel only: RPCI over
//! vsock from a privileged source port (below 1024, so root in the guest).
//!
//! Wire format (every field a NUL-terminated string, after the command and
//! one space):
//!
//! ```text
//! namespace-priv-get-values NS\0KEY\0[KEY\0...]
//!   -> "1 " VALUE\0[VALUE\0...]          (a missing key reads as "")
//! namespace-priv-set-keys NS\0NUMOPS\0(OP\0KEY\0VALUE\0OLDVALUE\0){NUMOPS}[\0]
//!   OP 0: set (an empty VALUE deletes the key)
//!   OP 1: set only if the key's current value is OLDVALUE
//!   -> "1 " on success; nothing is changed unless every operation applies
//! ```
//!
//! Namespaces exist when the VM's configuration names them (on ESXi the
//! vSphere API creates them); a guest cannot create one.

use std::collections::BTreeMap;

/// Longest namespace name.
pub const MAX_NAME: usize = 128;
/// Longest key.
pub const MAX_KEY: usize = 256;
/// Largest value (vmware-namespace-cmd's limit for a value from a file).
pub const MAX_VALUE: usize = 16 * 1024;
/// Most operations in one `namespace-priv-set-keys`.
pub const MAX_OPS: usize = 256;
/// Most bytes of keys and values one namespace may hold.
pub const MAX_NAMESPACE_BYTES: usize = 1 << 20;

/// Why a namespace request failed; the text is the RPCI failure reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamespaceError {
    /// The request does not parse.
    #[error("Invalid arguments: {0}")]
    Malformed(&'static str),
    /// The channel is not privileged.
    #[error("Permission denied")]
    PermissionDenied,
    /// No such namespace.
    #[error("Namespace not found")]
    NotFound,
    /// A conditional set found another value.
    #[error("Old value does not match")]
    Mismatch,
    /// A key or value is over its limit, or the namespace would be.
    #[error("Namespace full")]
    Full,
}

/// A parsed `namespace-priv-get-values`.
#[derive(Debug, PartialEq, Eq)]
pub struct GetRequest<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Keys, in order.
    pub keys: Vec<&'a str>,
}

/// One operation of a `namespace-priv-set-keys`.
#[derive(Debug, PartialEq, Eq)]
pub struct SetOp<'a> {
    /// Apply only if the key holds `old`.
    pub conditional: bool,
    /// Key.
    pub key: &'a str,
    /// New value; empty deletes.
    pub value: &'a [u8],
    /// Expected current value (conditional operations).
    pub old: &'a [u8],
}

/// A parsed `namespace-priv-set-keys`.
#[derive(Debug, PartialEq, Eq)]
pub struct SetRequest<'a> {
    /// Namespace.
    pub namespace: &'a str,
    /// Operations, in order.
    pub ops: Vec<SetOp<'a>>,
}

/// NUL-terminated fields of a request body.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn next(&mut self) -> Result<&'a [u8], NamespaceError> {
        let end = self
            .rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(NamespaceError::Malformed("a field is not NUL-terminated"))?;
        let (field, rest) = self.rest.split_at(end);
        self.rest = &rest[1..];
        Ok(field)
    }

    fn text(&mut self, what: &'static str) -> Result<&'a str, NamespaceError> {
        std::str::from_utf8(self.next()?).map_err(|_| NamespaceError::Malformed(what))
    }
}

/// Whether `name` may name a namespace: 1-[`MAX_NAME`] printable ASCII
/// characters, no spaces.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && !key.chars().any(char::is_control)
}

/// Parse the body (after the command and its space) of a
/// `namespace-priv-get-values`.
pub fn parse_get(body: &[u8]) -> Result<GetRequest<'_>, NamespaceError> {
    let mut f = Fields { rest: body };
    let namespace = f.text("namespace is not UTF-8")?;
    let mut keys = Vec::new();
    while !f.rest.is_empty() {
        let key = f.text("key is not UTF-8")?;
        if key.is_empty() && f.rest.iter().all(|&b| b == 0) {
            break;
        }
        if !valid_key(key) {
            return Err(NamespaceError::Malformed("bad key"));
        }
        if keys.len() == MAX_OPS {
            return Err(NamespaceError::Malformed("too many keys"));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(NamespaceError::Malformed("no key"));
    }
    Ok(GetRequest { namespace, keys })
}

/// Parse the body (after the command and its space) of a
/// `namespace-priv-set-keys`.
pub fn parse_set(body: &[u8]) -> Result<SetRequest<'_>, NamespaceError> {
    let mut f = Fields { rest: body };
    let namespace = f.text("namespace is not UTF-8")?;
    let n: usize = f
        .text("operation count is not UTF-8")?
        .parse()
        .map_err(|_| NamespaceError::Malformed("operation count is not a number"))?;
    if n == 0 || n > MAX_OPS {
        return Err(NamespaceError::Malformed("operation count out of range"));
    }
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        let conditional = match f.next()? {
            b"0" => false,
            b"1" => true,
            _ => return Err(NamespaceError::Malformed("operation is not 0 or 1")),
        };
        let key = f.text("key is not UTF-8")?;
        if !valid_key(key) {
            return Err(NamespaceError::Malformed("bad key"));
        }
        let value = f.next()?;
        let old = f.next()?;
        ops.push(SetOp {
            conditional,
            key,
            value,
            old,
        });
    }
    // serviceDiscovery ends its deletes with one more NUL.
    if f.rest.iter().any(|&b| b != 0) {
        return Err(NamespaceError::Malformed("data after the last operation"));
    }
    Ok(SetRequest { namespace, ops })
}

/// One namespace: key → value.
pub type Namespace = BTreeMap<String, Vec<u8>>;

/// What a set request changes: key → new value (None deletes).
pub type Changes = BTreeMap<String, Option<Vec<u8>>>;

/// The values of `req`'s keys, each NUL-terminated (the reply body).
pub fn get(ns: Option<&Namespace>, req: &GetRequest<'_>) -> Result<Vec<u8>, NamespaceError> {
    let ns = ns.ok_or(NamespaceError::NotFound)?;
    let mut out = Vec::new();
    for k in &req.keys {
        if let Some(v) = ns.get(*k) {
            out.extend_from_slice(v);
        }
        out.push(0);
    }
    Ok(out)
}

/// The changes `req` makes to `ns`, or why none are made (all or nothing).
pub fn plan(ns: Option<&Namespace>, req: &SetRequest<'_>) -> Result<Changes, NamespaceError> {
    let ns = ns.ok_or(NamespaceError::NotFound)?;
    let mut changes = Changes::new();
    for op in &req.ops {
        if op.value.len() > MAX_VALUE {
            return Err(NamespaceError::Full);
        }
        let current: &[u8] = match changes.get(op.key) {
            Some(v) => v.as_deref().unwrap_or(b""),
            None => ns.get(op.key).map_or(b"", Vec::as_slice),
        };
        if op.conditional && current != op.old {
            return Err(NamespaceError::Mismatch);
        }
        let new = (!op.value.is_empty()).then(|| op.value.to_vec());
        changes.insert(op.key.to_string(), new);
    }
    let size = |k: &str, v: &[u8]| k.len() + v.len();
    let mut total: usize = ns
        .iter()
        .filter(|(k, _)| !changes.contains_key(*k))
        .map(|(k, v)| size(k, v))
        .sum();
    for (k, v) in &changes {
        total += v.as_ref().map_or(0, |v| size(k, v));
    }
    if total > MAX_NAMESPACE_BYTES {
        return Err(NamespaceError::Full);
    }
    Ok(changes)
}

/// Apply planned changes.
pub fn apply(ns: &mut Namespace, changes: &Changes) {
    for (k, v) in changes {
        match v {
            Some(v) => {
                ns.insert(k.clone(), v.clone());
            }
            None => {
                ns.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_as_vmware_namespace_cmd_sends_it() {
        let r = parse_get(b"com.example\0ready\0").unwrap();
        assert_eq!(r.namespace, "com.example");
        assert_eq!(r.keys, ["ready"]);
        let r = parse_get(b"ns\0a\0b\0").unwrap();
        assert_eq!(r.keys, ["a", "b"]);
        assert!(parse_get(b"ns\0").is_err());
        assert!(parse_get(b"ns\0a").is_err());
    }

    #[test]
    fn set_delete_and_service_discovery_footer() {
        let r = parse_set(b"ns\x001\x000\0key\0value\0\0").unwrap();
        assert_eq!(r.ops.len(), 1);
        assert_eq!((r.ops[0].key, r.ops[0].value), ("key", &b"value"[..]));
        let r = parse_set(b"ns\x002\x000\0a\0\0\x000\0b\0\0\0\0").unwrap();
        assert_eq!(r.ops.len(), 2);
        assert!(r.ops.iter().all(|o| o.value.is_empty()));
        for bad in [
            &b"ns\x001\x002\0k\0v\0\0"[..],
            b"ns\x000\0",
            b"ns\x00x\0",
            b"ns\x002\x000\0k\0v\0\0",
            b"ns\x001\x000\0k\0v\0\0junk",
            b"ns\x001\x000\0\0v\0\0",
        ] {
            assert!(parse_set(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn conditional_sets_are_all_or_nothing() {
        let mut ns = Namespace::new();
        let req = parse_set(b"n\x001\x000\0k\0v1\0\0").unwrap();
        let c = plan(Some(&ns), &req).unwrap();
        apply(&mut ns, &c);
        let req = parse_set(b"n\x002\x000\0j\0x\0\x001\0k\0v2\0wrong\0").unwrap();
        assert_eq!(plan(Some(&ns), &req), Err(NamespaceError::Mismatch));
        let req = parse_set(b"n\x001\x001\0k\0v2\0v1\0").unwrap();
        let c = plan(Some(&ns), &req).unwrap();
        apply(&mut ns, &c);
        let g = parse_get(b"n\0k\0j\0").unwrap();
        assert_eq!(get(Some(&ns), &g).unwrap(), b"v2\0\0");
        assert_eq!(get(None, &g), Err(NamespaceError::NotFound));
        let req = parse_set(b"n\x001\x000\0k\0\0\0").unwrap();
        let c = plan(Some(&ns), &req).unwrap();
        apply(&mut ns, &c);
        assert!(ns.is_empty());
    }
}
