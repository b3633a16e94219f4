//! Exact, streaming parser of Binance aggTrades CSV text into fixed-point columns.
//!
//! A line holds 7 fields (futures) or 8 (spot, whose last field `is_best_match` is skipped):
//! `agg_trade_id,price,quantity,first_trade_id,last_trade_id,timestamp,is_buyer_maker[,is_best_match]`.
//! Integers are plain (optional `-`, digits, in `i64`); prices and quantities are plain
//! non-negative decimals parsed exactly to x1e8 (digits past the 8th decimal must be zeros; the
//! value must fit Decimal(18, 8)); prices must be > 0; booleans are `true`/`false` in any case.
//! Lines end in `\n` or `\r\n`; empty lines are skipped. The header line, if any, is the caller's.
//!
//! Errors name the 1-based line, the field and the value. The hot loop parses with a cursor and
//! never allocates; a failing line is re-examined field by field to say exactly what is wrong.

use thiserror::Error;

/// Field names in CSV order (the 8th, spot-only `is_best_match`, is read but not kept).
pub const AGG_TRADE_FIELDS: [&str; 8] = [
    "agg_trade_id",
    "price",
    "quantity",
    "first_trade_id",
    "last_trade_id",
    "timestamp",
    "is_buyer_maker",
    "is_best_match",
];

/// Largest raw value of a Decimal(18, 8): 9_999_999_999.99999999.
const DECIMAL_18_8_MAX: u64 = 999_999_999_999_999_999;
/// Characters of the offending line quoted in an error.
const QUOTE_LIMIT: usize = 200;

/// Parsed aggTrades rows, one vector per field; prices and quantities are fixed point x1e8.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AggTradeColumns {
    pub agg_trade_id: Vec<i64>,
    pub price: Vec<i64>,
    pub quantity: Vec<i64>,
    pub first_trade_id: Vec<i64>,
    pub last_trade_id: Vec<i64>,
    /// As written in the file (milliseconds or microseconds; the caller decides).
    pub timestamp: Vec<i64>,
    pub is_buyer_maker: Vec<bool>,
}

impl AggTradeColumns {
    /// Empty columns with room for `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            agg_trade_id: Vec::with_capacity(rows),
            price: Vec::with_capacity(rows),
            quantity: Vec::with_capacity(rows),
            first_trade_id: Vec::with_capacity(rows),
            last_trade_id: Vec::with_capacity(rows),
            timestamp: Vec::with_capacity(rows),
            is_buyer_maker: Vec::with_capacity(rows),
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.agg_trade_id.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.agg_trade_id.is_empty()
    }

    #[inline(always)]
    fn push(&mut self, row: &Row) {
        self.agg_trade_id.push(row.agg_trade_id);
        self.price.push(row.price);
        self.quantity.push(row.quantity);
        self.first_trade_id.push(row.first_trade_id);
        self.last_trade_id.push(row.last_trade_id);
        self.timestamp.push(row.timestamp);
        self.is_buyer_maker.push(row.is_buyer_maker);
    }

    fn truncate(&mut self, rows: usize) {
        self.agg_trade_id.truncate(rows);
        self.price.truncate(rows);
        self.quantity.truncate(rows);
        self.first_trade_id.truncate(rows);
        self.last_trade_id.truncate(rows);
        self.timestamp.truncate(rows);
        self.is_buyer_maker.truncate(rows);
    }
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvProblem {
    /// The line does not have the expected number of comma-separated fields.
    FieldCount { expected: usize, found: usize },
    /// A kept field is empty.
    Empty,
    /// Not an `i64` written as `-?[0-9]+`.
    NotInteger,
    /// Not a plain non-negative decimal exact at 8 decimals (`[0-9]+(\.[0-9]{0,8}0*)?`).
    NotDecimal,
    /// A decimal too large for Decimal(18, 8).
    DecimalRange,
    /// A price of zero.
    NotPositive,
    /// Not `true` or `false` (any case).
    NotBoolean,
}

