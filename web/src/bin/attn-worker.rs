//! The compute worker's entry point: Trunk builds it as a worker (`index.html`,
//! `data-type="worker"`), and the page spawns it (`controller.rs`).

use attn_web::compute::ComputeWorker;
use gloo_worker::Registrable;

fn main() {
    console_error_panic_hook::set_once();
    ComputeWorker::registrar().register();
}
