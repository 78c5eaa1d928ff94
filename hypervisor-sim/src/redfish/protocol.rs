//! The DSP0266 protocol rules applied to every request and response of the
//! service, in one place rather than per route:
//!
//! * [`check_request`]: an `OData-Version` other than 4.0 is refused with
//!   412 Precondition Failed (the service speaks OData 4.0 only).
//! * [`allowed`]: the exact methods each URI supports; anything else gets
//!   405 with an `Allow` header listing them (the router asks
//!   [`permits`] before dispatching).
//! * [`finish`]: every response gets `Allow` (successes and 405s); a GET or
//!   HEAD of a resource gets `Link: <its JSON Schema>; rel=describedby` and
//!   answers 304 when `If-None-Match` names its current ETag.
//! * [`strip_annotations`]: PATCH ignores `@odata.*` annotations; a body of
//!   nothing else is a NoOperation.

use serde_json::{Map, Value};

use super::error::RedfishError;
use crate::http::{Request, Response};

/// Where DMTF publishes the JSON Schemas `Link: rel=describedby` names.
pub const SCHEMA_BASE: &str = "https://redfish.dmtf.org/schemas/v1";

/// The only OData version the service speaks.
pub const ODATA_VERSION: &str = "4.0";

/// Refuse requests the service cannot honour whatever their target:
/// `OData-Version` other than 4.0 (DSP0266: 412 for unsupported versions).
pub fn check_request(req: &Request) -> Result<(), RedfishError> {
    if let Some(v) = req.header("OData-Version") {
        if v.trim() != ODATA_VERSION {
            return Err(
                RedfishError::new(412, "PreconditionFailed", &[]).explain(format!(
                    "This service supports OData-Version {ODATA_VERSION} only, not {:?}.",
                    v.trim()
                )),
            );
        }
    }
    Ok(())
}

/// The methods `path` (no query, no trailing slash) supports, as the `Allow`
/// header lists them.
pub fn allowed(path: &str) -> &'static str {
    let segs: Vec<&str> = path.split('/').collect();
    match segs.as_slice() {
        ["", "redfish", "v1", "SessionService", "Sessions"]
        | ["", "redfish", "v1", "AccountService", "Accounts"] => "GET, HEAD, POST",
        // POST to a collection's Members creates like POST to the collection.
        ["", "redfish", "v1", "SessionService", "Sessions", "Members"]
        | ["", "redfish", "v1", "AccountService", "Accounts", "Members"] => "POST",
        ["", "redfish", "v1", "SessionService", "Sessions", _] => "GET, HEAD, DELETE",
        ["", "redfish", "v1", "AccountService", "Accounts", _] => "GET, HEAD, PATCH, DELETE",
        ["", "redfish", "v1", "Systems", _]
        | ["", "redfish", "v1", "SessionService"]
        | ["", "redfish", "v1", "Managers", _, "VirtualMedia", _]
        | ["", "redfish", "v1", "Systems", _, "VirtualMedia", _] => "GET, HEAD, PATCH",
        ["", "redfish", "v1", .., "Actions", _] => "POST",
        _ => "GET, HEAD",
    }
}

/// Whether `allow` (from [`allowed`]) lists `method`.
pub fn permits(allow: &str, method: &str) -> bool {
    allow.split(", ").any(|m| m == method)
}

/// The 405 for `method` on `path`.
pub fn not_allowed(method: &str, path: &str) -> RedfishError {
    RedfishError::new(405, "GeneralError", &[]).explain(format!(
        "{method} is not supported on {path}; it allows {}.",
        allowed(path)
    ))
}

/// The JSON Schema URI of an `@odata.type` (`#ComputerSystem.v1_13_0.ComputerSystem`
/// → `.../ComputerSystem.v1_13_0.json`; unversioned collections →
/// `.../ComputerSystemCollection.json`).
pub fn schema_uri(odata_type: &str) -> Option<String> {
    let t = odata_type.strip_prefix('#')?;
    let (namespace, _) = t.rsplit_once('.')?;
    if namespace.is_empty()
        || !namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
    {
        return None;
    }
    Some(format!("{SCHEMA_BASE}/{namespace}.json"))
}

