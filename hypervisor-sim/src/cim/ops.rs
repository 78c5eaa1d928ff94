//! The operations (DSP0200 1.4 section 5.3 intrinsic methods, and the
//! extrinsic RequestStateChange), each producing the inside of an
//! IMETHODRESPONSE or METHODRESPONSE.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::encode::{self, Opts};
use super::provider::Snapshot;
use super::request::{code, CimError, Param};
use super::schema::{ClassDef, Schema, NAMESPACES};
use super::value::{CimType, Instance, ObjectPath, Value};
use super::wql;
use super::Service;
use crate::http::Principal;
use crate::vm::PowerAction;

type R<T> = Result<T, CimError>;

fn err(code: u32, m: impl Into<String>) -> CimError {
    CimError::new(code, m)
}

/// The namespace bit of a namespace name.
pub fn ns_bit(ns: &str) -> R<u8> {
    NAMESPACES
        .iter()
        .find(|(n, _)| super::value::ns_eq(n, ns))
        .map(|(_, b)| *b)
        .ok_or_else(|| err(code::INVALID_NAMESPACE, format!("no namespace {ns:?}")))
}

/// The served spelling of a namespace name (`root/cimv2` when unknown).
pub fn canonical_ns(ns: &str) -> &'static str {
    NAMESPACES
        .iter()
        .find(|(n, _)| super::value::ns_eq(n, ns))
        .map_or("root/cimv2", |(n, _)| n)
}

/// Parameters of one call.
struct Params<'a> {
    list: &'a [(String, Param)],
}

impl<'a> Params<'a> {
    fn check(&self, allowed: &[&str]) -> R<()> {
        for (n, _) in self.list {
            if !allowed.iter().any(|a| a.eq_ignore_ascii_case(n)) {
                return Err(err(
                    code::INVALID_PARAMETER,
                    format!("unknown parameter {n}"),
                ));
            }
        }
        Ok(())
    }
    fn get(&self, name: &str) -> Option<&'a Param> {
        self.list
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, p)| p)
    }
    fn bool(&self, name: &str, default: bool) -> R<bool> {
        match self.get(name) {
            None | Some(Param::Null) => Ok(default),
            Some(Param::Value(v)) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(err(
                    code::INVALID_PARAMETER,
                    format!("{name} must be TRUE or FALSE"),
                )),
            },
            Some(_) => Err(err(
                code::INVALID_PARAMETER,
                format!("{name} must be a boolean"),
            )),
        }
    }
    fn string(&self, name: &str) -> R<Option<String>> {
        match self.get(name) {
            None | Some(Param::Null) => Ok(None),
            Some(Param::Value(v)) => Ok(Some(v.clone())),
            Some(_) => Err(err(
                code::INVALID_PARAMETER,
                format!("{name} must be a string"),
            )),
        }
    }
    fn uint(&self, name: &str) -> R<Option<u64>> {
        match self.string(name)? {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                err(
                    code::INVALID_PARAMETER,
                    format!("{name} must be an unsigned integer"),
                )
            }),
        }
    }
    fn class_name(&self, name: &str) -> R<Option<String>> {
        match self.get(name) {
            None | Some(Param::Null) => Ok(None),
            Some(Param::ClassName(c)) => Ok(Some(c.clone())),
            Some(Param::Value(v)) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            Some(_) => Err(err(
                code::INVALID_PARAMETER,
                format!("{name} must be a class name"),
            )),
        }
    }
    fn object_name(&self, name: &str) -> R<ObjectPath> {
        match self.get(name) {
            Some(Param::InstanceName(p)) | Some(Param::Ref(p)) => Ok(p.clone()),
            Some(Param::ClassName(c)) => Ok(ObjectPath::new(c, Vec::new())),
            None | Some(Param::Null) => {
                Err(err(code::INVALID_PARAMETER, format!("{name} is required")))
            }
            Some(_) => Err(err(
                code::INVALID_PARAMETER,
                format!("{name} must be an instance name"),
            )),
        }
    }
    fn property_list(&self) -> R<Option<Vec<String>>> {
        match self.get("PropertyList") {
            None | Some(Param::Null) => Ok(None),
            Some(Param::Array(v)) => Ok(Some(v.iter().flatten().cloned().collect())),
            Some(Param::Value(v)) => Ok(Some(vec![v.clone()])),
            Some(_) => Err(err(
                code::INVALID_PARAMETER,
                "PropertyList must be a string array",
            )),
        }
    }
}

/// Per-request context.
pub struct Ctx<'a> {
    /// The service.
    pub svc: &'a Service,
    /// Who asks.
    pub principal: Option<&'a Principal>,
    /// The host name to put in full paths.
    pub host: &'a str,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("host", &self.host).finish()
    }
}

