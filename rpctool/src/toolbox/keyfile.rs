//! tools.conf: a GLib key file (`[group]`, `key=value`, `#` comments), read
//! and written the way vmware-toolbox-cmd does (GKeyFile): comments, blank
//! lines and the order of everything else survive a change; values are
//! escaped as GKeyFile escapes them (`\s` for a leading space, `\n`, `\t`,
//! `\r`, `\\`).

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// A comment or blank line, kept as it was.
    Other(String),
    /// `[name]`.
    Group(String),
    /// `key=value` (value escaped as in the file).
    Entry { key: String, raw: String },
}

/// A parsed key file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFile {
    lines: Vec<Line>,
}

/// Why a key file does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

impl KeyFile {
    /// Parse key file text.
    pub fn parse(text: &str) -> Result<KeyFile, ParseError> {
        let mut lines = Vec::new();
        let mut in_group = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                lines.push(Line::Other(line.to_string()));
            } else if t.starts_with('[') {
                let name = t
                    .trim_end()
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
                    .ok_or_else(|| ParseError(format!("Invalid group name: {}", t.trim_end())))?;
                in_group = true;
                lines.push(Line::Group(name.to_string()));
            } else if let Some((k, v)) = t.split_once('=') {
                let key = k.trim_end();
                if key.is_empty() {
                    return Err(ParseError(format!(
                        "Key file contains line “{line}” which is not a key-value pair, group, or comment"
                    )));
                }
                if !in_group {
                    return Err(ParseError(
                        "Key file does not start with a group".to_string(),
                    ));
                }
                lines.push(Line::Entry {
                    key: key.to_string(),
                    raw: v.trim_start().to_string(),
                });
            } else {
                return Err(ParseError(format!(
                    "Key file contains line “{line}” which is not a key-value pair, group, or comment (line {})",
                    n + 1
                )));
            }
        }
        Ok(KeyFile { lines })
    }

    /// Load `path`: a missing or empty file is an empty key file, as
    /// VMTools_LoadConfig has it; None when it does not parse or read.
    pub fn load(path: &Path) -> Option<KeyFile> {
        match std::fs::read(path) {
            Ok(b) => KeyFile::parse(std::str::from_utf8(&b).ok()?).ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(KeyFile::default()),
            Err(_) => None,
        }
    }

    /// The file's text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.lines {
            match l {
                Line::Other(t) => out.push_str(t),
                Line::Group(g) => {
                    // Groups are separated by at least one empty line.
                    if !out.is_empty() && !out.ends_with("\n\n") {
                        out.push('\n');
                    }
                    out.push('[');
                    out.push_str(g);
                    out.push(']');
                }
                Line::Entry { key, raw } => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(raw);
                }
            }
            out.push('\n');
        }
        out
    }

    /// Write the file in place.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_text())
    }

    /// Index range of group `g`'s lines (after its header), the last one
    /// if it appears more than once.
    fn group(&self, g: &str) -> Option<(usize, usize)> {
        let start = self
            .lines
            .iter()
            .rposition(|l| matches!(l, Line::Group(n) if n == g))?;
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| matches!(l, Line::Group(_)))
            .map_or(self.lines.len(), |i| start + 1 + i);
        Some((start + 1, end))
    }

    fn find(&self, g: &str, key: &str) -> Option<usize> {
        let (a, b) = self.group(g)?;
        (a..b)
            .rev()
            .find(|&i| matches!(&self.lines[i], Line::Entry { key: k, .. } if k == key))
    }

    /// The value of `key` in group `g`.
    pub fn get(&self, g: &str, key: &str) -> Option<String> {
        match &self.lines[self.find(g, key)?] {
            Line::Entry { raw, .. } => Some(unescape(raw)),
            _ => None,
        }
    }

    /// A boolean as GKeyFile reads one (`true`/`false`, `1`/`0`).
    pub fn get_bool(&self, g: &str, key: &str) -> Option<bool> {
        match self.get(g, key)?.trim_end() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        }
    }

    /// Set `key` in group `g` (the group is added at the end if missing).
    pub fn set(&mut self, g: &str, key: &str, value: &str) {
        let raw = escape(value);
        if let Some(i) = self.find(g, key) {
            self.lines[i] = Line::Entry {
                key: key.to_string(),
                raw,
            };
            return;
        }
        let entry = Line::Entry {
            key: key.to_string(),
            raw,
        };
        match self.group(g) {
            Some((a, b)) => {
                // After the group's last entry, before the comments and
                // blank lines that lead into the next group.
                let at = (a..b)
                    .rev()
                    .find(|&i| matches!(self.lines[i], Line::Entry { .. }))
                    .map_or(a, |i| i + 1);
                self.lines.insert(at, entry);
            }
            None => {
                self.lines.push(Line::Group(g.to_string()));
                self.lines.push(entry);
            }
        }
    }

    /// Remove `key` from group `g` (nothing if absent).
    pub fn remove(&mut self, g: &str, key: &str) {
        if let Some(i) = self.find(g, key) {
            self.lines.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_comments_and_order() {
        let text = "# top\n[logging]\nlog = true\n\n# next\n[guestinfo]\npoll-interval=30\n";
        let mut k = KeyFile::parse(text).unwrap();
        assert_eq!(k.get("logging", "log").as_deref(), Some("true"));
        k.set("logging", "vmsvc.level", "debug");
        k.set("new", "a", " two\nlines");
        k.remove("guestinfo", "poll-interval");
        let out = k.to_text();
        assert_eq!(
            out,
            "# top\n\n[logging]\nlog=true\nvmsvc.level=debug\n\n# next\n\n[guestinfo]\n\n[new]\na=\\stwo\\nlines\n"
        );
        let k2 = KeyFile::parse(&out).unwrap();
        assert_eq!(k2.get("new", "a").as_deref(), Some(" two\nlines"));
        assert_eq!(k2.get("guestinfo", "poll-interval"), None);
    }

    #[test]
    fn bad_files() {
        assert!(KeyFile::parse("key=value\n").is_err());
        assert!(KeyFile::parse("[g]\nnot a pair\n").is_err());
        assert_eq!(KeyFile::parse("").unwrap(), KeyFile::default());
    }
}
