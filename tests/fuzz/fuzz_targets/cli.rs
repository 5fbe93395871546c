//! What an operator types on the command line, through the parsers that
//! check it: destinations (`trip`, `disable`, `reset`, `status DEST`),
//! durations (`--for`, and every duration of a configuration), rules
//! (CIDR:PORT, in `match`) and namespace selectors (`--netns`). Each input
//! goes through all four. What parses must print back as text that parses to
//! the same value (errors, `status` and `policy show` print it; operators
//! paste it back), and a rule must mean the same once it is a kernel key.
#![no_main]

use enforcer::{
    config::{parse_duration, values::Dur},
    daemon::api::parse_dest,
    netns::Selector,
    rule::Rule,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(dest) = parse_dest(text) {
        assert_ne!(dest.port(), 0);
        assert_eq!(parse_dest(&dest.to_string()), Ok(dest), "{text:?}");
    }
    if let Ok(duration) = parse_duration(text) {
        let printed = Dur(duration).to_string();
        assert_eq!(
            parse_duration(&printed),
            Ok(duration),
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