impl Ctx<'_> {
    fn schema(&self) -> &Schema {
        &self.svc.schema
    }
    fn snapshot(&self) -> Snapshot<'_> {
        self.svc.snapshot()
    }
    fn may_write(&self) -> R<()> {
        match self.principal {
            Some(p) if p.role.eq_ignore_ascii_case("ReadOnly") => Err(err(
                code::ACCESS_DENIED,
                format!("user {} has the ReadOnly role", p.name),
            )),
            _ => Ok(()),
        }
    }
    fn class(&self, ns: u8, name: &str, code_: u32) -> R<&ClassDef> {
        self.schema()
            .get_in(ns, name)
            .ok_or_else(|| err(code_, format!("no class {name:?} in this namespace")))
    }
}

fn opts(p: &Params, local_default: bool, qual_default: bool) -> R<Opts> {
    Ok(Opts {
        local_only: p.bool("LocalOnly", local_default)?,
        include_qualifiers: p.bool("IncludeQualifiers", qual_default)?,
        include_class_origin: p.bool("IncludeClassOrigin", false)?,
        property_list: p.property_list()?,
    })
}

fn ireturn(body: &str) -> String {
    format!("<IRETURNVALUE>{body}</IRETURNVALUE>")
}

/// EnumerateInstances: the IRETURNVALUE, written into `out` from the
/// per-VM rendering cache ([`super::render`]).
fn enumerate_instances(ctx: &Ctx, bit: u8, ns: &str, p: &Params, out: &mut String) -> R<()> {
    p.check(&[
        "ClassName",
        "LocalOnly",
        "DeepInheritance",
        "IncludeQualifiers",
        "IncludeClassOrigin",
        "PropertyList",
    ])?;
    let cn = p
        .class_name("ClassName")?
        .ok_or_else(|| err(code::INVALID_PARAMETER, "ClassName is required"))?;
    let c = ctx.class(bit, &cn, code::INVALID_CLASS)?;
    let mut o = opts(p, false, false)?;
    o.local_only = false;
    let restrict = (!p.bool("DeepInheritance", true)?).then_some(c);
    out.push_str("<IRETURNVALUE>");
    super::render::enumerate_instances(ctx.svc, bit, ns, c, &o, restrict, out);
    out.push_str("</IRETURNVALUE>");
    Ok(())
}

/// Run an intrinsic method, appending the inside of IMETHODRESPONSE to
/// `out` (EnumerateInstances writes there directly; on an error, what was
/// appended is to be discarded).
pub fn intrinsic_into(
    ctx: &Ctx,
    name: &str,
    ns: &str,
    list: &[(String, Param)],
    out: &mut String,
) -> R<()> {
    if name == "EnumerateInstances" {
        let bit = ns_bit(ns)?;
        return enumerate_instances(ctx, bit, canonical_ns(ns), &Params { list }, out);
    }
    out.push_str(&intrinsic(ctx, name, ns, list)?);
    Ok(())
}

