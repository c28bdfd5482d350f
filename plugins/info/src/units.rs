//! Units. Every quantity of this crate is computed in **nats**; conversion to bits
//! happens only on output (DESIGN.md, "Metrics and results").

use std::f64::consts::LN_2;

/// Name of the internal unit, as written into results.
pub const NATS: &str = "nats";
/// Name of the output unit produced by [`to_bits`].
pub const BITS: &str = "bits";

/// Converts a quantity (or a standard error of one) from nats to bits: `x / ln 2`.
pub fn to_bits(nats: f64) -> f64 {
    nats / LN_2
}

/// Converts a quantity (or a standard error of one) from bits to nats: `x · ln 2`.
pub fn to_nats(bits: f64) -> f64 {
    bits * LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bit_is_ln2_nats() {
        assert!((to_bits(LN_2) - 1.0).abs() < 1e-15);
        assert!((to_bits(8f64.ln()) - 3.0).abs() < 1e-15);
        assert!((to_nats(10.0) - 10.0 * LN_2).abs() < 1e-15);
        // ln 4 nats = 2 bits; round trip.
        assert!((to_bits(4f64.ln()) - 2.0).abs() < 1e-15);
        assert!((to_nats(to_bits(1.234_567)) - 1.234_567).abs() < 1e-15);
    }
}
