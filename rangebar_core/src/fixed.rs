//! Fixed-point numbers with 8 decimals (value x 1e8) stored in `i64`.

/// Fixed-point scale: 8 decimal places.
pub const SCALE: i64 = 100_000_000;
const SCALE_F64: f64 = 100_000_000.0;

/// Convert a float to fixed point: `round(value * 1e8)`, half away from zero.
/// `None` when the value is not finite or out of the `i64` range.
#[inline]
pub fn from_f64(value: f64) -> Option<i64> {
    let scaled = value * SCALE_F64;
    // i64::MAX as f64 rounds up to 2^63 (out of range); NaN fails the range test.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&scaled) {
        Some(round_half_away(scaled))
    } else {
        None
    }
}

/// `x.round() as i64` for `x` in the `i64` range, without a libm call: truncate, then step away
/// from zero when the dropped fraction is at least one half. Exact: below 2^52 in magnitude the
/// fraction `x - trunc(x)` is representable, at or above it `x` is an integer (fraction 0).
#[inline]
fn round_half_away(x: f64) -> i64 {
    let truncated = x as i64;
    let fraction = x - truncated as f64;
    truncated + i64::from(fraction >= 0.5) - i64::from(fraction <= -0.5)
}

/// Fixed point to float: `raw / 1e8` (a single correctly rounded division).
#[inline]
pub fn to_f64(raw: i64) -> f64 {
    raw as f64 / SCALE_F64
}

/// 128-bit accumulator to float, `raw / 1e8`.
#[inline]
pub fn wide_to_f64(raw: i128) -> f64 {
    i128_to_f64(raw) / SCALE_F64
}

/// `raw as f64` (round to nearest, ties to even), without the 128-bit software conversion.
///
/// Within 64 bits the hardware conversion rounds the same way. Beyond, the magnitude is cut to
/// its top 63 bits with a sticky bit for everything dropped (it sits 10 bits below the rounding
/// position, so the 63-bit value rounds to 53 bits exactly as the full one would), converted, and
/// scaled back by a power of two (exact).
#[inline]
pub fn i128_to_f64(raw: i128) -> f64 {
    if let Ok(narrow) = i64::try_from(raw) {
        return narrow as f64;
    }
    let magnitude = raw.unsigned_abs(); // >= 2^63
    let shift = 128 - magnitude.leading_zeros() - 63; // 1..=65
    let sticky = u128::from(magnitude & ((1_u128 << shift) - 1) != 0);
    let top = ((magnitude >> shift) | sticky) as i64; // < 2^63
    let scale = f64::from_bits(u64::from(1023 + shift) << 52); // 2^shift
    let float = top as f64 * scale;
    if raw < 0 {
        -float
    } else {
        float
    }
}

/// Parse a decimal string exactly (no float round trip). At most 8 fractional digits.
pub fn parse_decimal(text: &str) -> Result<i64, String> {
    let s = text.trim();
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    let valid = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty()) || !valid(int_part) || !valid(frac_part) {
        return Err(format!("not a decimal number: {text:?}"));
    }
    if frac_part.len() > 8 {
        return Err(format!("more than 8 decimals: {text:?}"));
    }
    let overflow = || format!("out of range: {text:?}");
    let int_value: i64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| overflow())?
    };
    let mut frac_value: i64 = 0;
    for (i, b) in frac_part.bytes().enumerate() {
        frac_value += i64::from(b - b'0') * 10_i64.pow(7 - i as u32);
    }
    let raw = int_value
        .checked_mul(SCALE)
        .and_then(|v| v.checked_add(frac_value))
        .ok_or_else(overflow)?;
    Ok(if negative { -raw } else { raw })
}

