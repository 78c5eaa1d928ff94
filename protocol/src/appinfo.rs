//! `guestinfo.appInfo`: the guest's running applications, as JSON version 1
//! (open-vm-tools' appInfo plugin; the host shows it as the guest variable
//! `appInfo`).
//!
//! ```text
//! {
//! "version":"1",
//! "updateCounter":"3",
//! "publishTime":"2026-12-04T19:32:24.123Z",
//! "applications":[
//! {"a":"sshd","v":""},
//! {"a":"bash","v":""}]}
//! ```
//!
//! Every value is a string. [`document`] writes it with vmtoolsd's exact
//! layout and cap ([`MAX_SIZE`]); [`parse`] reads it back (the host side).
//! An empty value means the guest switched appInfo off.

use std::time::{SystemTime, UNIX_EPOCH};

/// The RPCI key (`info-set guestinfo.appInfo <json>`).
pub const KEY: &str = "guestinfo.appInfo";

/// Largest document a guest sends: applications that would make it longer
/// are left out (vmtoolsd's 62 KiB).
pub const MAX_SIZE: usize = 62 * 1024;

/// The only version there is.
pub const VERSION: &str = "1";

/// One application: its name and version (empty on Linux).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// `a`: the command name.
    pub name: String,
    /// `v`: the version.
    pub version: String,
}

/// A parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppInfo {
    /// `updateCounter`: 1 for the first report since the agent started.
    pub update_counter: u64,
    /// `publishTime`, as the guest wrote it (UTC, ISO 8601 with ms).
    pub publish_time: String,
    /// `applications`, in the guest's order.
    pub applications: Vec<App>,
}

/// Why a document was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppInfoError {
    /// Longer than a guest may send.
    #[error("appInfo document of {0} bytes exceeds {MAX_SIZE}")]
    TooLong(usize),
    /// Not JSON.
    #[error("appInfo is not JSON: {0}")]
    Json(String),
    /// JSON, but not of version 1's shape.
    #[error("appInfo: {0}")]
    Shape(String),
}

/// Escape `s` as the inside of a JSON string: quote, backslash and control
/// characters (as \b \f \n \r \t or \u00XX); everything else as is.
pub fn json_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

/// The document for `apps` (in order), as vmtoolsd lays it out. With
/// `dedup`, an application whose name and version already appeared is left
/// out. Applications that would take it past [`MAX_SIZE`] are left out;
/// the second value says how many were.
pub fn document(
    apps: &[App],
    update_counter: u64,
    publish_time: &str,
    dedup: bool,
) -> (String, usize) {
    const SUFFIX: &str = "]}";
    let mut out = format!(
        "{{\n\"version\":\"{VERSION}\", \n\"updateCounter\":\"{update_counter}\", \n\"publishTime\":\"{publish_time}\", \n\"applications\":["
    );
    let mut seen = std::collections::HashSet::new();
    let mut dropped = 0;
    let mut entry = String::new();
    for (i, app) in apps.iter().enumerate() {
        if dedup && seen.contains(&(app.name.as_str(), app.version.as_str())) {
            continue;
        }
        entry.clear();
        // The comma goes by list position, as in vmtoolsd (the first entry
        // is never a duplicate).
        entry.push_str(if i == 0 { "\n" } else { ",\n" });
        entry.push_str("{\"a\":\"");
        json_escape(&app.name, &mut entry);
        entry.push_str("\",\"v\":\"");
        json_escape(&app.version, &mut entry);
        entry.push_str("\"}");
        // vmtoolsd counts the suffix's terminating NUL too.
        if out.len() + entry.len() + SUFFIX.len() + 1 > MAX_SIZE {
            dropped = apps.len() - i;
            break;
        }
        out.push_str(&entry);
        if dedup {
            seen.insert((app.name.as_str(), app.version.as_str()));
        }
    }
    out.push_str(SUFFIX);
    (out, dropped)
}

