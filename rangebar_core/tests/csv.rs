//! Property tests of the aggTrades CSV parser against a simple reference (split on commas,
//! `str::parse`, `fixed::parse_decimal`): same rows or the same failing line, for any text and
//! any way of cutting it into pieces.

use proptest::prelude::*;
use rangebar_core::csv::{parse_agg_trades, AggTradeColumns, AggTradesParser};
use rangebar_core::fixed::parse_decimal;

/// The reference: obviously correct, slow. `Err(line)` names the first bad line (1-based).
fn reference(text: &[u8], fields: usize) -> Result<AggTradeColumns, u64> {
    let mut out = AggTradeColumns::default();
    let text = std::str::from_utf8(text).map_err(|_| 0_u64);
    let Ok(text) = text else {
        return Err(0);
    };
    let lines: Vec<&str> = text.split('\n').collect();
    for (index, raw) in lines.iter().enumerate() {
        let line_no = index as u64 + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(',').collect();
        if parts.len() != fields {
            return Err(line_no);
        }
        let int =
            |s: &str| -> Option<i64> { (!s.starts_with('+')).then(|| s.parse().ok()).flatten() };
        let decimal = |s: &str| -> Option<i64> {
            let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
            let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
            if whole.is_empty() || !digits(whole) || !digits(frac) {
                return None;
            }
            let value = parse_decimal(&format!("{whole}.{}", frac.trim_end_matches('0')));
            value.ok().filter(|&v| v <= 999_999_999_999_999_999)
        };
        let boolean = |s: &str| match s.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        let row = (|| {
            Some((
                int(parts[0])?,
                decimal(parts[1]).filter(|&p| p > 0)?,
                decimal(parts[2])?,
                int(parts[3])?,
                int(parts[4])?,
                int(parts[5])?,
                boolean(parts[6])?,
            ))
        })();
        let Some((a, p, q, f, l, t, m)) = row else {
            return Err(line_no);
        };
        out.agg_trade_id.push(a);
        out.price.push(p);
        out.quantity.push(q);
        out.first_trade_id.push(f);
        out.last_trade_id.push(l);
        out.timestamp.push(t);
        out.is_buyer_maker.push(m);
    }
    Ok(out)
}

fn decimal_text() -> impl Strategy<Value = String> {
    (0_u64..100_000, 0_u64..100_000_000, 0_usize..=8, 0_usize..3).prop_map(
        |(whole, frac, places, zeros)| {
            if places == 0 {
                return whole.to_string();
            }
            let frac = format!("{frac:08}");
            format!("{whole}.{}{}", &frac[..places], "0".repeat(zeros))
        },
    )
}

fn line(fields: usize) -> impl Strategy<Value = String> {
    (
        any::<i64>(),
        decimal_text(),
        decimal_text(),
        0_i64..i64::MAX,
        any::<i64>(),
        any::<i64>(),
        prop::sample::select(vec!["True", "False", "true", "false", "TRUE"]),
        prop::sample::select(vec!["True", "False", "", "x"]),
        prop::sample::select(vec!["\n", "\r\n", "\n\n"]),
    )
        .prop_map(move |(a, p, q, f, l, t, m, best, end)| {
            let extra = if fields == 8 {
                format!(",{best}")
            } else {
                String::new()
            };
            format!("{a},{p},{q},{f},{l},{t},{m}{extra}{end}")
        })
}

fn texts() -> impl Strategy<Value = (Vec<u8>, usize)> {
    prop_oneof![Just(7_usize), Just(8)].prop_flat_map(|fields| {
        (prop::collection::vec(line(fields), 0..40), Just(fields))
            .prop_map(|(lines, fields)| (lines.concat().into_bytes(), fields))
    })
}

/// Replace or insert a byte somewhere, mostly with characters that matter to the format.
fn mutate(text: &[u8], at: usize, byte: u8, insert: bool) -> Vec<u8> {
    let mut out = text.to_vec();
    if out.is_empty() {
        return vec![byte];
    }
    let at = at % out.len();
    if insert {
        out.insert(at, byte);
    } else {
        out[at] = byte;
    }
    out
}

fn in_pieces(text: &[u8], fields: usize, cuts: &[usize]) -> Result<AggTradeColumns, u64> {
    let mut parser = AggTradesParser::new(fields, 1).unwrap();
    let mut out = AggTradeColumns::default();
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
    cuts.sort_unstable();
    let mut start = 0;
    for cut in cuts.into_iter().chain([text.len()]) {
        parser
            .feed(&text[start..cut], &mut out)
            .map_err(|e| e.line)?;
        start = cut;
    }
    parser.finish(&mut out).map_err(|e| e.line)?;
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn valid_text_parses_like_the_reference((text, fields) in texts(), cuts in prop::collection::vec(any::<usize>(), 0..6)) {
        let expected = reference(&text, fields).expect("generated text is valid");
        let parsed = parse_agg_trades(&text, fields, 1).map_err(|e| e.to_string());
        prop_assert_eq!(parsed, Ok(expected.clone()));
        prop_assert_eq!(in_pieces(&text, fields, &cuts), Ok(expected));
    }

    #[test]
    fn damaged_text_fails_on_the_same_line_as_the_reference(
        (text, fields) in texts(),
        at in any::<usize>(),
        byte in prop::sample::select(b",.-+0912\n\r eE:xTtFf".to_vec()),
        insert in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let damaged = mutate(&text, at, byte, insert);
        let expected = reference(&damaged, fields);
        let parsed = parse_agg_trades(&damaged, fields, 1).map_err(|e| e.line);
        prop_assert_eq!(&parsed, &expected);
        prop_assert_eq!(in_pieces(&damaged, fields, &cuts), expected);
    }
}