/// A line that does not parse: its 1-based number, the field, the value and the line itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {}: {value:?} in line {text:?}", describe(*.problem, .field))]
pub struct CsvError {
    pub line: u64,
    pub field: &'static str,
    pub problem: CsvProblem,
    /// The offending field (the whole line for a field-count error), at most 200 characters.
    pub value: String,
    /// The offending line, at most 200 characters.
    pub text: String,
}

fn describe(problem: CsvProblem, field: &str) -> String {
    match problem {
        CsvProblem::FieldCount { expected, found } => {
            format!("CSV does not parse as aggTrades: expected {expected} fields, found {found}")
        }
        CsvProblem::Empty => format!("empty field {field}"),
        CsvProblem::NotInteger => format!("{field} is not Int64"),
        CsvProblem::NotDecimal => {
            format!("{field} is not a non-negative decimal with at most 8 decimals")
        }
        CsvProblem::DecimalRange => format!("{field} does not fit Decimal(18, 8)"),
        CsvProblem::NotPositive => format!("{field} must be > 0"),
        CsvProblem::NotBoolean => format!("{field} is not Boolean"),
    }
}

/// Parser of aggTrades CSV text fed in arbitrary pieces (e.g. as it is inflated).
///
/// Complete lines of each piece are parsed at once; a trailing partial line is kept until the
/// next piece (or [`finish`](Self::finish)) completes it. After an error the parser is spent.
#[derive(Debug, Clone)]
pub struct AggTradesParser {
    fields: usize,
    next_line: u64,
    carry: Vec<u8>,
    stats: ParseStats,
}

/// What the rows parsed so far look like, so the caller can skip whole-column checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseStats {
    /// Rows parsed.
    pub rows: u64,
    /// Whether `(timestamp, agg_trade_id)` strictly increases from row to row.
    pub sorted: bool,
    /// `(timestamp, agg_trade_id)` of the first row.
    pub first: Option<(i64, i64)>,
    /// `(timestamp, agg_trade_id)` of the last row.
    pub last: Option<(i64, i64)>,
    /// Smallest and largest timestamp.
    pub timestamp_min: i64,
    pub timestamp_max: i64,
}

impl Default for ParseStats {
    fn default() -> Self {
        Self {
            rows: 0,
            sorted: true,
            first: None,
            last: None,
            timestamp_min: i64::MAX,
            timestamp_max: i64::MIN,
        }
    }
}

impl AggTradesParser {
    /// A parser of lines with `fields` (7 or 8) fields; the first line fed is line `first_line`.
    pub fn new(fields: usize, first_line: u64) -> Result<Self, String> {
        if !(7..=8).contains(&fields) {
            return Err(format!("aggTrades lines have 7 or 8 fields, not {fields}"));
        }
        Ok(Self {
            fields,
            next_line: first_line,
            carry: Vec::new(),
            stats: ParseStats::default(),
        })
    }

    /// Order and timestamp range of the rows parsed so far.
    pub fn stats(&self) -> ParseStats {
        self.stats
    }

    /// The number the next line will have.
    pub fn next_line(&self) -> u64 {
        self.next_line
    }