/// Run an intrinsic method; the result is the inside of IMETHODRESPONSE.
pub fn intrinsic(ctx: &Ctx, name: &str, ns: &str, list: &[(String, Param)]) -> R<String> {
    let bit = ns_bit(ns)?;
    let ns = canonical_ns(ns);
    let p = Params { list };
    let schema = ctx.schema();
    match name {
        "GetClass" => {
            p.check(&[
                "ClassName",
                "LocalOnly",
                "IncludeQualifiers",
                "IncludeClassOrigin",
                "PropertyList",
            ])?;
            let cn = p
                .class_name("ClassName")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "ClassName is required"))?;
            let c = ctx.class(bit, &cn, code::NOT_FOUND)?;
            let mut out = String::new();
            encode::class(&mut out, schema, c, &opts(&p, true, true)?);
            Ok(ireturn(&out))
        }
        "EnumerateClasses" | "EnumerateClassNames" => {
            let names = name == "EnumerateClassNames";
            if names {
                p.check(&["ClassName", "DeepInheritance"])?;
            } else {
                p.check(&[
                    "ClassName",
                    "DeepInheritance",
                    "LocalOnly",
                    "IncludeQualifiers",
                    "IncludeClassOrigin",
                ])?;
            }
            let base = p.class_name("ClassName")?;
            if let Some(b) = &base {
                ctx.class(bit, b, code::INVALID_CLASS)?;
            }
            let deep = p.bool("DeepInheritance", false)?;
            let o = if names {
                Opts::default()
            } else {
                opts(&p, true, true)?
            };
            let mut out = String::new();
            for c in schema.classes(bit) {
                let wanted = match (&base, deep) {
                    (None, true) => true,
                    (None, false) => c.superclass.is_none(),
                    (Some(b), false) => c.superclass.is_some_and(|s| s.eq_ignore_ascii_case(b)),
                    (Some(b), true) => !c.name.eq_ignore_ascii_case(b) && schema.is_a(c.name, b),
                };
                if !wanted {
                    continue;
                }
                if names {
                    let _ = write!(out, "<CLASSNAME NAME=\"{}\"/>", c.name);
                } else {
                    encode::class(&mut out, schema, c, &o);
                }
            }
            Ok(ireturn(&out))
        }
        "GetInstance" => {
            p.check(&[
                "InstanceName",
                "LocalOnly",
                "IncludeQualifiers",
                "IncludeClassOrigin",
                "PropertyList",
            ])?;
            let path = p.object_name("InstanceName")?;
            ctx.class(bit, &path.class, code::INVALID_CLASS)?;
            let snap = ctx.snapshot();
            let inst = find(&snap, bit, ns, &path)?;
            let mut o = opts(&p, false, false)?;
            o.local_only = false;
            let mut out = String::new();
            encode::instance(&mut out, schema, &inst, &o, None);
            Ok(ireturn(&out))
        }
        "EnumerateInstances" => {
            let mut out = String::new();
            enumerate_instances(ctx, bit, ns, &p, &mut out)?;
            Ok(out)
        }
        "EnumerateInstanceNames" => {
            p.check(&["ClassName"])?;
            let cn = p
                .class_name("ClassName")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "ClassName is required"))?;
            let c = ctx.class(bit, &cn, code::INVALID_CLASS)?;
            let snap = ctx.snapshot();
            let insts = snap.instances(bit, c);
            let mut out = String::new();
            for i in &insts {
                encode::instance_name(&mut out, schema, &snap.path(i, ns));
            }
            Ok(ireturn(&out))
        }
        "Associators" | "AssociatorNames" | "References" | "ReferenceNames" => {
            let refs = name.starts_with("Reference");
            let names = name.ends_with("Names");
            let mut allowed = vec!["ObjectName", "ResultClass", "Role"];
            if !refs {
                allowed.extend(["AssocClass", "ResultRole"]);
            }
            if !names {
                allowed.extend(["IncludeQualifiers", "IncludeClassOrigin", "PropertyList"]);
            }
            p.check(&allowed)?;
            let f = AssocFilter::from_params(&p, refs)?;
            let obj = p.object_name("ObjectName")?;
            ctx.class(bit, &obj.class, code::INVALID_PARAMETER)?;
            if obj.keys.is_empty() {
                return Err(err(
                    code::NOT_SUPPORTED,
                    "class-level association traversal is not supported; give an instance name",
                ));
            }
            let snap = ctx.snapshot();
            let objs = associated(&snap, bit, ns, &obj, &f, refs)?;
            let o = if names {
                Opts::default()
            } else {
                opts(&p, false, false)?
            };
            let mut out = String::new();
            for (path, inst) in &objs {
                encode_object(&mut out, schema, path, inst, names, &o, ctx.host, ns);
            }
            Ok(ireturn(&out))
        }
        "ExecQuery" => {
            p.check(&["QueryLanguage", "Query"])?;
            let (paths, insts) = query(ctx, bit, ns, &p, "QueryLanguage", "Query")?;
            let mut out = String::new();
            for (path, inst) in paths.iter().zip(&insts) {
                encode_object(
                    &mut out,
                    schema,
                    path,
                    inst,
                    false,
                    &Opts::default(),
                    ctx.host,
                    ns,
                );
            }
            Ok(ireturn(&out))
        }
        "CreateInstance" => {
            p.check(&["NewInstance"])?;
            ctx.may_write()?;
            let Some(Param::Instance { class, props }) = p.get("NewInstance") else {
                return Err(err(
                    code::INVALID_PARAMETER,
                    "NewInstance must be an instance",
                ));
            };
            let c = ctx.class(bit, class, code::INVALID_CLASS)?;
            let inst = typed_instance(c, props)?;
            let snap = ctx.snapshot();
            let path = ctx.svc.indications.create(&snap, bit, inst)?;
            let mut out = String::new();
            encode::instance_name(&mut out, schema, &path);
            Ok(ireturn(&out))
        }
        "DeleteInstance" => {
            p.check(&["InstanceName"])?;
            ctx.may_write()?;
            let path = p.object_name("InstanceName")?;
            ctx.class(bit, &path.class, code::INVALID_CLASS)?;
            let snap = ctx.snapshot();
            find(&snap, bit, ns, &path)?;
            ctx.svc.indications.delete(&snap, &path)?;
            Ok(String::new())
        }
        "ModifyInstance" => Err(err(
            code::NOT_SUPPORTED,
            "instances are views of the VM inventory; use RequestStateChange to change power state",
        )),
        "OpenEnumerateInstances" | "OpenEnumerateInstancePaths" => {
            let paths_only = name.ends_with("Paths");
            let mut allowed = vec![
                "ClassName",
                "FilterQueryLanguage",
                "FilterQuery",
                "OperationTimeout",
                "ContinueOnError",
                "MaxObjectCount",
            ];
            if !paths_only {
                allowed.extend([
                    "DeepInheritance",
                    "IncludeClassOrigin",
                    "PropertyList",
                    "LocalOnly",
                    "IncludeQualifiers",
                ]);
            }
            p.check(&allowed)?;
            let open = OpenParams::from(&p)?;
            let cn = p
                .class_name("ClassName")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "ClassName is required"))?;
            let c = ctx.class(bit, &cn, code::INVALID_CLASS)?;
            let snap = ctx.snapshot();
            let mut o = if paths_only {
                Opts::default()
            } else {
                opts(&p, false, false)?
            };
            o.local_only = false;
            let restrict = (!paths_only && !p.bool("DeepInheritance", true)?).then_some(c);
            let items = snap
                .instances(bit, c)
                .into_iter()
                .map(|i| {
                    let mut s = String::new();
                    let path = snap.path(&i, ns);
                    if paths_only {
                        encode::instance_path(&mut s, schema, &path, ctx.host, ns);
                    } else {
                        s.push_str("<VALUE.INSTANCEWITHPATH>");
                        encode::instance_path(&mut s, schema, &path, ctx.host, ns);
                        encode::instance(&mut s, schema, &i, &o, restrict);
                        s.push_str("</VALUE.INSTANCEWITHPATH>");
                    }
                    s
                })
                .collect();
            ctx.svc.contexts.open(ns, paths_only, items, &open)
        }
        "OpenAssociatorInstances"
        | "OpenAssociatorInstancePaths"
        | "OpenReferenceInstances"
        | "OpenReferenceInstancePaths" => {
            let refs = name.starts_with("OpenReference");
            let paths_only = name.ends_with("Paths");
            let mut allowed = vec![
                "InstanceName",
                "ResultClass",
                "Role",
                "FilterQueryLanguage",
                "FilterQuery",
                "OperationTimeout",
                "ContinueOnError",
                "MaxObjectCount",
            ];
            if !refs {
                allowed.extend(["AssocClass", "ResultRole"]);
            }
            if !paths_only {
                allowed.extend(["IncludeClassOrigin", "PropertyList"]);
            }
            p.check(&allowed)?;
            let open = OpenParams::from(&p)?;
            let f = AssocFilter::from_params(&p, refs)?;
            let obj = p.object_name("InstanceName")?;
            ctx.class(bit, &obj.class, code::INVALID_PARAMETER)?;
            let snap = ctx.snapshot();
            let objs = associated(&snap, bit, ns, &obj, &f, refs)?;
            let o = if paths_only {
                Opts::default()
            } else {
                opts(&p, false, false)?
            };
            let items = objs
                .iter()
                .map(|(path, inst)| {
                    let mut s = String::new();
                    if paths_only {
                        encode::instance_path(&mut s, schema, path, ctx.host, ns);
                    } else {
                        s.push_str("<VALUE.INSTANCEWITHPATH>");
                        encode::instance_path(&mut s, schema, path, ctx.host, ns);
                        encode::instance(&mut s, schema, inst, &o, None);
                        s.push_str("</VALUE.INSTANCEWITHPATH>");
                    }
                    s
                })
                .collect();
            ctx.svc.contexts.open(ns, paths_only, items, &open)
        }
        "PullInstancesWithPath" | "PullInstancePaths" => {
            p.check(&["EnumerationContext", "MaxObjectCount"])?;
            let id = p
                .string("EnumerationContext")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "EnumerationContext is required"))?;
            let max = p
                .uint("MaxObjectCount")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "MaxObjectCount is required"))?;
            ctx.svc
                .contexts
                .pull(&id, ns, name == "PullInstancePaths", max)
        }
        "CloseEnumeration" => {
            p.check(&["EnumerationContext"])?;
            let id = p
                .string("EnumerationContext")?
                .ok_or_else(|| err(code::INVALID_PARAMETER, "EnumerationContext is required"))?;
            ctx.svc.contexts.close(&id, ns)?;
            Ok(String::new())
        }
        "GetQualifier"
        | "SetQualifier"
        | "DeleteQualifier"
        | "EnumerateQualifiers"
        | "CreateClass"
        | "ModifyClass"
        | "DeleteClass"
        | "GetProperty"
        | "SetProperty"
        | "EnumerationCount"
        | "OpenQueryInstances"
        | "PullInstances" => Err(err(
            code::NOT_SUPPORTED,
            format!("{name} is not supported by this server"),
        )),
        other => Err(err(
            code::NOT_SUPPORTED,
            format!("unknown intrinsic method {other:?}"),
        )),
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_object(
    out: &mut String,
    schema: &Schema,
    path: &ObjectPath,
    inst: &Instance,
    names: bool,
    o: &Opts,
    host: &str,
    ns: &str,
) {
    if names {
        out.push_str("<OBJECTPATH>");
        encode::instance_path(out, schema, path, host, ns);
        out.push_str("</OBJECTPATH>");
    } else {
        out.push_str("<VALUE.OBJECTWITHPATH>");
        encode::instance_path(out, schema, path, host, ns);
        encode::instance(out, schema, inst, o, None);
        out.push_str("</VALUE.OBJECTWITHPATH>");
    }
}

