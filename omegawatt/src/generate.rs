//! A generator of realistic `wattmetre-read` output: given plugs, rate, duration, a power
//! profile per plug and faults to inject, for the tests and the benchmark.

use std::io::Write;

/// Power of a plug over the run: constant, or a linear ramp from `from_w` to `to_w`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub plug: u32,
    pub from_w: f64,
    pub to_w: f64,
}

impl Profile {
    /// `13=200` (constant) or `13=100..300` (a ramp over the run).
    pub fn parse(text: &str) -> Result<Profile, String> {
        let bad =
            || format!("expected PLUG=WATTS or PLUG=FROM..TO (13=200, 13=100..300), got {text:?}");
        let (plug, watts) = text.split_once('=').ok_or_else(bad)?;
        let plug = plug.parse().map_err(|_| bad())?;
        let (from_w, to_w) = match watts.split_once("..") {
            Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
            None => {
                let w = watts.parse().map_err(|_| bad())?;
                (w, w)
            }
        };
        Ok(Profile { plug, from_w, to_w })
    }

    /// Power at `fraction` (0..1) of the run.
    pub fn at(&self, fraction: f64) -> f64 {
        self.from_w + (self.to_w - self.from_w) * fraction
    }

    /// The exact energy over `seconds`, in Wh.
    pub fn energy_wh(&self, seconds: f64) -> f64 {
        (self.from_w + self.to_w) / 2.0 * seconds / 3600.0
    }
}

/// Faults to inject, each every N frames (0: never).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub invalid_every: u64,
    /// A stderr record written in the middle of a row.
    pub log_every: u64,
    pub nan_every: u64,
    /// Start as the Lab IA's files do: a log line, then the header glued to a second one.
    pub glued_header: bool,
    /// End in the middle of a row (an unclean stop).
    pub truncate: bool,
    /// At this frame the clock steps back by `step_back_s` seconds.
    pub step_back_at: Option<u64>,
    pub step_back_s: f64,
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub plugs: u32,
    pub rate_hz: u32,
    pub seconds: u64,
    pub start_s: i64,
    pub profiles: Vec<Profile>,
    /// Zero-mean noise added to each value, ± this many watts (real data compresses about
    /// 5:1, a smooth profile 60:1).
    pub noise_w: f64,
    pub faults: Faults,
}

const LOG: &str = "2023/12/15-07:07:50;Fri Dec 15 07:07:50 2023;ERROR;BAD FRAME CRC\n";

pub fn write(spec: &Spec, out: &mut impl Write) -> std::io::Result<()> {
    let f = &spec.faults;
    if f.glued_header {
        out.write_all(b"2023/12/15-07:07:49;Fri Dec 15 07:07:49 2023;INFO;Starting logging on '/dev/ttyUSB0' plugcount=0\n")?;
        write!(
            out,
            "2023/12/15-07:07:49;Fri Dec 15 07:07:49 2023;INFO;detect '{}' plugs.",
            spec.plugs
        )?;
    }
    out.write_all(b"#timestamp,#frame_is_ok,#U1,#U2,#U3")?;
    for p in 1..=spec.plugs {
        write!(out, ",#current{p},#activepow{p}")?;
    }
    out.write_all(b"\n")?;
    let frames = spec.seconds * u64::from(spec.rate_hz);
    let step_ns = 1_000_000_000 / i64::from(spec.rate_hz);
    let mut power = vec![0.0; spec.plugs as usize];
    let mut line = String::with_capacity(64 + 16 * spec.plugs as usize);
    let mut shift_ns = 0i64;
    // A small linear congruential generator: the same output for the same spec.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut noise = move |amplitude: f64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
    };
    for k in 0..frames {
        if f.step_back_at == Some(k) {
            shift_ns -= (f.step_back_s * 1e9) as i64;
        }
        let t_ns = spec.start_s * 1_000_000_000 + k as i64 * step_ns + shift_ns;
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "{}.{:09}",
            t_ns.div_euclid(1_000_000_000),
            t_ns.rem_euclid(1_000_000_000)
        );
        if f.invalid_every > 0 && k % f.invalid_every == f.invalid_every - 1 {
            line.push_str(",false");
            for _ in 0..(3 + 2 * spec.plugs) {
                line.push(',');
            }
        } else {
            line.push_str(",true,230.0,0.0,0.0");
            let fraction = k as f64 / frames as f64;
            for (p, w) in power.iter_mut().enumerate() {
                let plug = p as u32 + 1;
                let base = spec
                    .profiles
                    .iter()
                    .find(|pr| pr.plug == plug)
                    .map_or(0.0, |pr| pr.at(fraction));
                *w = if spec.noise_w > 0.0 && base > 0.0 {
                    base + noise(spec.noise_w)
                } else {
                    base
                };
            }
            for (p, w) in power.iter().enumerate() {
                if f.nan_every > 0 && p == 0 && k % f.nan_every == f.nan_every - 1 {
                    line.push_str(",0.0,nan");
                } else {
                    let _ = write!(line, ",{:.1},{:.1}", w / 230.0, w);
                }
            }
        }
        let last = k + 1 == frames;
        if last && f.truncate {
            out.write_all(&line.as_bytes()[..line.len() / 2])?;
            return Ok(());
        }
        if f.log_every > 0 && k % f.log_every == f.log_every - 1 {
            let cut = line.len() / 2;
            out.write_all(&line.as_bytes()[..cut])?;
            out.write_all(LOG.as_bytes())?;
            out.write_all(&line.as_bytes()[cut..])?;
        } else {
            out.write_all(line.as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        assert_eq!(
            Profile::parse("13=200"),
            Ok(Profile {
                plug: 13,
                from_w: 200.0,
                to_w: 200.0
            })
        );
        let ramp = Profile::parse("2=100..300").unwrap();
        assert_eq!(ramp.at(0.5), 200.0);
        assert!((ramp.energy_wh(3600.0) - 200.0).abs() < 1e-9);
        assert!(Profile::parse("x=1").unwrap_err().contains("PLUG=WATTS"));
    }
}