    /// Parse the complete lines of `data` (after any partial line carried over) into `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut AggTradeColumns) -> Result<(), CsvError> {
        let mut rest = data;
        if !self.carry.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&rest[..=end]);
            self.parse_lines(&line, out)?;
            rest = &rest[end + 1..];
        }
        match rest.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                self.parse_lines(&rest[..=last], out)?;
                self.carry.extend_from_slice(&rest[last + 1..]);
            }
            None => self.carry.extend_from_slice(rest),
        }
        Ok(())
    }

    /// Parse the last line if it had no line break.
    pub fn finish(&mut self, out: &mut AggTradeColumns) -> Result<(), CsvError> {
        let line = std::mem::take(&mut self.carry);
        self.parse_lines(&line, out)
    }

    /// Parse `data`, whole lines (the last one may lack its `\n`), appending to `out`.
    fn parse_lines(&mut self, data: &[u8], out: &mut AggTradeColumns) -> Result<(), CsvError> {
        let rows_before = out.len();
        // Reserve from an estimate of the line length (the smallest real lines are ~45 bytes).
        out_reserve(out, data.len() / 48 + 1);
        let mut cursor = Cursor { data, pos: 0 };
        let mut lines = 0_u64;
        let mut stats = self.stats;
        let mut last = stats.last.unwrap_or((i64::MIN, i64::MIN));
        while cursor.pos < data.len() {
            let start = cursor.pos;
            if cursor.skip_empty_line() {
                lines += 1;
                continue;
            }
            match parse_row(&mut cursor, self.fields) {
                Some(row) => {
                    let key = (row.timestamp, row.agg_trade_id);
                    stats.sorted &= key > last;
                    last = key;
                    stats.timestamp_min = stats.timestamp_min.min(row.timestamp);
                    stats.timestamp_max = stats.timestamp_max.max(row.timestamp);
                    out.push(&row);
                    lines += 1;
                }
                None => {
                    out.truncate(rows_before);
                    return Err(diagnose(data, start, self.fields, self.next_line + lines));
                }
            }
        }
        self.next_line += lines;
        let rows = (out.len() - rows_before) as u64;
        if rows > 0 {
            if stats.rows == 0 {
                stats.first = Some((out.timestamp[rows_before], out.agg_trade_id[rows_before]));
            }
            stats.rows += rows;
            stats.last = Some(last);
        }
        self.stats = stats;
        Ok(())
    }
}

fn out_reserve(out: &mut AggTradeColumns, rows: usize) {
    out.agg_trade_id.reserve(rows);
    out.price.reserve(rows);
    out.quantity.reserve(rows);
    out.first_trade_id.reserve(rows);
    out.last_trade_id.reserve(rows);
    out.timestamp.reserve(rows);
    out.is_buyer_maker.reserve(rows);
}

/// Parse a whole aggTrades CSV text (no header) whose first line is `first_line`.
pub fn parse_agg_trades(
    data: &[u8],
    fields: usize,
    first_line: u64,
) -> Result<AggTradeColumns, CsvError> {
    let mut parser = AggTradesParser::new(fields, first_line).map_err(|reason| CsvError {
        line: first_line,
        field: "",
        problem: CsvProblem::FieldCount {
            expected: fields,
            found: fields,
        },
        value: reason,
        text: String::new(),
    })?;
    let mut out = AggTradeColumns::with_capacity(data.len() / 80 + 1);
    parser.feed(data, &mut out)?;
    parser.finish(&mut out)?;
    Ok(out)
}

struct Row {
    agg_trade_id: i64,
    price: i64,
    quantity: i64,
    first_trade_id: i64,
    last_trade_id: i64,
    timestamp: i64,
    is_buyer_maker: bool,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// The current byte; the end of the data reads as a line break.
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.data.get(self.pos).copied().unwrap_or(b'\n')
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        if self.peek() == byte {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Consume `\n`, `\r\n` or the end of the data.
    #[inline(always)]
    fn end_of_line(&mut self) -> Option<()> {
        if self.peek() == b'\r' {
            self.pos += 1;
        }
        if self.pos >= self.data.len() {
            return Some(());
        }
        self.eat(b'\n')
    }

    fn skip_empty_line(&mut self) -> bool {
        let start = self.pos;
        if self.end_of_line().is_some() {
            return true;
        }
        self.pos = start;
        false
    }

    /// The 8 bytes at the cursor, if there are 8 left.
    #[inline(always)]
    fn word(&self) -> Option<u64> {
        let bytes = self.data.get(self.pos..self.pos + 8)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }

    /// Digits (at least one) as an unsigned value; `None` on overflow of `u64`.
    /// Eight bytes at a time where the data allows (SWAR), else byte by byte.
    #[inline(always)]
    fn digits(&mut self) -> Option<(u64, usize)> {
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(word) = self.word() {
            let run = digit_run(word);
            if run > 0 {
                value = value
                    .checked_mul(POW10[run])?
                    .checked_add(eight_digits(word << (8 * (8 - run))))?;
                self.pos += run;
            }
            if run < 8 {
                let count = self.pos - start;
                return (count > 0).then_some((value, count));
            }
        }
        loop {
            let digit = self.peek().wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
            self.pos += 1;
        }
        let count = self.pos - start;
        (count > 0).then_some((value, count))
    }

    #[inline(always)]
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-').is_some();
        let (value, _) = self.digits()?;
        if negative {
            // -(2^63) is the smallest i64.
            (value <= 1 << 63).then(|| (value as i64).wrapping_neg())
        } else {
            i64::try_from(value).ok()
        }
    }

