//! The fast path of the samples reader: a well-formed row (fields of decimal digits separated
//! by commas) read eight bytes at a time. A day of a big node's samples is 100 MB of digits;
//! a byte at a time, reading them was a third of `aipm-analyze job`.
//!
//! Eight bytes are loaded as one little-endian word (the first byte lowest): one test tells
//! whether all are digits, and if so one multiply chain turns them into their value. A word
//! that is partly digits says where the digits stop: that byte is the field's delimiter.

/// Marks a value the sampler could not read (an empty field).
pub(crate) const ABSENT: u64 = u64::MAX;

/// More digits than this may not fit in a u64: the careful path decides.
const MAX_DIGITS: u32 = 19;

const ONES: u64 = 0x0101_0101_0101_0101;

const POWERS_OF_TEN: [u64; 9] = [
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

/// Append a well-formed row to `columns` (one value to each): as many fields of decimal
/// digits, empty (absent) except the first, up to a newline or the end of `bytes`. Returns
/// the row's length (its newline excluded); for anything else the columns are left as they
/// were and `None` returned.
pub(crate) fn parse_row(bytes: &[u8], columns: &mut [Vec<u64>]) -> Option<usize> {
    let mut pos = 0;
    let width = columns.len();
    for index in 0..width {
        let parsed = parse_digits(bytes, pos).filter(|&(_, digits, _)| digits > 0 || index > 0);
        let Some((value, digits, end)) = parsed else {
            return undo(columns, index);
        };
        columns[index].push(if digits > 0 { value } else { ABSENT });
        let last = index + 1 == width;
        match bytes.get(end) {
            Some(b',') if !last => pos = end + 1,
            Some(b'\n') | None if last => return Some(end),
            // A field short or over, or a byte that is not ours.
            _ => return undo(columns, index + 1),
        }
    }
    None
}

/// Take back the values a refused row pushed to its first `pushed` columns.
fn undo(columns: &mut [Vec<u64>], pushed: usize) -> Option<usize> {
    for column in &mut columns[..pushed] {
        column.pop();
    }
    None
}

/// The run of digits from `pos`: its value, its length and where it stops.
#[inline]
fn parse_digits(bytes: &[u8], mut pos: usize) -> Option<(u64, u32, usize)> {
    let (mut value, mut digits) = (0u64, 0u32);
    while let Some(word) = bytes.get(pos..pos + 8) {
        let offsets = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ (0x30 * ONES);
        let run = leading_digits(offsets);
        if run == 0 {
            return Some((value, digits, pos));
        }
        digits += run;
        if digits > MAX_DIGITS {
            return None;
        }
        // The run's digits moved to the top of the word, zeros (digit 0) below them: the
        // same number, read as eight digits.
        value = value * POWERS_OF_TEN[run as usize] + eight_digits(offsets << (64 - 8 * run));
        pos += run as usize;
        if run < 8 {
            return Some((value, digits, pos));
        }
    }
    // The last few bytes of the buffer, one at a time.
    while let Some(&b) = bytes.get(pos) {
        let digit = b.wrapping_sub(b'0');
        if digit >= 10 {
            break;
        }
        digits += 1;
        if digits > MAX_DIGITS {
            return None;
        }
        value = value * 10 + u64::from(digit);
        pos += 1;
    }
    Some((value, digits, pos))
}

/// How many of the word's bytes, from the first, are digits; `offsets` holds each byte
/// minus `'0'` (a digit is then 0 to 9).
#[inline]
fn leading_digits(offsets: u64) -> u32 {
    // A byte's high bit is set where it is above 9: either it was already 0x80 or more, or
    // adding 0x76 carries it there. A carry may spill into the next byte only from a byte
    // that is flagged itself, so the first flagged byte is exact.
    let not_digit = (offsets | offsets.wrapping_add(0x76 * ONES)) & (0x80 * ONES);
    not_digit.trailing_zeros() / 8
}

/// The value of eight digits, the first in the lowest byte, each byte 0 to 9.
#[inline]
fn eight_digits(digits: u64) -> u64 {
    // Pairs: each even byte becomes ten times itself plus the next (at most 99, no carry).
    let pairs = digits.wrapping_mul(10).wrapping_add(digits >> 8);
    let mask = 0x0000_00FF_0000_00FF;
    // Pairs 0 and 2 weighted 10^6 and 10^2, pairs 1 and 3 weighted 10^4 and 1, all summed
    // in the upper half of the product.
    let high = (pairs & mask).wrapping_mul(100 + (1_000_000 << 32));
    let low = ((pairs >> 16) & mask).wrapping_mul(1 + (10_000 << 32));
    (high.wrapping_add(low)) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offsets(text: &[u8; 8]) -> u64 {
        u64::from_le_bytes(*text) ^ (0x30 * ONES)
    }

    #[test]
    fn eight_digits_at_once() {
        assert_eq!(eight_digits(offsets(b"12345678")), 12_345_678);
        assert_eq!(eight_digits(offsets(b"00000000")), 0);
        assert_eq!(eight_digits(offsets(b"99999999")), 99_999_999);
        assert_eq!(leading_digits(offsets(b"123,4567")), 3);
        assert_eq!(leading_digits(offsets(b",1234567")), 0);
        assert_eq!(leading_digits(offsets(b"1234567\n")), 7);
        assert_eq!(leading_digits(offsets(b"12345678")), 8);
        assert_eq!(leading_digits(offsets(b"12\xff4567:")), 2);
        assert_eq!(leading_digits(offsets(b"1/345678")), 1);
    }

    /// The one row that `columns` hold, in order.
    fn row(columns: &[Vec<u64>]) -> Vec<u64> {
        assert!(columns.iter().all(|c| c.len() == 1), "{columns:?}");
        columns.iter().map(|c| c[0]).collect()
    }

    #[test]
    fn rows_and_their_ends() {
        let mut columns = vec![Vec::new(); 4];
        assert_eq!(parse_row(b"1,2,,4\n5", &mut columns), Some(6));
        assert_eq!(row(&columns), [1, 2, ABSENT, 4]);
        assert_eq!(parse_row(b"1,2,4\n", &mut columns), None, "a field short");
        assert_eq!(parse_row(b"1,2,3,4,5", &mut columns), None, "a field over");
        assert_eq!(parse_row(b",2,3,4", &mut columns), None, "no time");
        assert_eq!(parse_row(b"1,2,x,4", &mut columns), None, "not a digit");
        assert_eq!(
            parse_row(b"18446744073709551615,1,2,3", &mut columns),
            None,
            "twenty digits go the careful way"
        );
        assert_eq!(
            row(&columns),
            [1, 2, ABSENT, 4],
            "refused rows leave nothing behind"
        );
        let long = b"1700118001000,30000000000,8589934592,,9999999999999999999\n";
        let mut columns = vec![Vec::new(); 5];
        assert_eq!(parse_row(long, &mut columns), Some(long.len() - 1));
        assert_eq!(
            row(&columns),
            [
                1_700_118_001_000,
                30_000_000_000,
                8_589_934_592,
                ABSENT,
                9_999_999_999_999_999_999
            ]
        );
    }

    proptest! {
        /// Any line of digits, commas and a few stray bytes: the fast path reads it as the
        /// plain definition does, or declines.
        #[test]
        fn agrees_with_reading_a_byte_at_a_time(
            line in proptest::collection::vec(
                prop_oneof![
                    8 => proptest::char::range('0', '9'),
                    2 => Just(','),
                    1 => prop_oneof![Just('-'), Just(' '), Just(':'), Just('/'), Just('\n')],
                ],
                0..80,
            ),
            width in 1usize..8,
        ) {
            let line: String = line.into_iter().collect();
            let mut columns = vec![Vec::new(); width];
            let fast = parse_row(line.as_bytes(), &mut columns);
            let out: Vec<u64> = columns.iter().flatten().copied().collect();
            let row = line.split('\n').next().unwrap_or("");
            let expected: Option<Vec<u64>> = row
                .split(',')
                .map(|f| match f {
                    "" => Some(ABSENT),
                    f if f.len() <= 19 && f.bytes().all(|b| b.is_ascii_digit()) => f.parse().ok(),
                    _ => None,
                })
                .collect::<Option<Vec<u64>>>()
                .filter(|v| v.len() == width && v[0] != ABSENT);
            prop_assert_eq!(fast.map(|_| out), expected.clone());
            prop_assert!(columns.iter().all(|c| c.len() == usize::from(fast.is_some())));
            if fast.is_some() {
                prop_assert_eq!(fast, Some(row.len()));
            }
        }
    }
}
