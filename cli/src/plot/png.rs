//! PNG: the chart's SVG rasterised by resvg, its text set in DejaVu Sans (or another sans font
//! the machine has).

use std::sync::Arc;

use anyhow::Context as _;
use resvg::{tiny_skia, usvg};

/// Fonts tried in order; Debian's fonts-dejavu-core provides the first.
const FONT_FILES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

pub fn rasterise(svg: &str) -> anyhow::Result<Vec<u8>> {
    let mut fonts = usvg::fontdb::Database::new();
    if let Some(data) = FONT_FILES.iter().find_map(|f| std::fs::read(f).ok()) {
        fonts.load_font_data(data);
    }
    if fonts.is_empty() {
        // Unreadable without its text: say so rather than write a picture of bare lines.
        anyhow::bail!(
            "no font found for the PNG's text (looked for {}): install fonts-dejavu-core, or write an .svg",
            FONT_FILES.join(", ")
        );
    }
    let family = fonts
        .faces()
        .next()
        .and_then(|f| f.families.first())
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| "DejaVu Sans".into());
    let options = usvg::Options {
        font_family: family,
        fontdb: Arc::new(fonts),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).context("the chart's SVG")?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).context("an image of that size")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding the PNG")
}