    /// A plain non-negative decimal, exact at 8 decimals and within Decimal(18, 8).
    #[inline(always)]
    fn decimal(&mut self) -> Option<i64> {
        let (whole, _) = self.digits()?;
        let mut fraction: u64 = 0;
        if self.eat(b'.').is_some() {
            // Up to 8 significant decimals, then only zeros.
            let start = self.pos;
            let count = match self.word() {
                Some(word) => {
                    let run = digit_run(word);
                    if run > 0 {
                        fraction = eight_digits(word << (8 * (8 - run)));
                    }
                    self.pos += run;
                    run
                }
                None => {
                    while self.pos - start < 8 && self.peek().is_ascii_digit() {
                        fraction = fraction * 10 + u64::from(self.peek() - b'0');
                        self.pos += 1;
                    }
                    self.pos - start
                }
            };
            if count == 8 {
                while self.peek() == b'0' {
                    self.pos += 1;
                }
                if self.peek().is_ascii_digit() {
                    return None;
                }
            }
            fraction *= POW10[8 - count];
        }
        let raw = whole.checked_mul(100_000_000)?.checked_add(fraction)?;
        (raw <= DECIMAL_18_8_MAX).then_some(raw as i64)
    }

    #[inline(always)]
    fn boolean(&mut self) -> Option<bool> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let is = |word: &[u8]| {
            rest.get(..word.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(word))
        };
        if is(b"true") {
            self.pos += 4;
            Some(true)
        } else if is(b"false") {
            self.pos += 5;
            Some(false)
        } else {
            None
        }
    }

    /// Skip a field's bytes up to the line break (a comma fails: too many fields). A `\r`
    /// before the `\n` is left to [`end_of_line`](Self::end_of_line); any other is content.
    #[inline(always)]
    fn skip_last_field(&mut self) -> Option<()> {
        while let Some(&byte) = self.data.get(self.pos) {
            match byte {
                b'\n' => break,
                b'\r' if self.data.get(self.pos + 1).is_none_or(|&b| b == b'\n') => break,
                b',' => return None,
                _ => self.pos += 1,
            }
        }
        Some(())
    }
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// How many of the 8 bytes of `word` (little endian, first byte lowest) are ASCII digits
/// before the first non-digit.
#[inline(always)]
fn digit_run(word: u64) -> usize {
    const LOW: u64 = 0x0F0F_0F0F_0F0F_0F0F;
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // A byte is a digit iff its high nibble is 3 and its low nibble + 6 does not carry.
    let carry = ((word & LOW) + 0x0606_0606_0606_0606) & HIGH;
    let other = ((word & HIGH) ^ 0x3030_3030_3030_3030) | carry;
    (other.trailing_zeros() / 8) as usize
}

/// The value of 8 ASCII digits in `word` (first byte most significant); zero bytes count as
/// leading zeros.
#[inline(always)]
fn eight_digits(word: u64) -> u64 {
    let v = word & 0x0F0F_0F0F_0F0F_0F0F;
    let v = (v.wrapping_mul(10 << 8 | 1)) >> 8;
    let v = ((v & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 << 16 | 1)) >> 16;
    ((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 << 32 | 1)) >> 32
}

