//! Power-over-time charts for people: one panel per node, a title, watts on the y axis, local
//! time on the x axis, a legend. Drawn as SVG; PNG is the same SVG rasterised (`png.rs`).

mod axis;
pub use axis::local_label;
mod png;
mod svg;

use std::path::Path;

use anyhow::Context as _;

/// A chart of one or more panels sharing the time axis.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

/// A line: `(Unix seconds, watts)` points in time order. A gap in time wider than a few
/// steps is drawn as a gap, not bridged.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (the wall meter, to tell it from the sensors at a glance).
    pub dashed: bool,
}

/// Image size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    /// 1200 wide, 300 pixels per panel plus the title.
    pub fn default_for(panels: usize) -> Size {
        Size {
            width: 1200,
            height: 90 + 300 * panels.max(1) as u32,
        }
    }
}

/// `1200x800`
pub fn parse_size(text: &str) -> Result<Size, String> {
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(|| {
        format!("expected WIDTHxHEIGHT in pixels, such as 1200x800, got {text:?}")
    })?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (200..=10_000).contains(v))
    };
    match (parse(w), parse(h)) {
        (Some(width), Some(height)) => Ok(Size { width, height }),
        _ => Err(format!(
            "expected WIDTHxHEIGHT, each 200 to 10000 pixels, got {text:?}"
        )),
    }
}

/// The image format a file name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Svg,
}

pub fn format_of(path: &Path) -> anyhow::Result<ImageFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(ImageFormat::Png),
        Some("svg") => Ok(ImageFormat::Svg),
        _ => anyhow::bail!(
            "{}: a plot is written as .png or .svg; name the file so",
            path.display()
        ),
    }
}

/// Draw `chart` into `path` (.png or .svg) at `size`.
pub fn write(chart: &Chart, size: Size, path: &Path) -> anyhow::Result<()> {
    let format = format_of(path)?;
    if chart
        .panels
        .iter()
        .all(|p| p.series.iter().all(|s| s.points.is_empty()))
    {
        anyhow::bail!("nothing to plot: no data in the window");
    }
    let text = svg::render(chart, size);
    let bytes = match format {
        ImageFormat::Svg => text.into_bytes(),
        ImageFormat::Png => png::rasterise(&text)?,
    };
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