/// Find one instance by path.
pub fn find(snap: &Snapshot, bit: u8, ns: &str, path: &ObjectPath) -> R<Instance> {
    let c = snap
        .schema
        .get_in(bit, &path.class)
        .ok_or_else(|| err(code::INVALID_CLASS, format!("no class {:?}", path.class)))?;
    let mut want = path.clone();
    want.namespace = None;
    snap.instances(bit, c)
        .into_iter()
        .find(|i| {
            let mut p = snap.path(i, ns);
            p.namespace = None;
            p.same_instance(&want)
        })
        .ok_or_else(|| err(code::NOT_FOUND, format!("no instance {path}")))
}

/// The filters of an association traversal (DSP0200 Associators and
/// References; DSP0227 association filter).
#[derive(Debug, Clone, Default)]
pub struct AssocFilter {
    /// Only associations of this class (Associators).
    pub assoc_class: Option<String>,
    /// Only results of this class (for References: association class).
    pub result_class: Option<String>,
    /// The role of the source object in the association.
    pub role: Option<String>,
    /// The role of the result object (Associators).
    pub result_role: Option<String>,
}

impl AssocFilter {
    fn from_params(p: &Params, refs: bool) -> R<AssocFilter> {
        Ok(AssocFilter {
            assoc_class: if refs {
                None
            } else {
                p.class_name("AssocClass")?
            },
            result_class: p.class_name("ResultClass")?,
            role: p.string("Role")?,
            result_role: if refs { None } else { p.string("ResultRole")? },
        })
    }
}

