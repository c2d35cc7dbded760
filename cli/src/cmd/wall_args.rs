//! The wall-meter options shared by the commands that join the wall meter's data (`job`,
//! `export`, `compare`).

use std::path::PathBuf;

use aipm_omegawatt::channels::ChannelMap;
use aipm_omegawatt::wall::WallSource;

#[derive(Debug, Clone, clap::Args)]
pub struct WallArgs {
    /// Channel map of the Omegawatt wall meters (TOML, see `omegawatt node --help`): adds
    /// the nodes' energy at the wall. Needs --wall-cache or --wall-archives.
    #[arg(long, value_name = "FILE")]
    pub wall_map: Option<PathBuf>,
    /// The wall meters' per-second cache (`omegawatt index`), read first.
    #[arg(long, value_name = "DIR", requires = "wall_map")]
    pub wall_cache: Option<PathBuf>,
    /// Directory of the wall meters' daily archives (MM_DD_YYYY_USBn.zip), for days the
    /// cache does not hold.
    #[arg(long, value_name = "DIR", requires = "wall_map")]
    pub wall_archives: Option<PathBuf>,
    /// Local hour at which the wall meters' archives close a day.
    #[arg(long, value_name = "HOUR", default_value_t = 7, value_parser = clap::value_parser!(u32).range(0..24))]
    pub rotation_hour: u32,
}

impl WallArgs {
    /// The channel map and where its data is, or `None` without --wall-map.
    pub fn load(&self) -> anyhow::Result<Option<(ChannelMap, WallSource)>> {
        let Some(map) = &self.wall_map else {
            return Ok(None);
        };
        if self.wall_cache.is_none() && self.wall_archives.is_none() {
            anyhow::bail!("--wall-map needs --wall-cache DIR or --wall-archives DIR (or both)");
        }
        let source = WallSource {
            cache: self.wall_cache.clone(),
            archives: self.wall_archives.clone(),
        };
        Ok(Some((
            ChannelMap::load(map).map_err(anyhow::Error::msg)?,
            source,
        )))
    }
}
