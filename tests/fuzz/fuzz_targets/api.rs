//! The control API's handling of a request, as far as it goes without a
//! daemon: `http::read_request` over the bytes a client sends, the router's
//! reading of path, query and body into a typed call (`api::parse_call`), and
//! the parse of policy bodies against the embedded configuration
//! (`api::put_policy`, `Config::parse_policies`). Asserted besides no panic:
//! - an escape is `%` and two hex digits (RFC 3986), nothing else, and what
//!   the CLI encodes is decoded back to what it encoded;
//! - a refused request is refused with 400 (bad input) or 404 (no endpoint);
//! - a typed call holds only what its handler may take as checked: a
//!   destination with a port, a duration of 1 s to 7 days that reads back from
//!   its text, a namespace selector that reads back from how it prints;
//! - a `PUT /v1/policies/NAME` sets the policy named NAME, and a policy set
//!   that parses passes the set's checks.
#![no_main]

use std::{sync::LazyLock, time::Duration};

use enforcer::{
    config::{Config, parse_duration},
    daemon::api::{Call, parse_call, put_policy},
    http::{self, percent_decode, percent_encode},
    netns::Selector,
};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// `read_request` runs under a timeout, which needs a runtime with a timer.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime")
});

static EMBEDDED: LazyLock<Config> = LazyLock::new(Config::embedded);

fuzz_target!(|data: &[u8]| {
    if let Some(target) = request_target(data) {
        check_decoding(target);
    }
    let Ok(request) = RUNTIME.block_on(http::read_request(data)) else {
        return;
    };
    for (key, value) in &request.query {
        assert_eq!(&percent_decode(&percent_encode(key)), key);
        assert_eq!(&percent_decode(&percent_encode(value)), value);
    }
    match parse_call(&request) {
        Ok(call) => check_call(&call),
        Err((status, message)) => {
            assert!(matches!(status, 400 | 404), "{status} {message}");
        }
    }
});

/// The request target of the request line, as `read_request` splits it.
fn request_target(data: &[u8]) -> Option<&str> {
    let line = data.split(|&b| b == b'\n').next()?;
    std::str::from_utf8(line).ok()?.split_whitespace().nth(1)
}

/// `percent_decode` against RFC 3986's `pct-encoded = "%" HEXDIG HEXDIG`
/// (and `+` as a space), over the raw target of the request line.
fn check_decoding(text: &str) {
    let bytes = text.as_bytes();
    let mut expected = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let escape = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], escape) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
                expected.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                i += 3;
                continue;
            }
            (b'+', _) => expected.push(b' '),
            (b, _) => expected.push(b),
        }
        i += 1;
    }
    assert_eq!(
        percent_decode(text),
        String::from_utf8_lossy(&expected),
        "decoding {text:?}"
    );
}

fn check_call(call: &Call) {
    match call {
        Call::Status { dest, netns, .. } => {
            assert!(dest.is_none_or(|d| d.port() != 0));
            netns.iter().for_each(check_selector);
        }
        Call::Override { dest, lasting, .. } => {
            assert_ne!(dest.port(), 0);
            if let Some((duration, text)) = lasting {
                let week = Duration::from_secs(7 * 86_400);
                assert!((Duration::from_secs(1)..=week).contains(duration));
                assert_eq!(parse_duration(text).as_ref(), Ok(duration));
            }
        }
        Call::Reset { dest, netns } => {
            assert_ne!(dest.port(), 0);
            netns.iter().for_each(check_selector);
        }
        Call::SetPolicy { name, body } => {
            if let Ok(spec) = put_policy(&EMBEDDED, name, body) {
                assert_eq!(
                    &spec.name, name,
                    "PUT /v1/policies/{name} set another policy"
                );
            }
        }
        Call::ApplyPolicies(body) => {
            if let Ok(specs) = EMBEDDED.parse_policies(body, "request")
                && let Err(e) = EMBEDDED.check_set(&specs)
            {
                panic!("parsed, but the set is refused: {e}");
            }
        }
        Call::Policies
        | Call::Policy(_)
        | Call::RemovePolicy(_)
        | Call::Pause(_)
        | Call::Reload
        | Call::Metrics
        | Call::Uninstall => {}
    }
}

fn check_selector(selector: &Selector) {
    assert_eq!(
        selector.to_string().parse::<Selector>().as_ref(),
        Ok(selector)
    );
}
