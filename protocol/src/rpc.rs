//! RPCI and TCLO message framing.
//!
//! RPCI replies start with "1 " (success) or "0 " (failure). TCLO replies the
//! guest sends start with "OK " or "ERROR ". Commands are a name, then one
//! space, then arguments.

/// RPCI reply prefix for success.
pub const RPCI_OK: &[u8] = b"1 ";
/// RPCI reply prefix for failure.
pub const RPCI_ERR: &[u8] = b"0 ";
/// TCLO reply prefix for success.
pub const TCLO_OK: &[u8] = b"OK ";
/// TCLO reply prefix for failure.
pub const TCLO_ERR: &[u8] = b"ERROR ";

/// An RPCI reply from the host: status and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpci<'a> {
    /// "1 " → true, "0 " → false.
    pub ok: bool,
    /// The text after the two status bytes.
    pub body: &'a [u8],
}

/// Why a reply did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// Not "1 " or "0 " (open-vm-tools: "Invalid format for the result of the RPCI command").
    #[error("invalid format for the result of the RPCI command")]
    BadRpciReply,
    /// Not "OK " or "ERROR ".
    #[error("invalid TCLO reply: it must start with \"OK \" or \"ERROR \"")]
    BadTcloReply,
}

/// Parse an RPCI reply.
pub fn parse_rpci_reply(reply: &[u8]) -> Result<Rpci<'_>, FramingError> {
    if reply.starts_with(RPCI_OK) {
        Ok(Rpci {
            ok: true,
            body: &reply[2..],
        })
    } else if reply.starts_with(RPCI_ERR) {
        Ok(Rpci {
            ok: false,
            body: &reply[2..],
        })
    } else {
        Err(FramingError::BadRpciReply)
    }
}

/// Build an RPCI reply.
pub fn rpci_reply(ok: bool, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 2);
    v.extend_from_slice(if ok { RPCI_OK } else { RPCI_ERR });
    v.extend_from_slice(body);
    v
}

/// A TCLO reply from the guest: status and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tclo<'a> {
    /// "OK " → true, "ERROR " → false.
    pub ok: bool,
    /// The text after the status word and its space.
    pub body: &'a [u8],
}

/// Parse a TCLO reply. A bare "OK" or "ERROR" without the space is accepted.
pub fn parse_tclo_reply(reply: &[u8]) -> Result<Tclo<'_>, FramingError> {
    for (prefix, ok) in [(TCLO_OK, true), (TCLO_ERR, false)] {
        if reply.starts_with(prefix) {
            return Ok(Tclo {
                ok,
                body: &reply[prefix.len()..],
            });
        }
        if reply == &prefix[..prefix.len() - 1] {
            return Ok(Tclo { ok, body: b"" });
        }
    }
    Err(FramingError::BadTcloReply)
}

/// Build a TCLO reply.
pub fn tclo_reply(ok: bool, body: &[u8]) -> Vec<u8> {
    let prefix = if ok { TCLO_OK } else { TCLO_ERR };
    let mut v = Vec::with_capacity(body.len() + prefix.len());
    v.extend_from_slice(prefix);
    v.extend_from_slice(body);
    v
}

/// Split a command into its name and its arguments at the first space.
/// Trailing NULs (some guests send C strings with their terminator) are
/// dropped from the name.
pub fn split_command(msg: &[u8]) -> (&[u8], &[u8]) {
    let (name, args) = match msg.iter().position(|&b| b == b' ') {
        Some(i) => (&msg[..i], &msg[i + 1..]),
        None => (msg, &msg[msg.len()..]),
    };
    let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    (&name[..end], args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpci_both_ways() {
        let r = rpci_reply(true, b"value");
        assert_eq!(r, b"1 value");
        assert_eq!(
            parse_rpci_reply(&r).unwrap(),
            Rpci {
                ok: true,
                body: b"value"
            }
        );
        assert_eq!(
            parse_rpci_reply(b"0 No value found").unwrap(),
            Rpci {
                ok: false,
                body: b"No value found"
            }
        );
        assert_eq!(parse_rpci_reply(b"1"), Err(FramingError::BadRpciReply));
        assert_eq!(
            parse_rpci_reply(b"x value"),
            Err(FramingError::BadRpciReply)
        );
    }

    #[test]
    fn tclo_both_ways() {
        assert_eq!(tclo_reply(true, b"ATR toolbox"), b"OK ATR toolbox");
        assert_eq!(
            parse_tclo_reply(b"ERROR Unknown Command").unwrap(),
            Tclo {
                ok: false,
                body: b"Unknown Command"
            }
        );
        assert_eq!(
            parse_tclo_reply(b"OK").unwrap(),
            Tclo {
                ok: true,
                body: b""
            }
        );
        assert_eq!(parse_tclo_reply(b"KO "), Err(FramingError::BadTcloReply));
    }

    #[test]
    fn split() {
        assert_eq!(
            split_command(b"info-get guestinfo.a b"),
            (&b"info-get"[..], &b"guestinfo.a b"[..])
        );
        assert_eq!(split_command(b"reset"), (&b"reset"[..], &b""[..]));
        assert_eq!(split_command(b"reset "), (&b"reset"[..], &b""[..]));
        assert_eq!(split_command(b"ping\0"), (&b"ping"[..], &b""[..]));
        assert_eq!(
            split_command(b"SetGuestInfo  1 host"),
            (&b"SetGuestInfo"[..], &b" 1 host"[..])
        );
    }
}
