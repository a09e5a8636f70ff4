//! Attention Playground: the single-page app.

fn main() {
    // A panic in the page stops the callback it happened in and may leave the page half updated:
    // besides the console's report, say so on the page (and keep the message where the e2e
    // suite checks for it).
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        attn_web::browser::report_page_panic(&info.to_string());
    }));
    leptos::mount::mount_to_body(attn_web::app::App);
}
