//! Cumulative energy counters: the only place that does counter arithmetic.
//!
//! A counter is read raw; energy is the difference of two reads. RAPL counters wrap at
//! `max_energy_range_uj` (kernel Documentation/power/powercap/powercap.rst), so a smaller
//! value than the last one is a wrap when the range is known: `range - prev + cur`.

/// One cumulative counter, with the energy counted since it was first read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The value at which the counter wraps to zero; `None` for counters that never wrap.
    range: Option<u64>,
    last_raw: Option<u64>,
    total: u64,
    wraps: u64,
    resets: u64,
    /// Whether a reset counter starts again from zero (NVML's, at a driver reload), so that
    /// its value after a reset is energy since the reset, to be counted.
    from_zero: bool,
}

impl Counter {
    pub fn new(range: Option<u64>) -> Counter {
        Counter {
            range,
            last_raw: None,
            total: 0,
            wraps: 0,
            resets: 0,
            from_zero: false,
        }
    }

    /// This counter, of a kind that starts again from zero when it is reset.
    pub fn from_zero(self) -> Counter {
        Counter {
            from_zero: true,
            ..self
        }
    }

    /// This kind of counter, continuing a count that another sampler left at `total` with
    /// the counter at `last_raw`.
    pub fn resumed(&self, last_raw: u64, total: u64) -> Counter {
        Counter {
            from_zero: self.from_zero,
            ..Counter::resume(self.range, last_raw, total)
        }
    }

    /// Continue a count that another sampler left at `total` with the counter at `last_raw`.
    pub fn resume(range: Option<u64>, last_raw: u64, total: u64) -> Counter {
        Counter {
            last_raw: Some(last_raw),
            total,
            ..Counter::new(range)
        }
    }

    /// Account for a new raw reading and return the total since the first one.
    pub fn update(&mut self, raw: u64) -> u64 {
        if let Some(prev) = self.last_raw {
            if raw >= prev {
                self.total += raw - prev;
            } else {
                match self.range {
                    Some(range) if prev <= range => {
                        self.total += range - prev + raw;
                        self.wraps += 1;
                    }
                    // No range, or a value beyond it: the counter was reset (a driver
                    // reload). The energy before the reset is kept; a counter that starts
                    // again from zero has counted `raw` since, the others start here.
                    _ => {
                        if self.from_zero {
                            self.total += raw;
                        }
                        self.resets += 1;
                    }
                }
            }
        }
        self.last_raw = Some(raw);
        self.total
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn last_raw(&self) -> Option<u64> {
        self.last_raw
    }

    pub fn wraps(&self) -> u64 {
        self.wraps
    }

    pub fn resets(&self) -> u64 {
        self.resets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Real values: a package counter near its range (262143328850 µJ on a Skylake server).
    const RANGE: u64 = 262_143_328_850;

    #[test]
    fn counts_a_wrap_from_real_values() {
        let mut c = Counter::new(Some(RANGE));
        assert_eq!(c.update(RANGE - 1_000), 0);
        assert_eq!(c.update(500), 1_500);
        assert_eq!(c.update(2_500), 3_500);
        assert_eq!(c.wraps(), 1);
    }

    #[test]
    fn a_counter_that_stands_still_adds_nothing() {
        let mut c = Counter::new(Some(RANGE));
        c.update(42);
        assert_eq!(c.update(42), 0);
        assert_eq!(c.wraps(), 0);
    }

    #[test]
    fn a_reset_without_range_is_counted_not_added() {
        let mut c = Counter::new(None);
        c.update(10_000);
        c.update(12_000);
        assert_eq!(c.update(300), 2_000);
        assert_eq!(c.update(400), 2_100);
        assert_eq!(c.resets(), 1);
    }

    #[test]
    fn a_counter_from_zero_counts_what_it_counted_since_its_reset() {
        let mut c = Counter::new(None).from_zero();
        c.update(10_000);
        c.update(12_000);
        assert_eq!(c.update(300), 2_300);
        assert_eq!(c.resets(), 1);
        let mut resumed = c.resumed(400, 2_400);
        assert_eq!(
            resumed.update(100),
            2_500,
            "a resumed counter keeps its kind"
        );
    }

    #[test]
    fn resume_continues_the_total() {
        let mut c = Counter::resume(Some(RANGE), RANGE - 10, 1_000_000);
        assert_eq!(c.update(5), 1_000_015);
    }

    proptest! {
        /// Whatever the path of the counter, with any number of wraps, the total is the true
        /// energy as long as less than one range passes between two reads.
        #[test]
        fn total_is_true_energy_across_random_wraps(
            range in 1_000u64..1_000_000_000,
            start_frac in 0.0f64..1.0,
            steps in proptest::collection::vec(0.0f64..1.0, 1..200),
        ) {
            let mut truth = 0u64;
            let start = (start_frac * range as f64) as u64 % range;
            let mut c = Counter::new(Some(range));
            c.update(start);
            for step in steps {
                let delta = (step * (range - 1) as f64) as u64;
                truth += delta;
                c.update((start + truth) % range);
            }
            prop_assert_eq!(c.total(), truth);
        }
    }
}
