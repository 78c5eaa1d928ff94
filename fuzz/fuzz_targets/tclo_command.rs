//! TCLO commands from the host: parsing never panics, and what parses keeps
//! to the input's bytes.
#![no_main]

use agent::daemon::tclo::{parse, TcloCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse(data) {
        TcloCommand::SetOption { key, value } => {
            assert!(!key.is_empty() && !key.contains(' '));
            assert!(key.len() + value.len() < data.len());
        }
        TcloCommand::Other { name, args } => {
            assert!(!name.is_empty());
            assert!(name.len() + args.len() <= data.len());
        }
        _ => {}
    }
});
