//! The fonts the PNG is drawn with. They are compiled in (DejaVu Sans, regular and bold; see
//! `fonts/LICENSE-DejaVu.txt`) because CI machines and containers often have no fonts at all,
//! and resvg draws no text without one.

use std::sync::{Arc, OnceLock};

use resvg::usvg::fontdb;

/// The family name the SVG asks for first.
pub const FAMILY: &str = "DejaVu Sans";

const REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
const BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// A font database with the embedded fonts, built once per process (parsing the font tables
/// is cheap but not free, and every PNG needs it).
pub fn database() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_font_data(REGULAR.to_vec());
        db.load_font_data(BOLD.to_vec());
        // Generic families (`sans-serif`, and whatever else an SVG names) resolve to DejaVu.
        db.set_sans_serif_family(FAMILY);
        db.set_serif_family(FAMILY);
        db.set_monospace_family(FAMILY);
        Arc::new(db)
    })
    .clone()
}
