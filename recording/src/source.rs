//! The sources a recording names, and what became of each: the `name` and `status` of the
//! metadata's `sources`. The sampler writes them and the reports read them; one spelling
//! each, here, so that a writer and a reader cannot drift apart.

use serde::{Deserialize, Serialize};

/// The CPU packages' and DRAM's counters (powercap or the perf `power` PMU).
pub const RAPL: &str = "rapl";
/// NVIDIA's GPUs.
pub const NVML: &str = "nvml";

/// What became of a source on this node, spelt in the metadata as before it was a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Found and read: its channels are columns of the samples file.
    Found,
    /// Not on this node (no such hardware, no driver): nothing to measure.
    Absent,
    /// Present but unreadable: its energy is missing, and the detail says why.
    Failed,
    /// A state this reader does not know, from a newer sampler or a hand-edited file: the
    /// recording is still read, and the source's energy is not counted as found.
    #[serde(other)]
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Found => "found",
            State::Absent => "absent",
            State::Failed => "failed",
            State::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::State;

    #[test]
    fn states_are_spelt_in_the_metadata_as_before() {
        for state in [State::Found, State::Absent, State::Failed] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
            assert_eq!(serde_json::from_str::<State>(&json).unwrap(), state);
        }
        assert_eq!(
            serde_json::from_str::<State>("\"lost\"").unwrap(),
            State::Unknown,
            "a newer sampler's state must not make the recording unreadable"
        );
    }
}