/// Associated objects (or, for references, the association instances) of
/// `obj`, with their full paths.
pub fn associated(
    snap: &Snapshot,
    bit: u8,
    ns: &str,
    obj: &ObjectPath,
    f: &AssocFilter,
    refs: bool,
) -> R<Vec<(ObjectPath, Instance)>> {
    let schema = snap.schema;
    let mut target = obj.clone();
    if target.namespace.is_none() {
        target.namespace = Some(ns.to_string());
    }
    let mut out: Vec<(ObjectPath, Instance)> = Vec::new();
    // For references ResultClass filters the association class.
    let assoc_filter = if refs {
        f.result_class.as_deref()
    } else {
        f.assoc_class.as_deref()
    };
    for root in schema
        .classes(bit)
        .filter(|c| c.is_assoc && c.superclass.is_none())
    {
        for a in snap.instances(bit, root) {
            if assoc_filter.is_some_and(|ac| !schema.is_a(&a.class, ac)) {
                continue;
            }
            let Some(def) = schema.get(&a.class) else {
                continue;
            };
            let refprops: Vec<(&str, &ObjectPath)> = def
                .properties
                .iter()
                .filter_map(|p| match a.get(p.name) {
                    Value::Ref(r) if p.ref_class.is_some() => Some((p.name, &**r)),
                    _ => None,
                })
                .collect();
            let hit = refprops.iter().any(|(name, r)| {
                f.role
                    .as_deref()
                    .is_none_or(|role| role.eq_ignore_ascii_case(name))
                    && r.same_instance(&target)
            });
            if !hit {
                continue;
            }
            if refs {
                out.push((snap.path(&a, ns), a));
                continue;
            }
            for (name, r) in &refprops {
                if r.same_instance(&target) {
                    // The near end; the far ends are the other references.
                    continue;
                }
                if f.result_role
                    .as_deref()
                    .is_some_and(|rr| !rr.eq_ignore_ascii_case(name))
                {
                    continue;
                }
                if f.result_class
                    .as_deref()
                    .is_some_and(|rc| !schema.is_a(&r.class, rc))
                {
                    continue;
                }
                let rns = r.namespace.clone().unwrap_or_else(|| ns.to_string());
                let Ok(rbit) = ns_bit(&rns) else { continue };
                let Ok(inst) = find(snap, rbit, &rns, r) else {
                    continue;
                };
                let path = snap.path(&inst, canonical_ns(&rns));
                if !out.iter().any(|(p, _)| p.same_instance(&path)) {
                    out.push((path, inst));
                }
            }
        }
    }
    Ok(out)
}

