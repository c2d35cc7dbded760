//! The channel map: which wall-meter plugs feed which node (one per PSU), on which port.
//!
//! ```toml
//! # node name = { port, channels (one per PSU) and, optionally, the phase of each }
//! [nodes.n51]
//! port = "USB0"
//! channels = [13, 19]
//! phases = [1, 2]
//!
//! [nodes.slurm]
//! port = "USB0"
//! channels = [10, 3]
//! ```
//!
//! Channels are the numbers of the header's `#activepowN` columns (the tags on the cables),
//! resolved by name in each file, never by a fixed index.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::stream::Header;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeChannels {
    /// `USB0`, `USB1`: the suffix of the daily archives' names.
    pub port: String,
    pub channels: Vec<u32>,
    #[serde(default)]
    pub phases: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelMap {
    pub nodes: BTreeMap<String, NodeChannels>,
}

/// A map of thousands of nodes is a few hundred kilobytes.
const MAP_MAX_BYTES: u64 = 4 << 20;

impl ChannelMap {
    pub fn load(path: &Path) -> Result<ChannelMap, String> {
        // Checked before parsing: a 38 MB file took 1.85 GB to refuse.
        let text = aipm_recording::text_file::read_text(path, MAP_MAX_BYTES)?;
        ChannelMap::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parse and check: at least one channel per node, channels 0..=60 (the boxes' range),
    /// one phase per channel when phases are given, no plug claimed by two nodes.
    pub fn parse(text: &str) -> Result<ChannelMap, String> {
        let map: ChannelMap =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().replace('\n', " "))?;
        let mut owners: BTreeMap<(&str, u32), &str> = BTreeMap::new();
        for (node, entry) in &map.nodes {
            if entry.channels.is_empty() {
                return Err(format!("node {node}: no channel"));
            }
            // Grid'5000 numbers its ports from 0; the Lab IA's boxes from 1.
            if let Some(c) = entry.channels.iter().find(|c| **c > 60) {
                return Err(format!(
                    "node {node}: unknown channel {c} (channels are 0 to 60)"
                ));
            }
            if !entry.phases.is_empty() && entry.phases.len() != entry.channels.len() {
                return Err(format!(
                    "node {node}: {} phases for {} channels",
                    entry.phases.len(),
                    entry.channels.len()
                ));
            }
            for &c in &entry.channels {
                if let Some(other) = owners.insert((entry.port.as_str(), c), node) {
                    return Err(format!(
                        "node {node}: channel {c} of {} is already node {other}'s",
                        entry.port
                    ));
                }
            }
        }
        Ok(map)
    }

    pub fn node(&self, name: &str) -> Result<&NodeChannels, String> {
        self.nodes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.keys().map(String::as_str).collect();
            format!(
                "no node {name:?} in the channel map (nodes: {})",
                known.join(", ")
            )
        })
    }
}

/// Check that a file's header has every channel of a node.
pub fn check_header(
    file: &str,
    header: &Header,
    node: &str,
    entry: &NodeChannels,
) -> Result<(), String> {
    match entry
        .channels
        .iter()
        .find(|c| !header.power_columns.contains_key(c))
    {
        Some(c) => Err(format!(
            "{file}: node {node}'s channel {c} is not in the header (no #activepow{c})"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "[nodes.n51]\nport = \"USB0\"\nchannels = [13, 19]\nphases = [1, 2]\n\n[nodes.n1]\nport = \"USB1\"\nchannels = [13, 5]\n";

    #[test]
    fn reads_a_map() {
        let map = ChannelMap::parse(MAP).unwrap();
        assert_eq!(map.node("n51").unwrap().channels, [13, 19]);
        assert_eq!(map.node("n1").unwrap().port, "USB1");
        assert!(map.node("n9").unwrap_err().contains("nodes: n1, n51"));
    }

    #[test]
    fn bad_maps_name_the_entry() {
        let dup = format!("{MAP}\n[nodes.n51]\nport = \"USB0\"\nchannels = [1]\n");
        let err = ChannelMap::parse(&dup).unwrap_err();
        assert!(err.contains("duplicate") && err.contains("n51"), "{err}");
        let err = ChannelMap::parse("[nodes.a]\nport = \"USB0\"\nchannels = [61]\n").unwrap_err();
        assert_eq!(err, "node a: unknown channel 61 (channels are 0 to 60)");
        let err = ChannelMap::parse("[nodes.a]\nport = \"USB0\"\nchannels = [3]\n[nodes.b]\nport = \"USB0\"\nchannels = [3]\n").unwrap_err();
        assert_eq!(err, "node b: channel 3 of USB0 is already node a's");
        let err = ChannelMap::parse("[nodes.a]\nport = \"USB0\"\nchannels = [3]\ncolour = 1\n")
            .unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err =
            ChannelMap::parse("[nodes.a]\nport = \"USB0\"\nchannels = [3, 4]\nphases = [1]\n")
                .unwrap_err();
        assert_eq!(err, "node a: 1 phases for 2 channels");
    }

    #[test]
    fn a_channel_missing_from_a_header_is_named() {
        let header = Header::parse("#timestamp,#frame_is_ok,#U1,#current13,#activepow13").unwrap();
        let map = ChannelMap::parse(MAP).unwrap();
        let err = check_header("day.zip", &header, "n51", map.node("n51").unwrap()).unwrap_err();
        assert_eq!(
            err,
            "day.zip: node n51's channel 19 is not in the header (no #activepow19)"
        );
    }
}
