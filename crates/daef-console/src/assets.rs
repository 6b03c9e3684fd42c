//! The stylesheet and the script, compiled into the binary so the console works offline.

/// `/console/static/console.css`.
pub(crate) const CSS: &str = include_str!("../static/console.css");
/// `/console/static/console.js`.
pub(crate) const JS: &str = include_str!("../static/console.js");