/// Run a WQL query: matching instances and their paths.
fn query(
    ctx: &Ctx,
    bit: u8,
    ns: &str,
    p: &Params,
    lang_param: &str,
    query_param: &str,
) -> R<(Vec<ObjectPath>, Vec<Instance>)> {
    let lang = p
        .string(lang_param)?
        .ok_or_else(|| err(code::INVALID_PARAMETER, format!("{lang_param} is required")))?;
    if !lang.eq_ignore_ascii_case("WQL") {
        return Err(err(
            code::QUERY_LANGUAGE_NOT_SUPPORTED,
            format!("query language {lang:?} is not supported; use WQL"),
        ));
    }
    let text = p.string(query_param)?.ok_or_else(|| {
        err(
            code::INVALID_PARAMETER,
            format!("{query_param} is required"),
        )
    })?;
    run_query(ctx, bit, ns, &text)
}

/// Run WQL query `text` in namespace `bit` (named `ns`): the matching
/// instances (projected to the selected properties) and their paths.
pub fn run_query(ctx: &Ctx, bit: u8, ns: &str, text: &str) -> R<(Vec<ObjectPath>, Vec<Instance>)> {
    let q = wql::parse(text).map_err(|e| err(code::INVALID_QUERY, e.to_string()))?;
    let c = ctx.class(bit, &q.class, code::INVALID_QUERY)?;
    if let Some(sel) = &q.select {
        for s in sel {
            if c.property(s).is_none() {
                return Err(err(
                    code::INVALID_QUERY,
                    format!("{} has no property {s}", c.name),
                ));
            }
        }
    }
    let snap = ctx.snapshot();
    let mut paths = Vec::new();
    let mut insts = Vec::new();
    for i in snap.instances(bit, c) {
        if q.cond
            .as_ref()
            .is_some_and(|e| !wql::eval(e, &i, ctx.schema()))
        {
            continue;
        }
        paths.push(snap.path(&i, ns));
        let i = match &q.select {
            None => i,
            Some(sel) => Instance {
                class: i.class.clone(),
                props: sel.iter().map(|s| (s.clone(), i.get(s).clone())).collect(),
            },
        };
        insts.push(i);
    }
    // Projected instances show only the selected properties.
    if let Some(sel) = &q.select {
        for i in insts.iter_mut() {
            i.props
                .retain(|(k, _)| sel.iter().any(|s| s.eq_ignore_ascii_case(k)));
        }
    }
    Ok((paths, insts))
}

/// Convert the properties of a request instance to typed values.
fn typed_instance(c: &ClassDef, props: &[super::request::RawProperty]) -> R<Instance> {
    let mut inst = Instance::new(c.name);
    for rp in props {
        let def = c.property(&rp.name).ok_or_else(|| {
            err(
                code::NO_SUCH_PROPERTY,
                format!("{} has no property {}", c.name, rp.name),
            )
        })?;
        let bad = || err(code::TYPE_MISMATCH, format!("bad value for {}", def.name));
        let v = match (&rp.value, def.array, def.ty) {
            (Param::Null, _, _) => Value::Null,
            (Param::Ref(r), false, CimType::Reference) => Value::Ref(Box::new(r.clone())),
            (Param::Value(t), false, ty) if ty != CimType::Reference => {
                Value::parse(ty, t).ok_or_else(bad)?
            }
            (Param::Array(items), true, ty) => Value::Array(
                items
                    .iter()
                    .map(|it| match it {
                        None => Ok(Value::Null),
                        Some(t) => Value::parse(ty, t).ok_or_else(bad),
                    })
                    .collect::<R<_>>()?,
            ),
            _ => return Err(bad()),
        };
        inst.set(def.name, v);
    }
    Ok(inst)
}

/// Pull-operation parameters of an Open call.
#[derive(Debug)]
pub struct OpenParams {
    /// Objects to return now.
    pub max: u64,
    /// Idle time after which the context is dropped.
    pub timeout: Duration,
}

/// Longest OperationTimeout accepted.
pub const MAX_OPERATION_TIMEOUT: u64 = 600;
/// OperationTimeout when the client gives none.
pub const DEFAULT_OPERATION_TIMEOUT: u64 = 60;

