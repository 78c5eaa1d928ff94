//! The docs check: what README.md and docs/ tell a user is held against the
//! code.
//!
//! * every relative link (and `#anchor`) in README.md and docs/*.md resolves;
//!   the README stays a front page (two screens) and links every docs page;
//! * the configuration references cover every key the code accepts: the
//!   `toml reference` block of docs/hvsim-config.md parses as an hvsim
//!   config and holds every key of `hvsim::config::Config`;
//!   packaging/agent.toml, uncommented, parses as an agent config, holds
//!   every key of `agent::config::AgentConfig`, and its `# key = value`
//!   lines are the code's defaults;
//! * the man pages name every subcommand and long option the binaries'
//!   `--help` lists;
//! * every shell block marked `sh run` runs, as written, with the
//!   workspace's binaries first on PATH, in a private mount namespace whose
//!   /tmp is a fresh tmpfs (so `/tmp/hvsim` in an example is its own).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::keys::config_keys;
use e2e_tests::{bin, workspace};

/// A fenced code block: its info string and text, and where it starts.
#[derive(Debug)]
struct Block {
    info: String,
    text: String,
    line: usize,
}

fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut cur: Option<Block> = None;
    for (i, line) in md.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("```") {
            match cur.take() {
                Some(b) => out.push(b),
                None => {
                    cur = Some(Block {
                        info: rest.trim().to_owned(),
                        text: String::new(),
                        line: i + 1,
                    })
                }
            }
        } else if let Some(b) = cur.as_mut() {
            b.text.push_str(line);
            b.text.push('\n');
        }
    }
    out
}

