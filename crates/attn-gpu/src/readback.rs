//! Reading results back: map a staging buffer, wait for the GPU, copy the bytes out, unmap.
//! Natively the engine drives the device with a bounded `poll`, so a stuck GPU turns into
//! [`GpuError::Timeout`] instead of a hang; in the browser the event loop resolves the map.

use std::time::Duration;

use crate::context::GpuContext;
use crate::error::{GpuError, Result};

/// Maps the first `bytes` bytes of `staging` (a `MAP_READ | COPY_DST` buffer whose copies have
/// been submitted) and returns them as `f32`s.
pub(crate) async fn read_f32(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    timeout: Duration,
) -> Result<Vec<f32>> {
    if bytes == 0 {
        return Ok(Vec::new());
    }
    let (sender, receiver) = futures_channel::oneshot::channel();
    staging.map_async(wgpu::MapMode::Read, 0..bytes, move |result| {
        // The receiver only disappears if the caller gave up; nothing to report then.
        let _ = sender.send(result);
    });
    #[cfg(not(target_arch = "wasm32"))]
    {
        match ctx.device.poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(timeout),
        }) {
            Ok(_) => {}
            Err(wgpu::PollError::Timeout) => return Err(GpuError::Timeout(timeout.as_secs())),
            Err(e) => return Err(GpuError::Readback(e.to_string())),
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = timeout;
    let mapped = receiver
        .await
        .map_err(|_| GpuError::DeviceLost("the readback was cancelled".into()))?;
    if let Err(e) = mapped {
        ctx.check_health()?;
        return Err(GpuError::Readback(e.to_string()));
    }
    let values = {
        let view = staging
            .get_mapped_range(0..bytes)
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        view.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    staging.unmap();
    Ok(values)
}
