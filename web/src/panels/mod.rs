//! One module per panel of the page. Each reads the page state (`Ui`) and the worker's
//! controller from context, and only the signals it shows.

pub mod analysis;
pub mod controls;
pub mod cost;
pub mod heatmaps;
pub mod importance;
pub mod input;
pub mod lesson;
pub mod model;
pub mod notices;
pub mod output;
pub mod train;
