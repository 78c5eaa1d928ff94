//! The legacy backdoor copy/paste channel: the guest reads the host's
//! selection with GETSELLENGTH/GETNEXTPIECE and hands over its own with
//! SETSELLENGTH/SETNEXTPIECE, 4 bytes per call (open-vm-tools
//! `services/plugins/dndcp/copyPasteCompat.c`).
//!
//! Copy/paste is an exfiltration path and VMware disables it unless the VM's
//! configuration allows it; so does hvsim. Disabled, GETSELLENGTH answers -2
//! ("don't exchange") and nothing the guest sends is kept.

use protocol::cmd;

/// Largest selection real hosts exchange (`MAX_SELECTION_BUFFER_LENGTH`).
pub const MAX_SELECTION: usize = (1 << 16) - 100;
/// GETSELLENGTH: the host has nothing ready.
pub const SEL_NOT_READY: u32 = 0xFFFF_FFFF;
/// GETSELLENGTH: copy/paste is disabled for this VM.
pub const SEL_DONT_EXCHANGE: u32 = 0xFFFF_FFFE;

/// One VM's clipboard.
#[derive(Debug, Default)]
pub struct Clipboard {
    enabled: bool,
    text: Vec<u8>,
    read_pos: usize,
    incoming: Option<(usize, Vec<u8>)>,
    /// Bumped whenever the text changes, so watchers can tell.
    generation: u64,
}

impl Clipboard {
    /// A clipboard, exchanging with the guest only when `enabled`.
    pub fn new(enabled: bool) -> Self {
        Clipboard {
            enabled,
            ..Default::default()
        }
    }

    /// Whether copy/paste is allowed.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The current text (the last one set by the host or the guest).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Changes so far.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Set the host's selection (truncated to [`MAX_SELECTION`] at a UTF-8
    /// boundary). Refused when copy/paste is disabled.
    pub fn set_host(&mut self, text: &str) -> Result<(), String> {
        if !self.enabled {
            return Err(
                "copy/paste is disabled for this VM; set clipboard = true in its [[vm]] config"
                    .into(),
            );
        }
        let mut end = text.len().min(MAX_SELECTION);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.text = text.as_bytes()[..end].to_vec();
        self.read_pos = 0;
        self.generation += 1;
        Ok(())
    }

    /// Handle a selection backdoor command; `None` for other commands.
    /// Returns the new eax.
    pub fn call(&mut self, command: u16, ebx: u32) -> Option<u32> {
        match command {
            cmd::GETSELLENGTH => Some(if !self.enabled {
                SEL_DONT_EXCHANGE
            } else {
                self.read_pos = 0;
                self.text.len() as u32
            }),
            cmd::GETNEXTPIECE => {
                if !self.enabled {
                    return Some(0);
                }
                let mut w = [0u8; 4];
                let end = (self.read_pos + 4).min(self.text.len());
                let part = &self.text[self.read_pos.min(end)..end];
                w[..part.len()].copy_from_slice(part);
                self.read_pos = end;
                Some(u32::from_le_bytes(w))
            }
            cmd::SETSELLENGTH => {
                let len = ebx as usize;
                self.incoming =
                    (self.enabled && len <= MAX_SELECTION).then(|| (len, Vec::with_capacity(len)));
                if self.incoming.as_ref().is_some_and(|(n, _)| *n == 0) {
                    self.finish();
                }
                Some(0)
            }
            cmd::SETNEXTPIECE => {
                if let Some((len, buf)) = &mut self.incoming {
                    let n = (*len - buf.len()).min(4);
                    buf.extend_from_slice(&ebx.to_le_bytes()[..n]);
                    if buf.len() == *len {
                        self.finish();
                    }
                }
                Some(0)
            }
            _ => None,
        }
    }

    fn finish(&mut self) {
        if let Some((_, buf)) = self.incoming.take() {
            // Guests send C strings; the terminator is not text.
            let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
            self.text = buf[..end].to_vec();
            self.read_pos = 0;
            self.generation += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(c: &mut Clipboard, text: &[u8]) {
        c.call(cmd::SETSELLENGTH, text.len() as u32);
        for chunk in text.chunks(4) {
            let mut w = [0u8; 4];
            w[..chunk.len()].copy_from_slice(chunk);
            c.call(cmd::SETNEXTPIECE, u32::from_le_bytes(w));
        }
    }

    fn read(c: &mut Clipboard) -> Vec<u8> {
        let len = c.call(cmd::GETSELLENGTH, 0).unwrap() as usize;
        let mut out = Vec::new();
        while out.len() < len {
            out.extend_from_slice(&c.call(cmd::GETNEXTPIECE, 0).unwrap().to_le_bytes());
        }
        out.truncate(len);
        out
    }

    #[test]
    fn both_directions_multiline_and_non_ascii() {
        let mut c = Clipboard::new(true);
        c.set_host("héllo\nwörld ✓").unwrap();
        assert_eq!(read(&mut c), "héllo\nwörld ✓".as_bytes());
        send(&mut c, "from the guest\n日本".as_bytes());
        assert_eq!(c.text(), "from the guest\n日本".as_bytes());
        assert_eq!(c.generation(), 2);
    }

    #[test]
    fn limit_is_enforced() {
        let mut c = Clipboard::new(true);
        let big = "x".repeat(MAX_SELECTION + 10);
        c.set_host(&big).unwrap();
        assert_eq!(c.call(cmd::GETSELLENGTH, 0), Some(MAX_SELECTION as u32));
        send(&mut c, &vec![b'y'; MAX_SELECTION + 1]);
        assert_eq!(
            c.text().len(),
            MAX_SELECTION,
            "an oversize guest selection is dropped"
        );
        send(&mut c, &vec![b'z'; MAX_SELECTION]);
        assert!(c.text().iter().all(|&b| b == b'z'));
    }

    #[test]
    fn disabled_exchanges_nothing() {
        let mut c = Clipboard::new(false);
        assert!(c.set_host("secret").is_err());
        assert_eq!(c.call(cmd::GETSELLENGTH, 0), Some(SEL_DONT_EXCHANGE));
        send(&mut c, b"leak");
        assert!(c.text().is_empty());
        assert_eq!(c.call(cmd::GETVERSION, 0), None);
    }
}
