//! What an operator types on the command line, through the parsers that
//! check it: destinations (`trip`, `disable`, `reset`, `status DEST`),
//! durations (`--for`, read and printed as every duration of a configuration is), rules
//! (CIDR:PORT, in `match`) and namespace selectors (`--netns`). Each input
//! goes through all four. What parses must print back as text that parses to
//! the same value (errors, `status` and `policy show` print it; operators
//! paste it back), and a rule must mean the same once it is a kernel key.
#![no_main]

use enforcer::{
    api::{Dest, Lasting},
    netns::Selector,
    rule::Rule,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dest) = text.parse::<Dest>() {
        assert_ne!(dest.0.port(), 0);
        assert_eq!(dest.to_string().parse(), Ok(dest), "{text:?}");
    }
    if let Ok(lasting) = text.parse::<Lasting>() {
        let printed = lasting.to_string();
        assert_eq!(
            printed.parse(),
            Ok(lasting),
            "{text:?} printed as {printed}"
        );
    }
    if let Ok(rule) = text.parse::<Rule>() {
        let max = if rule.addr.is_ipv4() { 32 } else { 128 };
        assert!(rule.prefix <= max, "{rule:?}");
        let printed = rule.to_string();
        assert_eq!(
            printed.parse::<Rule>(),
            Ok(rule),
            "{text:?} printed as {printed}"
        );
        assert_eq!(
            Rule::from_key(&rule.key()),
            rule,
            "{text:?} as a kernel key"
        );
    }
    if let Ok(selector) = text.parse::<Selector>() {
        assert_eq!(
            selector.to_string().parse::<Selector>(),
            Ok(selector),
            "{text:?}"
        );
    }
});
