//! Opening a model in the worker: a built-in model fetched by URL, files picked from disk read
//! piece by piece (safetensors tensors decoded as they arrive, sizes checked first), or the
//! training run's weights; the result becomes the worker's session.

use super::state::{take_current, State};
use super::training::trained_model;
use crate::browser::{fetch_bytes, read_in_pieces};
use crate::protocol::{AsJson, ModelSource, Response};
use crate::session::{check_fits, return_engines, PickedFiles, Session};
use attn_model::{head_roles, Model, TensorStream};

pub(super) async fn open(
    state: &State,
    model: u32,
    source: ModelSource,
    title: String,
    description: String,
    examples: Vec<String>,
    reply: &dyn Fn(Response),
) {
    let loaded: Result<Model, String> = match source {
        ModelSource::Url(url) => {
            reply(Response::Loading {
                model,
                what: format!("Loading {title}…"),
            });
            match fetch_bytes(&url).await {
                Ok(bytes) => {
                    Model::from_safetensors_bytes(&bytes).map_err(|e| format!("{title}: {e}"))
                }
                Err(e) => Err(e),
            }
        }
        ModelSource::Trained => trained_model(state).await,
        ModelSource::Files(files) => {
            reply(Response::Loading {
                model,
                what: format!("Reading {title}…"),
            });
            match read_picked(files, &title, &|what| {
                reply(Response::Loading { model, what })
            })
            .await
            {
                Ok(picked) => picked
                    .into_model()
                    .map_err(|e| format!("Could not load {title}: {e}")),
                Err(message) => return reply(Response::OpenFailed { model, message }),
            }
        }
    };
    // Opens overlap (a file picked while the first built-in model still loads): one that
    // finishes after a newer model was installed must not replace it, or the page, which
    // shows the newer one, would get "the model changed" for every run. Numbers only grow.
    if model < state.model.get() {
        return;
    }
    let session = loaded.and_then(|m| Session::new(m, title, description, examples));
    let mut session = match session {
        Ok(s) => s,
        Err(message) => return reply(Response::OpenFailed { model, message }),
    };
    let gpu_refused = match state.gpu.borrow().as_ref() {
        Some(ctx) => session.use_gpu(ctx).err(),
        None => None,
    };
    let opened = Response::Opened {
        model,
        info: session.info.clone(),
        config: session.model.config.clone(),
        tokenizer: AsJson(session.model.tokenizer.clone()),
        classes: session.text.classes.clone(),
        gpu_refused,
    };
    *state.session.borrow_mut() = Some(session);
    state.model.set(model);
    reply(opened);

    // The role badges: one forward of the unmodified model on the worker's engine.
    if let Some(mut pair) = take_current(state, model).await {
        let roles = head_roles(&mut pair.baseline, 0).await;
        return_engines(&state.session, pair);
        reply(Response::Roles {
            model,
            roles: roles.unwrap_or_default(),
        });
    }
}

/// Reads the picked files: text files whole; safetensors files piece by piece into their
/// tensors, checking the declared sizes against the page's memory before any weight is read, and
/// saying how far each file has got.
async fn read_picked(
    files: Vec<(String, String)>,
    title: &str,
    progress: &dyn Fn(String),
) -> Result<PickedFiles, String> {
    const MB: u64 = 1 << 20;
    let mut picked = PickedFiles::default();
    let mut declared = 0u64;
    for (name, url) in files {
        if !name.ends_with(".safetensors") {
            let bytes = fetch_bytes(&url)
                .await
                .map_err(|e| format!("Could not read {name}: {e}"))?;
            let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8 text"))?;
            picked.texts.insert(name, text);
            continue;
        }
        let mut stream = TensorStream::new();
        let (mut counted, mut reported) = (false, 0u64);
        read_in_pieces(&url, |piece, read, total| {
            stream
                .push(piece)
                .map_err(|e| format!("Could not load {name}: {e}"))?;
            if let (false, Some(header)) = (counted, stream.declared()) {
                counted = true;
                declared += header.memory_bytes();
                check_fits(title, declared)?;
            }
            if read >= reported + 16 * MB || Some(read) == total {
                reported = read;
                progress(match total {
                    Some(total) => format!("Reading {name}: {} of {} MB", read / MB, total / MB),
                    None => format!("Reading {name}: {} MB", read / MB),
                });
            }
            Ok(())
        })
        .await
        .map_err(|e| {
            if e.starts_with("Could not") || e.contains("the page holds") {
                e
            } else {
                format!("Could not read {name}: {e}")
            }
        })?;
        let loaded = stream
            .finish()
            .map_err(|e| format!("Could not load {name}: {e}"))?;
        picked.tensors.push((name, loaded));
    }
    Ok(picked)
}
