//! Energy sources. Each is found or not found when the sampler is set up, never fatally:
//! [`Found::Absent`] is a node without that hardware, an `Err` a source present but broken.

pub mod nvml;
pub mod powercap;

/// A cumulative energy counter source with fixed channels.
pub trait EnergySource: Send {
    /// Short stable name used in recordings and logs: `rapl`.
    fn name(&self) -> &'static str;
    /// Channel names (`package-0`, `package-0/dram`), fixed when the source is opened.
    fn channels(&self) -> &[String];
    /// The wrap-around value of each channel's counter, if it wraps.
    fn ranges(&self) -> Vec<Option<u64>>;
    /// Read every channel's raw counter in µJ; `None` for a channel that failed this time.
    fn read(&mut self, out: &mut Vec<Option<u64>>, errors: &mut Vec<String>);
    /// Instantaneous values besides energy (`CHANNEL:power_mw`), fixed when opened.
    fn gauges(&self) -> &[String] {
        &[]
    }
    /// Read every gauge, in the order of [`EnergySource::gauges`].
    fn read_gauges(&mut self, _out: &mut Vec<Option<u64>>, _errors: &mut Vec<String>) {}
}

/// The outcome of looking for a source on this node.
pub enum Found<T> {
    Present(T),
    Absent(String),
}
