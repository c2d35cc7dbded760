//! The emissions options shared by every command that reports them.

/// Energy × PUE × the grid's carbon intensity.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct EmissionArgs {
    /// Carbon intensity of the electricity, in gCO2e per kWh, for the emissions estimate
    /// [default: 475, the world average of 2019 (IEA); use your grid's figure].
    #[arg(long, value_name = "G_PER_KWH", default_value_t = 475.0, value_parser = at_least(0.0))]
    pub intensity: f64,
    /// Power usage effectiveness of the data centre (cooling and power losses), at least 1.
    #[arg(long, value_name = "PUE", default_value_t = 1.0, value_parser = at_least(1.0))]
    pub pue: f64,
}

impl EmissionArgs {
    /// Grams of CO2e per joule the job used.
    pub fn g_per_j(&self) -> f64 {
        self.intensity * self.pue / 3.6e6
    }
}

fn at_least(min: f64) -> impl Fn(&str) -> Result<f64, String> + Clone {
    move |text| match text.trim().parse::<f64>() {
        Ok(v) if v >= min && v.is_finite() => Ok(v),
        _ => Err(format!("expected a number of at least {min}, got {text:?}")),
    }
}