impl OpenParams {
    fn from(p: &Params) -> R<OpenParams> {
        if p.string("FilterQueryLanguage")?.is_some() || p.string("FilterQuery")?.is_some() {
            return Err(err(
                code::FILTERED_ENUMERATION_NOT_SUPPORTED,
                "filtered pull enumerations are not supported; use ExecQuery",
            ));
        }
        if p.bool("ContinueOnError", false)? {
            return Err(err(
                code::CONTINUATION_ON_ERROR_NOT_SUPPORTED,
                "ContinueOnError is not supported",
            ));
        }
        let t = p
            .uint("OperationTimeout")?
            .unwrap_or(DEFAULT_OPERATION_TIMEOUT);
        if t > MAX_OPERATION_TIMEOUT {
            return Err(err(
                code::INVALID_OPERATION_TIMEOUT,
                format!("OperationTimeout may be at most {MAX_OPERATION_TIMEOUT} s"),
            ));
        }
        Ok(OpenParams {
            max: p.uint("MaxObjectCount")?.unwrap_or(0),
            timeout: Duration::from_secs(if t == 0 { MAX_OPERATION_TIMEOUT } else { t }),
        })
    }
}

struct EnumContext {
    /// What opened it (protocol, namespace, kind of result): a pull must
    /// match.
    kind: String,
    items: VecDeque<String>,
    timeout: Duration,
    expires: Instant,
}

/// Open enumeration contexts of the pull operations (CIM-XML's and
/// WS-Management's, which share the bound [`MAX_CONTEXTS`]).
#[derive(Default)]
pub struct Contexts {
    map: std::sync::Mutex<std::collections::HashMap<String, EnumContext>>,
    next: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Contexts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Contexts").finish_non_exhaustive()
    }
}

fn cim_xml_kind(ns: &str, paths_only: bool) -> String {
    format!("cim-xml {ns} {paths_only}")
}

/// Most enumeration contexts open at once.
pub const MAX_CONTEXTS: usize = 1024;

fn pull_response(items: &mut VecDeque<String>, max: u64, id: Option<&str>) -> String {
    let mut body = String::from("<IRETURNVALUE>");
    let n = (max.min(usize::MAX as u64) as usize).min(items.len());
    for s in items.drain(..n) {
        body.push_str(&s);
    }
    body.push_str("</IRETURNVALUE>");
    let end = items.is_empty();
    if let (false, Some(id)) = (end, id) {
        let _ = write!(
            body,
            "<PARAMVALUE NAME=\"EnumerationContext\" PARAMTYPE=\"string\"><VALUE>{id}</VALUE></PARAMVALUE>"
        );
    }
    let _ = write!(
        body,
        "<PARAMVALUE NAME=\"EndOfSequence\" PARAMTYPE=\"boolean\"><VALUE>{}</VALUE></PARAMVALUE>",
        if end { "TRUE" } else { "FALSE" }
    );
    body
}

impl Contexts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, EnumContext>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn open(&self, ns: &str, paths_only: bool, items: Vec<String>, p: &OpenParams) -> R<String> {
        let mut items: VecDeque<String> = items.into();
        if items.len() as u64 <= p.max {
            return Ok(pull_response(&mut items, p.max, None));
        }
        let id = self.open_items(&cim_xml_kind(ns, paths_only), VecDeque::new(), p.timeout)?;
        let body = pull_response(&mut items, p.max, Some(&id));
        self.take(&id, &cim_xml_kind(ns, paths_only), |left| *left = items)?;
        Ok(body)
    }

    /// Open a context holding `items` (rendered results), to be pulled with
    /// the same `kind` until empty or idle for `timeout`; returns its id.
    /// Fails with CIM_ERR_SERVER_LIMITS_EXCEEDED when [`MAX_CONTEXTS`] are
    /// open.
    pub fn open_items(&self, kind: &str, items: VecDeque<String>, timeout: Duration) -> R<String> {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, c| c.expires > now);
        if map.len() >= MAX_CONTEXTS {
            return Err(err(
                code::SERVER_LIMITS_EXCEEDED,
                format!("{MAX_CONTEXTS} enumeration contexts are open; close some"),
            ));
        }
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{n:x}-{:08x}", super::random_u32());
        map.insert(
            id.clone(),
            EnumContext {
                kind: kind.to_string(),
                items,
                timeout,
                expires: now + timeout,
            },
        );
        Ok(id)
    }

    /// Let `f` take items from context `id` (opened with `kind`); the
    /// context's idle timer restarts, and it is closed once empty. Returns
    /// whether it is at its end. A context of another kind is closed and
    /// refused (CIM_ERR_INVALID_ENUMERATION_CONTEXT), like an unknown one.
    pub fn take(&self, id: &str, kind: &str, f: impl FnOnce(&mut VecDeque<String>)) -> R<bool> {
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, c| c.expires > now);
        let bad = || {
            err(
                code::INVALID_ENUMERATION_CONTEXT,
                format!("no open enumeration {id:?}"),
            )
        };
        let c = map.get_mut(id).ok_or_else(bad)?;
        if c.kind != kind {
            map.remove(id);
            return Err(err(
                code::INVALID_ENUMERATION_CONTEXT,
                "the pull operation does not match the open operation; the enumeration is closed",
            ));
        }
        c.expires = now + c.timeout;
        f(&mut c.items);
        let end = c.items.is_empty();
        if end {
            map.remove(id);
        }
        Ok(end)
    }

    fn pull(&self, id: &str, ns: &str, paths_only: bool, max: u64) -> R<String> {
        let mut body = String::new();
        self.take(id, &cim_xml_kind(ns, paths_only), |items| {
            body = pull_response(items, max, Some(id));
        })?;
        Ok(body)
    }

    /// Close context `id`.
    pub fn close(&self, id: &str, _ns: &str) -> R<()> {
        self.lock().remove(id).map(|_| ()).ok_or_else(|| {
            err(
                code::INVALID_ENUMERATION_CONTEXT,
                format!("no open enumeration {id:?}"),
            )
        })
    }
}

