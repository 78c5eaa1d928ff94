//! TCLO commands the host sends: parsing (pure, fuzzed) into what the
//! daemon dispatches on.

use protocol::rpc::split_command;

/// One host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcloCommand<'a> {
    /// `reset`: the host (re)started the conversation.
    Reset,
    /// `ping`: are you there?
    Ping,
    /// `Capabilities_Register`: announce capabilities and version.
    CapabilitiesRegister,
    /// `Set_Option KEY VALUE`.
    SetOption {
        /// Option name.
        key: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// Any other command, for the plugins.
    Other {
        /// The command name.
        name: &'a str,
        /// Everything after the first space.
        args: &'a [u8],
    },
    /// Not a command this guest can make sense of (the reason).
    Invalid(&'static str),
}

/// Parse a command; never fails (bad input is [`TcloCommand::Invalid`]).
pub fn parse(msg: &[u8]) -> TcloCommand<'_> {
    let (name, args) = split_command(msg);
    let Ok(name) = std::str::from_utf8(name) else {
        return TcloCommand::Invalid("command name is not UTF-8");
    };
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return TcloCommand::Invalid("malformed command name");
    }
    match name {
        "reset" => TcloCommand::Reset,
        "ping" => TcloCommand::Ping,
        "Capabilities_Register" => TcloCommand::CapabilitiesRegister,
        "Set_Option" => {
            let Ok(args) = std::str::from_utf8(args) else {
                return TcloCommand::Invalid("Set_Option arguments are not UTF-8");
            };
            let args = args.trim_end_matches(['\0', '\n', ' ']);
            match args.split_once(' ') {
                Some((key, value)) if !key.is_empty() => TcloCommand::SetOption { key, value },
                _ => TcloCommand::Invalid("Set_Option needs KEY VALUE"),
            }
        }
        _ => TcloCommand::Other { name, args },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(b"reset"), TcloCommand::Reset);
        assert_eq!(parse(b"ping\0"), TcloCommand::Ping);
        assert_eq!(
            parse(b"Capabilities_Register"),
            TcloCommand::CapabilitiesRegister
        );
        assert_eq!(
            parse(b"Set_Option broadcastIP 1"),
            TcloCommand::SetOption {
                key: "broadcastIP",
                value: "1"
            }
        );
        assert_eq!(
            parse(b"Set_Option synctime 0\0"),
            TcloCommand::SetOption {
                key: "synctime",
                value: "0"
            }
        );
        assert_eq!(
            parse(b"OS_Halt"),
            TcloCommand::Other {
                name: "OS_Halt",
                args: b""
            }
        );
        assert!(matches!(parse(b"Set_Option"), TcloCommand::Invalid(_)));
        assert!(matches!(
            parse(b"Set_Option \xff 1"),
            TcloCommand::Invalid(_)
        ));
        assert!(matches!(parse(b"\xff\xfe"), TcloCommand::Invalid(_)));
        assert!(matches!(parse(b"\x01\x02 x"), TcloCommand::Invalid(_)));
        assert!(matches!(parse(b" x"), TcloCommand::Invalid(_)));
    }
}
