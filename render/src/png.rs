//! SVG to PNG with resvg (pure Rust: usvg parses, tiny-skia paints), on a white background,
//! with the embedded fonts.

use resvg::tiny_skia;
use resvg::usvg;

use crate::font;

/// Largest PNG drawn, in pixels (about 400 MB of RGBA while painting): a token-specific GPT-2
/// picture at a high scale would otherwise exhaust memory instead of failing with a reason.
pub const MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a drawable SVG: {0}")]
    Svg(#[from] usvg::Error),
    #[error("scale must be a positive finite number, got {0}")]
    Scale(f32),
    #[error("a {width} x {height} px PNG is too large (limit {MAX_PIXELS} pixels): use a smaller scale or fewer edges")]
    TooLarge { width: u64, height: u64 },
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

/// Rasterizes `svg` at `scale` (1.0 = the SVG's px size; AutoCircuit's checked-in PNGs use 4)
/// and encodes it as PNG.
pub fn svg_to_png(svg: &str, scale: f32) -> Result<Vec<u8>, Error> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::Scale(scale));
    }
    let mut opt = usvg::Options {
        font_family: font::FAMILY.to_string(),
        ..usvg::Options::default()
    };
    opt.fontdb = font::database();
    let tree = usvg::Tree::from_str(svg, &opt)?;
    let size = tree.size();
    let width = (size.width() * scale).ceil().max(1.0) as u64;
    let height = (size.height() * scale).ceil().max(1.0) as u64;
    if width * height > MAX_PIXELS || width > u32::MAX as u64 || height > u32::MAX as u64 {
        return Err(Error::TooLarge { width, height });
    }
    let mut pixmap = tiny_skia::Pixmap::new(width as u32, height as u32)
        .ok_or(Error::TooLarge { width, height })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::Encode(e.to_string()))
}