/// Read a document a guest sent (the host side). An empty or blank value is
/// `Ok(None)`: the guest switched appInfo off.
pub fn parse(text: &[u8]) -> Result<Option<AppInfo>, AppInfoError> {
    if text.len() > MAX_SIZE {
        return Err(AppInfoError::TooLong(text.len()));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| AppInfoError::Json(e.to_string()))?;
    let shape = |m: &str| AppInfoError::Shape(m.to_string());
    let obj = v.as_object().ok_or_else(|| shape("not an object"))?;
    let field = |k: &str| -> Result<&str, AppInfoError> {
        obj.get(k)
            .and_then(|x| x.as_str())
            .ok_or_else(|| AppInfoError::Shape(format!("{k:?} is missing or not a string")))
    };
    let version = field("version")?;
    if version != VERSION {
        return Err(AppInfoError::Shape(format!(
            "version {version:?} (only \"1\" is known)"
        )));
    }
    let update_counter = field("updateCounter")?
        .parse()
        .map_err(|_| shape("updateCounter is not a number"))?;
    let publish_time = field("publishTime")?.to_string();
    let list = obj
        .get("applications")
        .and_then(|x| x.as_array())
        .ok_or_else(|| shape("\"applications\" is missing or not an array"))?;
    let mut applications = Vec::with_capacity(list.len());
    for a in list {
        let s = |k| a.get(k).and_then(|x: &serde_json::Value| x.as_str());
        match (s("a"), s("v")) {
            (Some(name), Some(version)) => applications.push(App {
                name: name.to_string(),
                version: version.to_string(),
            }),
            _ => return Err(shape("an application without string \"a\" and \"v\"")),
        }
    }
    Ok(Some(AppInfo {
        update_counter,
        publish_time,
        applications,
    }))
}

/// `t` as vmtoolsd writes times: UTC, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn app(name: &str) -> App {
        App {
            name: name.into(),
            version: String::new(),
        }
    }

    #[test]
    fn layout_as_vmtoolsd() {
        let (doc, dropped) = document(
            &[app("sshd"), app("ba\"sh"), app("sshd")],
            3,
            "2026-12-04T19:32:24.123Z",
            true,
        );
        assert_eq!(dropped, 0);
        assert_eq!(
            doc,
            "{\n\"version\":\"1\", \n\"updateCounter\":\"3\", \n\"publishTime\":\"2026-12-04T19:32:24.123Z\", \n\"applications\":[\n{\"a\":\"sshd\",\"v\":\"\"},\n{\"a\":\"ba\\\"sh\",\"v\":\"\"}]}"
        );
        let p = parse(doc.as_bytes()).unwrap().unwrap();
        assert_eq!(p.update_counter, 3);
        assert_eq!(p.applications, [app("sshd"), app("ba\"sh")]);
        let (doc, _) = document(&[app("a"), app("a")], 1, "t", false);
        assert_eq!(
            parse(doc.as_bytes()).unwrap().unwrap().applications.len(),
            2
        );
        let (doc, _) = document(&[], 1, "t", true);
        assert!(doc.ends_with("\"applications\":[]}"));
        assert_eq!(parse(doc.as_bytes()).unwrap().unwrap().applications, []);
    }

    #[test]
    fn capped_at_62_kib() {
        let apps: Vec<App> = (0..5000).map(|i| app(&format!("process-{i:05}"))).collect();
        let (doc, dropped) = document(&apps, 1, "t", true);
        assert!(doc.len() < MAX_SIZE, "{}", doc.len());
        assert!(dropped > 0);
        let p = parse(doc.as_bytes()).unwrap().unwrap();
        assert_eq!(p.applications.len() + dropped, 5000);
    }

    #[test]
    fn bad_documents_are_errors() {
        assert_eq!(parse(b""), Ok(None));
        assert!(matches!(parse(b"{"), Err(AppInfoError::Json(_))));
        assert!(matches!(parse(b"[]"), Err(AppInfoError::Shape(_))));
        assert!(matches!(
            parse(br#"{"version":"2","updateCounter":"1","publishTime":"","applications":[]}"#),
            Err(AppInfoError::Shape(_))
        ));
        assert!(matches!(
            parse(br#"{"version":"1","updateCounter":"x","publishTime":"","applications":[]}"#),
            Err(AppInfoError::Shape(_))
        ));
        assert!(matches!(
            parse(
                br#"{"version":"1","updateCounter":"1","publishTime":"","applications":[{"a":1}]}"#
            ),
            Err(AppInfoError::Shape(_))
        ));
        assert!(matches!(
            parse(&vec![b' '; MAX_SIZE + 1]),
            Err(AppInfoError::TooLong(_))
        ));
    }

    #[test]
    fn times_as_vmtoolsd() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_437_986_042);
        assert_eq!(utc_millis(t), "2026-11-23T12:46:26.042Z");
        assert_eq!(utc_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
