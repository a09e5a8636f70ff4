//! Attention Playground: the single-page app.

mod app;
mod browser;
mod heatmap;
mod manifest;
mod page_state;
mod runner;
mod session;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