/// Format a fixed-point value with 8 decimals, e.g. `"50000.12345678"`.
pub fn format(raw: i64) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    let scale = SCALE as u64;
    format!("{sign}{}.{:08}", abs / scale, abs % scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_decimal("50000.12345678"), Ok(5_000_012_345_678));
        assert_eq!(parse_decimal("-1.5"), Ok(-150_000_000));
        assert_eq!(parse_decimal("0.00000001"), Ok(1));
        assert_eq!(parse_decimal("61804.8"), Ok(6_180_480_000_000));
        assert_eq!(parse_decimal("4"), Ok(400_000_000));
        assert!(parse_decimal("1.123456789").is_err());
        assert!(parse_decimal("").is_err());
        assert!(parse_decimal("1.2.3").is_err());
        assert!(parse_decimal("abc").is_err());
        assert!(parse_decimal("99999999999999999999").is_err());
    }

    #[test]
    fn formats_with_eight_decimals() {
        assert_eq!(format(5_000_012_345_678), "50000.12345678");
        assert_eq!(format(-100_000_000), "-1.00000000");
        assert_eq!(format(1), "0.00000001");
    }

    #[test]
    fn float_conversion_rounds_half_away_from_zero() {
        assert_eq!(from_f64(0.123456789), Some(12_345_679));
        assert_eq!(from_f64(-0.000000005), Some(-1));
        assert_eq!(from_f64(61837.63), Some(6_183_763_000_000));
        assert_eq!(from_f64(f64::NAN), None);
        assert_eq!(from_f64(f64::INFINITY), None);
        assert_eq!(from_f64(1e12), None);
        assert_eq!(from_f64(-0.000000004), Some(0));
        assert_eq!(from_f64(0.000000025), Some(3));
        assert_eq!(from_f64(-92_233_720_368.547_76), Some(i64::MIN));
    }

    #[test]
    fn float_conversion_equals_libm_round() {
        // Scaled values on and around the rounding boundaries, divided back to prices.
        let below_half = 0.5 - f64::EPSILON / 4.0; // the largest float below 0.5
        let scaled = [
            0.5,
            -0.5,
            below_half,
            -below_half,
            1.5,
            2.5,
            4_503_599_627_370_495.5, // 2^52 - 1/2
            4_503_599_627_370_496.0, // 2^52
            9_007_199_254_740_992.0, // 2^53
        ];
        let mut edges: Vec<f64> = scaled.iter().map(|x| x / SCALE_F64).collect();
        edges.extend([
            0.0,
            -0.0,
            f64::MIN_POSITIVE,
            f64::EPSILON,
            61_837.63,
            -61_837.63,
        ]);
        for v in edges {
            let scaled = (v * SCALE_F64).round();
            assert_eq!(from_f64(v), Some(scaled as i64), "{v}");
        }
    }
}

#[cfg(test)]
mod float_props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn from_f64_equals_scaled_libm_round(v in proptest::num::f64::ANY) {
            let scaled = (v * SCALE_F64).round();
            let expected = (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0)
                .contains(&scaled)
                .then_some(scaled as i64);
            prop_assert_eq!(from_f64(v), expected);
        }

        #[test]
        fn i128_to_f64_equals_the_128_bit_conversion(
            v in prop_oneof![
                any::<i128>(),
                (any::<u64>(), 0_u32..65).prop_map(|(m, s)| i128::from(m) << s),
                // halfway cases and their neighbours: top bit, mantissa parity, the half bit
                (63_u32..127, any::<u64>(), any::<bool>()).prop_map(|(b, m, odd)| {
                    let half = 1_i128 << (b - 53);
                    (1_i128 << b) | ((i128::from(m) << (b - 52)) & ((1_i128 << b) - 1)) | (i128::from(odd) << (b - 52)) | half
                }),
            ],
            nudge in -2_i128..=2,
            negate in any::<bool>(),
        ) {
            let v = v.saturating_add(nudge);
            let v = if negate { v.saturating_neg() } else { v };
            prop_assert_eq!(i128_to_f64(v).to_bits(), (v as f64).to_bits(), "{}", v);
        }

        #[test]
        fn wide_to_f64_equals_the_128_bit_conversion(
            v in prop_oneof![any::<i128>(), any::<i64>().prop_map(i128::from), (-70_i32..70).prop_map(|s| if s < 0 { -(1_i128 << -s) } else { 1_i128 << s })],
            nudge in -2_i128..=2,
        ) {
            let v = v.saturating_add(nudge);
            prop_assert_eq!(wide_to_f64(v).to_bits(), (v as f64 / SCALE_F64).to_bits());
        }

        #[test]
        fn from_f64_is_exact_on_prices(raw in -10_000_000_000_000_i64..10_000_000_000_000, half in 0_i64..2) {
            // values near n/1e8 and near (n + 1/2)/1e8, where rounding decides
            let v = (raw as f64 + half as f64 * 0.5) / SCALE_F64;
            let scaled = (v * SCALE_F64).round();
            prop_assert_eq!(from_f64(v), Some(scaled as i64));
        }
    }
}

/// Arrow `decimal128` values (little-endian low/high 64-bit words, interleaved) with `scale`
/// decimals (0..=8) to fixed point x1e8. `Err(row)` names the first value out of the i64 range.
pub fn decimal128_words_to_fixed(words: &[i64], scale: u32) -> Result<Vec<i64>, usize> {
    debug_assert!(scale <= 8);
    let factor = 10_i64.pow(8 - scale);
    words
        .chunks_exact(2)
        .enumerate()
        .map(|(row, w)| {
            // The value fits in 64 bits iff the high word is the sign extension of the low word.
            if w[1] != (w[0] >> 63) {
                return Err(row);
            }
            w[0].checked_mul(factor).ok_or(row)
        })
        .collect()
}

#[cfg(test)]
mod decimal_tests {
    use super::decimal128_words_to_fixed;

    #[test]
    fn converts_decimal_words() {
        assert_eq!(
            decimal128_words_to_fixed(&[150, 0, -3, -1], 2),
            Ok(vec![150_000_000, -3_000_000])
        );
        assert_eq!(decimal128_words_to_fixed(&[7, 0], 8), Ok(vec![7]));
        assert_eq!(decimal128_words_to_fixed(&[1, 0, 5, 1], 8), Err(1));
        assert_eq!(decimal128_words_to_fixed(&[i64::MAX, 0], 0), Err(0));
    }
}
