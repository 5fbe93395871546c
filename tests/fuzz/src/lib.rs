//! What the fuzz targets and the seed generator share.

/// RFC 1071 the plain way, independent of the enforcer's incremental code so
/// that it can judge it: a wide accumulator over the concatenation of
/// `parts`, folded at the end; 0xffff over bytes that include a correct
/// checksum.
pub fn ones_sum(parts: &[&[u8]]) -> u16 {
    let bytes = parts.concat();
    let mut sum: u64 = bytes
        .chunks(2)
        .map(|pair| u64::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}
