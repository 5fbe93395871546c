//! Tests of [`reverse_path`]: which FIB lookups make a guest's SYN spoofed.

use super::super::{ReversePath::*, fib_result::*, route::LOOPBACK_IFINDEX, *};

const WATCHED: u32 = 7;
const OTHER: u32 = 9;

#[test]
fn routed_back_through_the_watched_interface_is_trusted() {
    // A directly connected guest whose neighbour entry may not exist yet.
    assert_eq!(reverse_path(WATCHED, 0, SUCCESS, WATCHED), Back);
    assert_eq!(reverse_path(WATCHED, 0, NO_NEIGH, WATCHED), Back);
}

#[test]
fn routed_out_of_another_interface_or_nowhere_is_spoofed() {
    assert_eq!(reverse_path(WATCHED, 0, SUCCESS, OTHER), Elsewhere);
    assert_eq!(reverse_path(WATCHED, 0, NO_NEIGH, OTHER), Elsewhere);
    for rc in [BLACKHOLE, UNREACHABLE, PROHIBIT, NOT_FWDED] {
        // Whatever the helper left in the field.
        for egress in [0, WATCHED, OTHER] {
            assert_eq!(reverse_path(WATCHED, 0, rc, egress), Elsewhere, "{rc}");
        }
    }
}

#[test]
fn any_other_answer_fails_open() {
    for rc in [FWD_DISABLED, UNSUPP_LWT, FRAG_NEEDED, 9, 10, -19, -22, -97] {
        for egress in [0, WATCHED, OTHER] {
            assert_eq!(reverse_path(WATCHED, 0, rc, egress), Unknown, "{rc}");
        }
    }
    // A success that names no interface is no answer.
    assert_eq!(reverse_path(WATCHED, 0, SUCCESS, 0), Unknown);
}

#[test]
fn loopback_and_unknown_ingress_are_not_judged() {
    for ingress in [0, LOOPBACK_IFINDEX] {
        for rc in [SUCCESS, NOT_FWDED, UNREACHABLE] {
            assert_eq!(reverse_path(ingress, 0, rc, OTHER), Unknown);
        }
    }
}

#[test]
fn routed_back_through_the_bridge_the_interface_is_a_port_of_is_trusted() {
    const BRIDGE: u32 = 11;
    assert_eq!(reverse_path(WATCHED, BRIDGE, SUCCESS, BRIDGE), Back);
    assert_eq!(reverse_path(WATCHED, BRIDGE, NO_NEIGH, BRIDGE), Back);
    assert_eq!(reverse_path(WATCHED, BRIDGE, SUCCESS, WATCHED), Back);
    assert_eq!(reverse_path(WATCHED, BRIDGE, SUCCESS, OTHER), Elsewhere);
    // Without a recorded bridge, the bridge is another interface.
    assert_eq!(reverse_path(WATCHED, 0, SUCCESS, BRIDGE), Elsewhere);
}
