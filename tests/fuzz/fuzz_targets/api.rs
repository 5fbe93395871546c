//! The control API's reading of a request, as far as it goes without a
//! daemon: the query strings of `status`, `trip`/`disable` and `reset` read
//! into their typed queries (serde_urlencoded, as the daemon's extractor
//! reads them), and policy bodies parsed against the embedded configuration
//! (`api::put_policy`, `Config::parse_policies`). The input is a query
//! string, a newline, and a body. Asserted besides no panic:
//! - a typed query holds only what its handler may take as checked: a
//!   destination with a port, a duration of 1 s to 7 days, a namespace
//!   selector that reads back from how it prints;
//! - what the CLI encodes from a query is read back as the same query;
//! - a `PUT /v1/policies/NAME` sets the policy named NAME, and a policy set
//!   that parses passes the set's checks.
#![no_main]

use std::sync::LazyLock;

use enforcer::{
    api::{Dest, Lasting, OverrideQuery, ResetQuery, StatusQuery},
    config::Config,
    daemon::api::put_policy,
    netns::Selector,
};
use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};

static EMBEDDED: LazyLock<Config> = LazyLock::new(Config::embedded);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (query, body) = text.split_once('\n').unwrap_or((text, ""));
    if let Some(q) = read::<StatusQuery>(query) {
        q.dest.iter().for_each(check_dest);
        q.netns.iter().for_each(check_selector);
    }
    if let Some(q) = read::<OverrideQuery>(query) {
        check_dest(&q.dest);
        q.lasting.iter().for_each(check_lasting);
    }
    if let Some(q) = read::<ResetQuery>(query) {
        check_dest(&q.dest);
        q.netns.iter().for_each(check_selector);
    }
    let name = query.trim();
    if let Ok(spec) = put_policy(&EMBEDDED, name, body) {
        assert_eq!(
            spec.name, name,
            "PUT /v1/policies/{name} set another policy"
        );
    }
    if let Ok(specs) = EMBEDDED.parse_policies(body, "request")
        && let Err(e) = EMBEDDED.check_set(&specs)
    {
        panic!("parsed, but the set is refused: {e}");
    }
});

/// `query` read as `T`, and checked to read back the same from the CLI's
/// encoding of it.
fn read<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(query: &str) -> Option<T> {
    let q: T = serde_urlencoded::from_str(query).ok()?;
    let encoded = serde_urlencoded::to_string(&q).expect("a typed query encodes");
    assert_eq!(
        serde_urlencoded::from_str::<T>(&encoded).as_ref(),
        Ok(&q),
        "{query:?} encoded as {encoded:?}"
    );
    Some(q)
}

fn check_dest(dest: &Dest) {
    assert_ne!(dest.0.port(), 0);
}

fn check_lasting(lasting: &Lasting) {
    assert!((Lasting::MIN..=Lasting::MAX).contains(&lasting.0));
}

fn check_selector(selector: &Selector) {
    assert_eq!(
        selector.to_string().parse::<Selector>().as_ref(),
        Ok(selector)
    );
}
