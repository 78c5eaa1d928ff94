//! cust.cfg from a customization package: parsing never panics, every
//! value that passes validation is free of control characters, and a
//! specification renders to a cust.cfg that parses to the same meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::custcfg::CustSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = CustSpec::parse(data) {
        for v in [&spec.hostname, &spec.domain, &spec.time_zone, &spec.marker_id]
            .into_iter()
            .flatten()
        {
            assert!(!v.chars().any(char::is_control), "{v:?}");
        }
        let again = CustSpec::parse(spec.render().as_bytes()).expect("rendered cust.cfg parses");
        assert_eq!(again, spec);
    }
});