/// README.md and every page under docs/.
fn pages() -> Vec<PathBuf> {
    let ws = workspace();
    let mut v = vec![ws.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(ws.join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    v.extend(docs);
    v
}

/// Markdown text outside code blocks.
fn prose(md: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for line in md.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The `](target)` links of a page's prose.
fn links(md: &str) -> Vec<String> {
    let text = prose(md);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

/// GitHub's anchor for a heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(md: &str) -> BTreeSet<String> {
    prose(md)
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn links_resolve_and_the_readme_is_a_front_page() {
    let ws = workspace();
    let mut bad = Vec::new();
    for page in pages() {
        let md = std::fs::read_to_string(&page).unwrap();
        let dir = page.parent().unwrap();
        for link in links(&md) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                page.clone()
            } else {
                dir.join(path)
            };
            if !target.exists() {
                bad.push(format!("{}: {link}: no such file", page.display()));
                continue;
            }
            if let Some(a) = anchor {
                if target.extension().is_some_and(|e| e == "md") {
                    let text = std::fs::read_to_string(&target).unwrap();
                    if !anchors(&text).contains(a) {
                        bad.push(format!("{}: {link}: no such heading", page.display()));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));

    let readme = std::fs::read_to_string(ws.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 160,
        "README.md has {lines} lines: keep it a front page (about 150) and move detail to docs/"
    );
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|l| l.split('#').next().unwrap().to_owned())
        .collect();
    for page in pages().iter().skip(1) {
        let rel = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(
            linked.contains(&rel),
            "README.md does not link {rel}: every docs page is reachable from the front page"
        );
    }
}

/// Does this dotted key exist in the TOML value (arrays: their first element)?
fn has_key(v: &toml::Value, path: &str) -> bool {
    let mut cur = v;
    for part in path.split('.') {
        if let toml::Value::Array(items) = cur {
            match items.first() {
                Some(first) => cur = first,
                None => return false,
            }
        }
        match cur.get(part) {
            Some(next) => cur = next,
            None => return false,
        }
    }
    true
}

fn reference_block(page: &str) -> Block {
    let path = workspace().join(page);
    let md = std::fs::read_to_string(&path).unwrap();
    let mut refs: Vec<Block> = blocks(&md)
        .into_iter()
        .filter(|b| b.info == "toml reference")
        .collect();
    assert_eq!(refs.len(), 1, "{page} has one ```toml reference block");
    refs.remove(0)
}

#[test]
fn the_hvsim_config_reference_has_every_key() {
    let block = reference_block("docs/hvsim-config.md");
    let origin = workspace().join("docs/hvsim-config.md");
    if let Err(e) = hvsim::config::Config::parse(&block.text, &origin) {
        panic!(
            "docs/hvsim-config.md:{}: the reference does not parse as an hvsim config: {e}",
            block.line
        );
    }
    let doc: toml::Value = toml::from_str(&block.text).unwrap();
    let missing: Vec<String> = config_keys::<hvsim::config::Config>()
        .unwrap()
        .into_iter()
        .filter(|k| !has_key(&doc, k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys hvsim accepts but docs/hvsim-config.md does not document: {missing:?}"
    );
}

/// packaging/agent.toml with its commented-out keys made live: `# key = v`
/// (a default) and, when `examples`, `#key = v` (an example for a key with
/// no default).
fn agent_toml(examples: bool) -> String {
    let text = std::fs::read_to_string(workspace().join("packaging/agent.toml")).unwrap();
    let key_line = |s: &str| {
        let name: String = s
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        !name.is_empty() && s[name.len()..].trim_start().starts_with('=')
    };
    text.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("# ") {
                if key_line(rest) {
                    return rest.to_owned();
                }
            } else if let Some(rest) = l.strip_prefix('#') {
                if examples && key_line(rest) {
                    return rest.to_owned();
                }
            }
            l.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_agent_config_reference_has_every_key_with_its_default() {
    use agent::config::AgentConfig;
    let path = workspace().join("packaging/agent.toml");
    let all = agent_toml(true);
    if let Err(e) = AgentConfig::parse(&all, &path) {
        panic!("packaging/agent.toml, uncommented, is not a valid agent config: {e}");
    }
    let doc: toml::Value = toml::from_str(&all).unwrap();
    let missing: Vec<String> = config_keys::<AgentConfig>()
        .unwrap()
        .into_iter()
        .filter(|k| !has_key(&doc, k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys vm-agent accepts but packaging/agent.toml does not document: {missing:?}"
    );
    let defaults = AgentConfig::parse(&agent_toml(false), &path).unwrap();
    assert_eq!(
        defaults,
        AgentConfig::default(),
        "the `# key = value` lines of packaging/agent.toml are not the defaults of the code"
    );
}

/// The long options and subcommands a `--help` text lists.
fn help_words(help: &str) -> (BTreeSet<String>, Vec<String>) {
    let mut options = BTreeSet::new();
    for word in
        help.split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',' || c == '|')
    {
        if let Some(name) = word.strip_prefix("--") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() && name != "help" && name != "version" {
                options.insert(format!("--{name}"));
            }
        }
    }
    let mut commands = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            match line.strip_prefix("  ") {
                Some(rest) if !rest.starts_with(' ') => {
                    let name = rest.split_whitespace().next().unwrap_or("");
                    if !name.is_empty() && name != "help" {
                        commands.push(name.to_owned());
                    }
                }
                Some(_) => {}
                None => in_commands = false,
            }
        }
    }
    (options, commands)
}

fn help(program: &Path, path: &[String]) -> String {
    let o = Command::new(program)
        .args(path)
        .arg("--help")
        .output()
        .expect("run --help");
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    s
}

/// A man page's text with roff's escaped hyphens made plain.
fn man(page: &str) -> String {
    std::fs::read_to_string(workspace().join("packaging/man").join(page))
        .unwrap()
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "")
}

#[test]
fn man_pages_cover_every_subcommand_and_option() {
    let mut missing = Vec::new();
    // hvsim: walk its subcommands.
    let hvsim = bin("hvsim");
    let page = man("hvsim.1");
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let text = help(&hvsim, &path);
        let (options, commands) = help_words(&text);
        for o in options {
            if !page.contains(&o) {
                missing.push(format!("hvsim.1: `hvsim {} {o}`", path.join(" ")));
            }
        }
        for c in commands {
            let mut sub = path.clone();
            sub.push(c.clone());
            let words = sub.join(" ");
            if !page.contains(&words) && !page.contains(&c) {
                missing.push(format!("hvsim.1: `hvsim {words}`"));
            }
            todo.push(sub);
        }
    }
    for (binary, page) in [("vm-agent", "vm-agent.8"), ("vm-rpctool", "vm-rpctool.1")] {
        let text = help(&bin(binary), &[]);
        let page_text = man(page);
        for o in help_words(&text).0 {
            if !page_text.contains(&o) {
                missing.push(format!("{page}: `{binary} {o}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "in --help but not in the man page (packaging/man/):\n{}",
        missing.join("\n")
    );
}

/// Runs one `sh run` block; the error says what it printed.
fn run_block(page: &Path, block: &Block) -> Result<(), String> {
    let debug_dir = bin("hvsim").parent().unwrap().to_path_buf();
    // The workspace (and so the binaries) may itself live under /tmp, which
    // the example gets a fresh tmpfs of: the binaries are bind-mounted
    // first onto a directory outside /tmp, and PATH points there.
    let bins = tempfile::Builder::new()
        .prefix("hvsim-docs-bin")
        .tempdir_in("/dev/shm")
        .map_err(|e| format!("a mount point in /dev/shm: {e}"))?;
    let path = format!(
        "{}:{}",
        bins.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // A private /tmp (so the example's paths are its own), background jobs
    // killed at the end, and the example's own commands unchanged.
    let script = format!(
        "set -euo pipefail\nmount --bind \"$DOCS_BIN\" \"$DOCS_BIN_AT\"\n\
         mount -t tmpfs tmpfs /tmp\ncd /tmp\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n{}",
        block.text
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .env("PATH", path)
        .env("DOCS_BIN", &debug_dir)
        .env("DOCS_BIN_AT", bins.path())
        .env_remove("HVSIM_CONTROL")
        .env_remove("VM_BACKDOOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("unshare: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = child.wait_with_output().map_err(|e| e.to_string())?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}:{}: the example failed ({}):\n{}\n--- stdout\n{}--- stderr\n{}",
            page.display(),
            block.line,
            o.status,
            block.text,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ))
    }
}

#[test]
fn runnable_examples_run() {
    let mut ran = 0;
    let mut failures = Vec::new();
    for page in pages() {
        let md = std::fs::read_to_string(&page).unwrap();
        for block in blocks(&md).iter().filter(|b| b.info == "sh run") {
            ran += 1;
            if let Err(e) = run_block(&page, block) {
                failures.push(e);
            }
        }
    }
    assert!(
        ran > 0,
        "no `sh run` example found: the check would check nothing"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