/// The fast path: one line, or `None` if anything is off (then [`diagnose`] says what).
#[inline(always)]
fn parse_row(c: &mut Cursor<'_>, fields: usize) -> Option<Row> {
    let agg_trade_id = c.integer()?;
    c.eat(b',')?;
    let price = c.decimal()?;
    c.eat(b',')?;
    let quantity = c.decimal()?;
    c.eat(b',')?;
    let first_trade_id = c.integer()?;
    c.eat(b',')?;
    let last_trade_id = c.integer()?;
    c.eat(b',')?;
    let timestamp = c.integer()?;
    c.eat(b',')?;
    let is_buyer_maker = c.boolean()?;
    if fields == 8 {
        c.eat(b',')?;
        c.skip_last_field()?;
    }
    c.end_of_line()?;
    if price == 0 {
        return None;
    }
    Some(Row {
        agg_trade_id,
        price,
        quantity,
        first_trade_id,
        last_trade_id,
        timestamp,
        is_buyer_maker,
    })
}

fn quote(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.into_owned(),
    }
}

/// Say what is wrong with the line starting at `start` (which [`parse_row`] refused).
fn diagnose(data: &[u8], start: usize, fields: usize, line: u64) -> CsvError {
    let end = data[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(data.len(), |n| start + n);
    let text = data[start..end]
        .strip_suffix(b"\r")
        .unwrap_or(&data[start..end]);
    let error = |field: &'static str, problem: CsvProblem, value: &[u8]| CsvError {
        line,
        field,
        problem,
        value: quote(value),
        text: quote(text),
    };
    let parts: Vec<&[u8]> = text.split(|&b| b == b',').collect();
    if parts.len() != fields {
        let problem = CsvProblem::FieldCount {
            expected: fields,
            found: parts.len(),
        };
        return error("", problem, text);
    }
    for (index, (&part, &field)) in parts
        .iter()
        .zip(AGG_TRADE_FIELDS.iter())
        .enumerate()
        .take(7)
    {
        let whole = |parsed: Option<()>, c: &Cursor<'_>| parsed.is_some() && c.pos == part.len();
        let mut c = Cursor { data: part, pos: 0 };
        if part.is_empty() {
            return error(field, CsvProblem::Empty, part);
        }
        let problem = match index {
            1 | 2 => match c.decimal() {
                Some(0) if index == 1 && c.pos == part.len() => Some(CsvProblem::NotPositive),
                Some(_) if c.pos == part.len() => None,
                _ => Some(decimal_problem(part)),
            },
            6 => (!whole(c.boolean().map(|_| ()), &c)).then_some(CsvProblem::NotBoolean),
            _ => (!whole(c.integer().map(|_| ()), &c)).then_some(CsvProblem::NotInteger),
        };
        if let Some(problem) = problem {
            return error(field, problem, part);
        }
    }
    // Unreachable in practice: every refusal of the fast path is named above.
    error(
        "",
        CsvProblem::FieldCount {
            expected: fields,
            found: parts.len(),
        },
        text,
    )
}

