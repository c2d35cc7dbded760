//! A cumulative energy column read back (`SOURCE:CHANNEL:energy_uj`): which pairs of rows to
//! integrate, and the readings no counter can make.
//!
//! The column is the energy since the recording began, wrap-corrected by the sampler, so it
//! never goes down and never rises faster than a machine can draw. A reading that does
//! either (a forged or corrupt row, a counter that jumped to 2^64 - 2 for one sample) is an
//! error: counted, and the energy taken across it from the readings on either side, never
//! read as a wrap that lowers or raises the job's energy. An absent reading is bridged the
//! same way: the next reading still holds everything before it.

use crate::samples::{Row, Rows};

/// More than any one channel draws (a whole node's package or GPU is under a few kW).
pub const MAX_CHANNEL_W: u64 = 100_000;

/// The periods to integrate and what was left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterPeriods {
    /// (earlier row, later row): consecutive readings the counter can have made.
    pub pairs: Vec<(usize, usize)>,
    /// Rows whose reading no counter can make.
    pub impossible: Vec<usize>,
}

/// Whether a counter can go from `a` to `b` between these rows: not down, and not faster
/// than [`MAX_CHANNEL_W`] (over at least a millisecond, so that equal times allow a little).
fn possible(a: (u64, u64), b: (u64, u64)) -> bool {
    let ((ta, ea), (tb, eb)) = (a, b);
    let ms = tb.saturating_sub(ta).max(1);
    eb >= ea && eb - ea <= MAX_CHANNEL_W.saturating_mul(ms).saturating_mul(1000)
}

/// The periods of the energy column `energy` (rows timed by column `time`).
pub fn periods(rows: &Rows, time: usize, energy: usize) -> CounterPeriods {
    let reading = |row: Row<'_>| Some((row.get(time)?, row.get(energy)?));
    let mut out = CounterPeriods::default();
    // The last reading taken, and an impossible one that may be a new base.
    let mut anchor: Option<(usize, (u64, u64))> = None;
    let mut pending: Option<(usize, (u64, u64))> = None;
    for (index, row) in rows.iter().enumerate() {
        let Some(value) = reading(row) else {
            continue;
        };
        let Some((a, a_value)) = anchor else {
            anchor = Some((index, value));
            continue;
        };
        if possible(a_value, value) {
            out.pairs.push((a, index));
            anchor = Some((index, value));
            pending = None;
        } else if let Some((p, _)) = pending.filter(|(_, p_value)| possible(*p_value, value)) {
            // Two readings that agree with each other and not with what came before: the
            // counter changed its base (a reset). Go on from them; the jump itself is lost.
            out.pairs.push((p, index));
            anchor = Some((index, value));
            pending = None;
        } else {
            out.impossible.push(index);
            pending = Some((index, value));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of (time ms, energy µJ or absent).
    fn rows(values: &[(u64, Option<u64>)]) -> Rows {
        let mut rows = Rows::new(2);
        for (t, e) in values {
            rows.push(&[Some(*t), *e]);
        }
        rows
    }

    const W40: u64 = 40_000_000; // 40 W over a second, in µJ

    #[test]
    fn a_spike_is_an_error_and_the_energy_is_taken_across_it() {
        let r = rows(&[
            (0, Some(0)),
            (1000, Some(W40)),
            (2000, Some(u64::MAX - 1)),
            (3000, Some(3 * W40)),
            (4000, Some(4 * W40)),
        ]);
        let p = periods(&r, 0, 1);
        assert_eq!(p.pairs, [(0, 1), (1, 3), (3, 4)]);
        assert_eq!(p.impossible, [2]);
    }

    #[test]
    fn absent_readings_are_bridged_and_a_reset_starts_again() {
        let r = rows(&[
            (0, Some(0)),
            (1000, None),
            (2000, Some(2 * W40)),
            (3000, Some(5)),
            (4000, Some(5 + W40)),
        ]);
        let p = periods(&r, 0, 1);
        assert_eq!(p.pairs, [(0, 2), (3, 4)]);
        assert_eq!(p.impossible, [3]);
    }

    #[test]
    fn too_fast_is_impossible_but_a_long_gap_is_not() {
        let r = rows(&[
            (0, Some(0)),
            (1000, Some(MAX_CHANNEL_W * 1_000_000 + 1)),
            (2000, Some(W40)),
            (3_600_000, Some(3600 * W40)),
        ]);
        let p = periods(&r, 0, 1);
        assert_eq!(p.pairs, [(0, 2), (2, 3)]);
        assert_eq!(p.impossible, [1]);
    }
}