/// Run an extrinsic method; the result is the inside of METHODRESPONSE.
pub fn method(ctx: &Ctx, name: &str, target: &ObjectPath, list: &[(String, Param)]) -> R<String> {
    let v = method_return(ctx, name, target, list)?;
    Ok(format!(
        "<RETURNVALUE PARAMTYPE=\"uint32\"><VALUE>{v}</VALUE></RETURNVALUE>"
    ))
}

/// Run an extrinsic method (RequestStateChange, the one the classes
/// define): its uint32 return value (DSP1052: 0 done, 1 not supported,
/// 4097 invalid state transition, 4098 timeout parameter not supported,
/// 4099 busy). Shared by CIM-XML and WS-Management.
pub fn method_return(
    ctx: &Ctx,
    name: &str,
    target: &ObjectPath,
    list: &[(String, Param)],
) -> R<u32> {
    let ns = target.namespace.as_deref().unwrap_or("root/cimv2");
    let bit = ns_bit(ns)?;
    let c = ctx.class(bit, &target.class, code::INVALID_CLASS)?;
    let m = c.method(name).ok_or_else(|| {
        err(
            code::METHOD_NOT_FOUND,
            format!("{} has no method {name}", c.name),
        )
    })?;
    if target.keys.is_empty() {
        return Err(err(
            code::INVALID_PARAMETER,
            format!("{} must be invoked on an instance", m.name),
        ));
    }
    let snap = ctx.snapshot();
    let inst = find(&snap, bit, canonical_ns(ns), target)?;
    ctx.may_write()?;
    let p = Params { list };
    p.check(&["RequestedState", "Job", "TimeoutPeriod"])?;
    let ret = |v: u32| v;
    let vm = snap
        .vms
        .iter()
        .find(|v| inst.class == "CIM_ComputerSystem" && inst.get("Name") == &Value::s(&v.uuid));
    let Some(view) = vm else {
        // Only VMs change state; other elements report "Not Supported".
        return Ok(ret(1));
    };
    let state = p
        .uint("RequestedState")?
        .ok_or_else(|| err(code::INVALID_PARAMETER, "RequestedState is required"))?;
    if p.string("TimeoutPeriod")?.is_some() {
        return Ok(ret(4098));
    }
    let Some(vm) = ctx.svc.inventory.get(&view.name) else {
        return Err(err(code::NOT_FOUND, "the VM went away"));
    };
    let action = match state {
        2 => PowerAction::On,
        3 => PowerAction::Off,
        4 => PowerAction::SoftOff,
        10 => PowerAction::SoftReboot,
        11 => PowerAction::Reset,
        0..=12 => return Ok(ret(1)),
        _ => return Ok(ret(5)),
    };
    let who = ctx.principal.map_or("cim", |p| p.name.as_str());
    match vm.power(action, "cim") {
        Ok(()) => {
            log::info!("cim: {who} requested state {state} of {}", view.name);
            Ok(ret(0))
        }
        Err(crate::vm::PowerError::PoweredOff(_)) => Ok(ret(4097)),
        Err(crate::vm::PowerError::InProgress(_)) => Ok(ret(4099)),
        Err(crate::vm::PowerError::NoAgent(_)) => Err(err(
            code::FAILED,
            format!(
                "RequestedState {state} is a graceful request that needs the guest agent, and no guest agent (vm-agent or VMware Tools) runs in {}: nothing was changed. Start the guest agent, or use RequestedState 3 (off) or 11 (reset).",
                view.name
            ),
        )),
    }
}
