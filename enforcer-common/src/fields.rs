//! Kernel struct fields the programs read at offsets found in BTF, decoded.

/// The signed field of `bits` bits at bit `shift` of the 16-bit `word`: a
/// whole `__s16` when `bits` is 16, a bitfield otherwise (`ipv6_pinfo`'s
/// 9-bit `hop_limit` before Linux 6.5 or so). Out-of-range shapes are
/// clamped, never a panic or an over-wide shift.
#[inline(always)]
pub fn signed_bits(word: u16, shift: u32, bits: u32) -> i16 {
    let bits = bits.clamp(1, 16);
    let shift = shift.min(16 - bits);
    // Up to the word's top, then back down arithmetically: sign-extended.
    ((word << (16 - shift - bits)) as i16) >> (16 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_s16() {
        assert_eq!(signed_bits(0xffff, 0, 16), -1);
        assert_eq!(signed_bits(200, 0, 16), 200);
    }

    #[test]
    fn linux_6_1s_nine_bit_hop_limit() {
        // `__u16 __unused_1:7; __s16 hop_limit:9;`: the top nine bits.
        let word = |hop: i16, unused: u16| ((hop as u16) << 7) | (unused & 0x7f);
        assert_eq!(signed_bits(word(-1, 0x55), 7, 9), -1);
        assert_eq!(signed_bits(word(5, 0x7f), 7, 9), 5);
        assert_eq!(signed_bits(word(255, 0), 7, 9), 255);
    }

    #[test]
    fn shapes_past_the_word_are_clamped() {
        assert_eq!(signed_bits(0x8000, 15, 9), signed_bits(0x8000, 7, 9));
        assert_eq!(signed_bits(1, 0, 0), -1);
        assert_eq!(signed_bits(1, 0, 40), 1);
    }
}