/// Why a decimal field failed: its form, or (well formed) its size.
fn decimal_problem(part: &[u8]) -> CsvProblem {
    let (whole, fraction) = match part.iter().position(|&b| b == b'.') {
        Some(dot) => (&part[..dot], &part[dot + 1..]),
        None => (part, &[][..]),
    };
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let exact = fraction.len() <= 8 || fraction[8..].iter().all(|&b| b == b'0');
    if whole.is_empty() || !digits(whole) || !digits(fraction) || !exact {
        CsvProblem::NotDecimal
    } else {
        CsvProblem::DecimalRange
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPOT: &[u8] = b"10,100.5,1.25,100,101,1723075200000,True,True\n\
        11,100.50000001,0.00000001,102,102,1723075200001,False,True\n\
        12,99.99999999,3,103,105,1723075200001,true,False\n";

    fn parse(data: &[u8], fields: usize) -> Result<AggTradeColumns, CsvError> {
        parse_agg_trades(data, fields, 1)
    }

    fn problem(data: &[u8], fields: usize) -> (u64, &'static str, CsvProblem) {
        let err = parse(data, fields).unwrap_err();
        (err.line, err.field, err.problem)
    }

    #[test]
    fn parses_spot_lines_exactly() {
        let c = parse(SPOT, 8).unwrap();
        assert_eq!(c.agg_trade_id, [10, 11, 12]);
        assert_eq!(c.price, [10_050_000_000, 10_050_000_001, 9_999_999_999]);
        assert_eq!(c.quantity, [125_000_000, 1, 300_000_000]);
        assert_eq!(c.first_trade_id, [100, 102, 103]);
        assert_eq!(c.last_trade_id, [101, 102, 105]);
        assert_eq!(
            c.timestamp,
            [1_723_075_200_000, 1_723_075_200_001, 1_723_075_200_001]
        );
        assert_eq!(c.is_buyer_maker, [true, false, true]);
    }

    #[test]
    fn futures_lines_crlf_blank_lines_and_a_missing_final_break() {
        let text = b"1,2.5,3.,4,5,6,false\r\n\r\n\n7,8,9.000000000000,10,11,12,TRUE";
        let c = parse(text, 7).unwrap();
        assert_eq!(c.price, [250_000_000, 800_000_000]);
        assert_eq!(c.quantity, [300_000_000, 900_000_000]);
        assert_eq!(c.is_buyer_maker, [false, true]);
        assert!(parse(b"", 7).unwrap().is_empty());
        assert_eq!(
            parse(b"-5,1,1,1,1,-9223372036854775808,true\n", 7)
                .unwrap()
                .timestamp,
            [i64::MIN]
        );
    }

    #[test]
    fn swar_digit_helpers() {
        let word = |s: &[u8]| {
            let mut b = [b'x'; 8];
            b[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(b)
        };
        assert_eq!(digit_run(word(b"12345678")), 8);
        assert_eq!(digit_run(word(b"123,")), 3);
        assert_eq!(digit_run(word(b",1")), 0);
        for bad in [b'/', b':', b' ', 0xB0, 0x39 + 0x80, 0x3A] {
            assert_eq!(digit_run(word(&[b'1', bad])), 1, "byte {bad:#x}");
        }
        assert_eq!(eight_digits(word(b"12345678")), 12_345_678);
        assert_eq!(eight_digits(word(b"00000009")), 9);
        assert_eq!(eight_digits(word(b"907") << 40), 907);
    }

    #[test]
    fn feeding_in_pieces_equals_parsing_at_once() {
        let whole = parse(SPOT, 8).unwrap();
        for split in [1, 7, 46, 47, 60, SPOT.len() - 1] {
            let mut parser = AggTradesParser::new(8, 1).unwrap();
            let mut out = AggTradeColumns::default();
            parser.feed(&SPOT[..split], &mut out).unwrap();
            parser.feed(&SPOT[split..], &mut out).unwrap();
            parser.finish(&mut out).unwrap();
            assert_eq!(out, whole, "split at {split}");
            assert_eq!(parser.next_line(), 4);
            let stats = parser.stats();
            assert_eq!((stats.rows, stats.sorted), (3, true));
            assert_eq!(
                (stats.first, stats.last),
                (Some((1_723_075_200_000, 10)), Some((1_723_075_200_001, 12)))
            );
            assert_eq!(
                (stats.timestamp_min, stats.timestamp_max),
                (1_723_075_200_000, 1_723_075_200_001)
            );
        }
    }

    #[test]
    fn errors_name_line_field_and_problem() {
        let bad = |line: &[u8]| {
            let mut text = SPOT.to_vec();
            text.extend_from_slice(line);
            problem(&text, 8)
        };
        use CsvProblem::*;
        assert_eq!(
            bad(b"13,1.123456789,1,1,1,1,True,True"),
            (4, "price", NotDecimal)
        );
        assert_eq!(bad(b"13,1e3,1,1,1,1,True,True"), (4, "price", NotDecimal));
        assert_eq!(bad(b"13,-1,1,1,1,1,True,True"), (4, "price", NotDecimal));
        assert_eq!(bad(b"13,.5,1,1,1,1,True,True"), (4, "price", NotDecimal));
        assert_eq!(
            bad(b"13,0.000,1,1,1,1,True,True"),
            (4, "price", NotPositive)
        );
        assert_eq!(bad(b"13,1,-2,1,1,1,True,True"), (4, "quantity", NotDecimal));
        assert_eq!(bad(b"13,1,,1,1,1,True,True"), (4, "quantity", Empty));
        assert_eq!(
            bad(b"13,12345678901,1,1,1,1,True,True"),
            (4, "price", DecimalRange)
        );
        assert_eq!(
            bad(b"13,1,1,1,1,1,maybe,True"),
            (4, "is_buyer_maker", NotBoolean)
        );
        assert_eq!(
            bad(b"13,1,1,1,1,1,Truest,True"),
            (4, "is_buyer_maker", NotBoolean)
        );
        assert_eq!(
            bad(b"13,1,1,1,1x6,1,True,True"),
            (4, "last_trade_id", NotInteger)
        );
        assert_eq!(
            bad(b"9223372036854775808,1,1,1,1,1,True,True"),
            (4, "agg_trade_id", NotInteger)
        );
        assert_eq!(
            bad(b"+1,1,1,1,1,1,True,True"),
            (4, "agg_trade_id", NotInteger)
        );
        assert_eq!(
            bad(b"13,1,1,1,1,1,True,True,9"),
            (
                4,
                "",
                FieldCount {
                    expected: 8,
                    found: 9
                }
            )
        );
        assert_eq!(
            bad(b"13,1,1,1,1,1,True"),
            (
                4,
                "",
                FieldCount {
                    expected: 8,
                    found: 7
                }
            )
        );
        assert_eq!(
            bad(b" 13,1,1,1,1,1,True,True"),
            (4, "agg_trade_id", NotInteger)
        );
        let err = parse(b"1,1,1,1,1,1,True\n\n2,x,1,1,1,1,True\n", 7).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(
            err.to_string(),
            "line 3: price is not a non-negative decimal with at most 8 decimals: \"x\" in line \
             \"2,x,1,1,1,1,True\""
        );
    }

    #[test]
    fn order_is_tracked_across_pieces() {
        let mut parser = AggTradesParser::new(7, 1).unwrap();
        let mut out = AggTradeColumns::default();
        parser
            .feed(b"1,1,1,1,1,5,true\n2,1,1,1,1,5,true\n", &mut out)
            .unwrap();
        assert!(parser.stats().sorted);
        parser.feed(b"2,1,1,1,1,5,true\n", &mut out).unwrap();
        let stats = parser.stats();
        assert!(
            !stats.sorted,
            "a repeated (timestamp, id) is not strictly increasing"
        );
        assert_eq!(stats.rows, 3);
        let mut parser = AggTradesParser::new(7, 1).unwrap();
        parser
            .feed(b"9,1,1,1,1,4,true\n1,1,1,1,1,6,true\n", &mut out)
            .unwrap();
        assert!(
            parser.stats().sorted,
            "a later timestamp may have a smaller id"
        );
        parser.feed(b"10,1,1,1,1,3,true\n", &mut out).unwrap();
        assert!(!parser.stats().sorted);
        assert_eq!(
            (parser.stats().timestamp_min, parser.stats().timestamp_max),
            (3, 6)
        );
    }

    #[test]
    fn line_numbers_continue_across_pieces() {
        let mut parser = AggTradesParser::new(7, 2).unwrap();
        let mut out = AggTradeColumns::default();
        parser
            .feed(b"1,1,1,1,1,1,true\n2,1,1,1,1,1,tr", &mut out)
            .unwrap();
        let err = parser
            .feed(b"ue\n3,1,1,1,1,1,nope\n", &mut out)
            .unwrap_err();
        assert_eq!((err.line, err.field), (4, "is_buyer_maker"));
        assert_eq!(out.len(), 2);
        assert!(AggTradesParser::new(6, 1).is_err());
    }
}