/// The `Link` header value naming a resource's JSON Schema.
pub fn describedby(schema_uri: &str) -> String {
    format!("<{schema_uri}>; rel=describedby")
}

/// Add what every response carries: `Allow`, and for a successful GET or
/// HEAD of a resource its `Link: rel=describedby`; answer 304 to an
/// `If-None-Match` naming the current ETag.
pub fn finish(req: &Request, path: &str, mut resp: Response) -> Response {
    let has = |r: &Response, k: &str| r.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k));
    if (resp.status == 405 || (200..300).contains(&resp.status)) && !has(&resp, "Allow") {
        resp.headers.push(("Allow".into(), allowed(path).into()));
    }
    let read = req.method == "GET" || req.method == "HEAD";
    if !(read && resp.status == 200) {
        return resp;
    }
    // Resources get their Link where they are rendered; this covers any
    // other JSON document with an @odata.type.
    if !has(&resp, "Link") {
        let ty = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v["@odata.type"].as_str().and_then(schema_uri));
        if let Some(uri) = ty {
            resp.headers.push(("Link".into(), describedby(&uri)));
        }
    }
    if let (Some(want), Some(tag)) = (
        req.header("If-None-Match"),
        resp.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("ETag"))
            .map(|(_, v)| v.clone()),
    ) {
        let strip = |s: &str| s.trim().trim_start_matches("W/").to_string();
        if want.trim() == "*" || want.split(',').any(|w| strip(w) == strip(&tag)) {
            resp.status = 304;
            resp.body = Vec::new();
            resp.headers
                .retain(|(k, _)| !k.eq_ignore_ascii_case("Content-Type"));
        }
    }
    resp
}

/// A PATCH body without its OData annotations (`@odata.id`, `@odata.type`,
/// `@odata.etag`, ...), which DSP0266 says the service ignores; `None` when
/// the body had properties and nothing but annotations (a NoOperation).
pub fn strip_annotations(body: Map<String, Value>) -> Option<Map<String, Value>> {
    if body.is_empty() {
        return Some(body);
    }
    let rest: Map<String, Value> = body
        .into_iter()
        .filter(|(k, _)| !k.starts_with("@odata."))
        .collect();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_uris_follow_the_type() {
        assert_eq!(
            schema_uri("#ComputerSystem.v1_13_0.ComputerSystem").as_deref(),
            Some("https://redfish.dmtf.org/schemas/v1/ComputerSystem.v1_13_0.json")
        );
        assert_eq!(
            schema_uri("#ChassisCollection.ChassisCollection").as_deref(),
            Some("https://redfish.dmtf.org/schemas/v1/ChassisCollection.json")
        );
        assert_eq!(schema_uri("ComputerSystem"), None);
        assert_eq!(schema_uri("#a/b.c"), None);
    }

    #[test]
    fn allow_lists_are_exact() {
        assert_eq!(allowed("/redfish/v1"), "GET, HEAD");
        assert_eq!(allowed("/redfish/v1/Systems/vm0"), "GET, HEAD, PATCH");
        assert_eq!(
            allowed("/redfish/v1/Systems/vm0/Actions/ComputerSystem.Reset"),
            "POST"
        );
        assert_eq!(
            allowed("/redfish/v1/SessionService/Sessions/Members"),
            "POST"
        );
        assert!(permits("GET, HEAD, PATCH", "PATCH"));
        assert!(!permits("GET, HEAD, PATCH", "PUT"));
    }

    #[test]
    fn annotations_only_is_no_operation() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(strip_annotations(m(serde_json::json!({"@odata.id": "/x"}))).is_none());
        let kept = strip_annotations(m(serde_json::json!({"@odata.etag": "x", "A": 1}))).unwrap();
        assert_eq!(kept.len(), 1);
        assert!(strip_annotations(Map::new()).unwrap().is_empty());
    }
}
