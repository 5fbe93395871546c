//! The few kernel socket fields the programs read beyond what their contexts
//! expose, at offsets the daemon finds in the running kernel's BTF and sets
//! as read-only globals before loading (names in
//! `enforcer_common::maps::globals`). The verifier sees the values of a
//! frozen read-only map as constants, so each read is a plain load from a
//! BTF-typed socket pointer that it checks against the kernel's own types; an
//! offset of 0 (unknown) compiles the read away.

use core::{ffi::c_void, ptr};

use aya_ebpf::helpers::generated::bpf_skc_to_tcp_sock;

#[unsafe(no_mangle)]
static SK_ERR_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static UC_TTL_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static MIN_TTL: u32 = 0;
#[unsafe(no_mangle)]
static PINET6_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static HOP_LIMIT_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static HOP_LIMIT_SHIFT: u32 = 0;
#[unsafe(no_mangle)]
static HOP_LIMIT_BITS: u32 = 0;
#[unsafe(no_mangle)]
static MIN_HOP_LIMIT: u32 = 0;
#[unsafe(no_mangle)]
static USER_TIMEOUT_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static COOKIE_OFFSET: u32 = 0;

/// A global as the loader set it: read through a volatile load, so the
/// compiler cannot fold the placeholder value in.
#[inline(always)]
fn global(g: &'static u32) -> u32 {
    // SAFETY: a plain static of the object.
    unsafe { ptr::read_volatile(g) }
}

/// A TCP socket as the kernel's BTF types it: what the helper
/// `bpf_skc_to_tcp_sock` returns, asked once per callback.
#[derive(Clone, Copy)]
pub struct TcpSock(*const u8);

impl TcpSock {
    /// The socket behind `sk`, if it is a full TCP socket.
    ///
    /// # Safety
    /// `sk` must be a non-null socket pointer handed by the kernel to this
    /// program.
    #[inline(always)]
    pub unsafe fn of(sk: *mut c_void) -> Option<Self> {
        // SAFETY: the caller passes a socket; the helper returns a BTF-typed
        // `tcp_sock` or null.
        let tp = unsafe { bpf_skc_to_tcp_sock(sk) }.cast::<u8>();
        (!tp.is_null()).then_some(Self(tp))
    }

    /// The socket's `sk_err`, if the kernel's layout is known.
    #[inline(always)]
    pub fn sk_err(self) -> Option<i32> {
        let offset = global(&SK_ERR_OFFSET);
        // SAFETY: `offset` is the field's offset in this kernel's `struct
        // sock`, which starts `struct tcp_sock`.
        (offset != 0).then(|| unsafe { read_at::<i32>(self.0, offset) })
    }

    /// The socket's `TCP_USER_TIMEOUT` (ms, 0: the kernel's retries), if the
    /// kernel's layout is known.
    #[inline(always)]
    pub fn user_timeout(self) -> Option<u32> {
        let offset = global(&USER_TIMEOUT_OFFSET);
        // SAFETY: `offset` is the field's offset in this kernel's `struct
        // inet_connection_sock`, which starts `struct tcp_sock`.
        (offset != 0).then(|| unsafe { read_at::<u32>(self.0, offset) })
    }

    /// The socket's cookie as it stands (0: nobody asked for it yet), if the
    /// kernel's layout is known. Read, not generated.
    #[inline(always)]
    pub fn cookie(self) -> Option<u64> {
        let offset = global(&COOKIE_OFFSET);
        // SAFETY: `offset` is the field's offset in this kernel's `struct
        // sock`, which starts `struct tcp_sock`.
        (offset != 0).then(|| unsafe { read_at::<u64>(self.0, offset) })
    }

    /// Whether the caller set the socket's IPv4 TTL or IPv6 hop limit below
    /// the system's default.
    #[inline(always)]
    pub fn hop_limit_lowered(self) -> bool {
        let (ttl_at, min_ttl) = (global(&UC_TTL_OFFSET), global(&MIN_TTL));
        // SAFETY: `uc_ttl`'s offset in this kernel's `struct inet_sock`, which
        // starts `struct tcp_sock`.
        if ttl_at != 0 && lowered(unsafe { read_at::<i16>(self.0, ttl_at) }, min_ttl) {
            return true;
        }
        let (pinet6_at, hop_at) = (global(&PINET6_OFFSET), global(&HOP_LIMIT_OFFSET));
        if pinet6_at == 0 || hop_at == 0 {
            return false;
        }
        // SAFETY: `pinet6`'s offset in `struct inet_sock`: NULL for IPv4
        // sockets, else the socket's `struct ipv6_pinfo`, which holds
        // `hop_limit` in the 16-bit word at `hop_at`.
        let np = unsafe { read_at::<*const u8>(self.0, pinet6_at) };
        !np.is_null()
            && lowered(
                enforcer_common::fields::signed_bits(
                    // SAFETY: `np` is the socket's non-null `struct
                    // ipv6_pinfo` (see above), `hop_at` its `hop_limit` word.
                    unsafe { read_at::<u16>(np, hop_at) },
                    global(&HOP_LIMIT_SHIFT),
                    global(&HOP_LIMIT_BITS),
                ),
                global(&MIN_HOP_LIMIT),
            )
    }
}

/// A caller-set value (-1 = the default) below the system's default.
#[inline(always)]
fn lowered(value: i16, min: u32) -> bool {
    value >= 0 && (value as u32) < min
}

/// The `T` at `offset` bytes into a BTF-typed kernel object.
///
/// # Safety
/// `offset` must be the offset of a `T` field of the object `base` points to.
#[inline(always)]
unsafe fn read_at<T>(base: *const u8, offset: u32) -> T {
    // SAFETY: as the caller promises; the verifier checks the access.
    unsafe { ptr::read_volatile(base.add(offset as usize).cast::<T>()) }
}
