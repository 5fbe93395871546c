//! Tests of [`reverse_path`]: which FIB lookups make a guest's SYN spoofed.

use super::super::{ReversePath::*, fib_result::*, route::LOOPBACK_IFINDEX, *};

const WATCHED: u32 = 7;
const OTHER: u32 = 9;

#[test]
fn routed_back_through_the_watched_interface_is_trusted() {
    // A directly connected guest whose neighbour entry may not exist yet.
    assert_eq!(reverse_path(WATCHED, SUCCESS, WATCHED), Back);
    assert_eq!(reverse_path(WATCHED, NO_NEIGH, WATCHED), Back);
}

#[test]
fn routed_out_of_another_interface_or_nowhere_is_spoofed() {
    assert_eq!(reverse_path(WATCHED, SUCCESS, OTHER), Elsewhere);
    assert_eq!(reverse_path(WATCHED, NO_NEIGH, OTHER), Elsewhere);
    for rc in [BLACKHOLE, UNREACHABLE, PROHIBIT, NOT_FWDED] {
        // Whatever the helper left in the field.
        for egress in [0, WATCHED, OTHER] {
            assert_eq!(reverse_path(WATCHED, rc, egress), Elsewhere, "{rc}");
        }
    }
}

#[test]
fn any_other_answer_fails_open() {
    for rc in [FWD_DISABLED, UNSUPP_LWT, FRAG_NEEDED, 9, 10, -19, -22, -97] {
        for egress in [0, WATCHED, OTHER] {
            assert_eq!(reverse_path(WATCHED, rc, egress), Unknown, "{rc}");
        }
    }
    // A success that names no interface is no answer.
    assert_eq!(reverse_path(WATCHED, SUCCESS, 0), Unknown);
}

#[test]
fn loopback_and_unknown_ingress_are_not_judged() {
    for ingress in [0, LOOPBACK_IFINDEX] {
        for rc in [SUCCESS, NOT_FWDED, UNREACHABLE] {
            assert_eq!(reverse_path(ingress, rc, OTHER), Unknown);
        }
    }
}
