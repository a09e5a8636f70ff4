//! Activation steering: a vector added to the residual stream before one layer, scaled by a
//! coefficient, at every position from a chosen one on. The vector is typed as "prompt A minus
//! prompt B" (ActAdd, Turner et al.: the difference of the two prompts' residual streams before
//! that layer — here at each prompt's last position, which in a causal model has read the whole
//! prompt, so prompts of different lengths need no padding), a direction read off the logit lens
//! (the direction the final norm and unembedding read as one token rather than another,
//! [`lens_vector`]), or given directly.
//!
//! [`Steered`] wraps any engine: its forward is the wrapped engine's under steering, so every
//! analysis (predictions, maps, generation, the lens…) runs steered unchanged. It runs two
//! forwards — one to read the stream before the layer, one with that stream plus the vector put
//! back through the hook point — on either engine; it keeps no KV cache, so generation under
//! steering recomputes the text for each token.

use crate::config::Norm;
use crate::engine::api::{AttentionMaps, Engine, LogitRows, Readback};
use crate::engine::forward::unembedding_row;
use crate::engine::hooks::{Captured, HookPoint, Hooks};
use crate::engine::output::Output;
use crate::engine::prepared::PreparedModel;
use crate::error::ModelError;
use crate::model::Model;
use crate::variant::Variant;

/// What to add to the residual stream, and where.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Steering {
    /// The stream before this layer (`0..n_layer`) is steered.
    pub layer: usize,
    /// `[d_model]`: the direction added.
    pub vector: Vec<f32>,
    /// The vector's scale; 0 leaves the model unmodified.
    pub coefficient: f32,
    /// The first position steered (0: every position).
    pub from: usize,
}

impl Steering {
    /// Checks the steering against a model: the layer exists and the vector is as wide as the
    /// stream.
    pub fn check(&self, model: &Model) -> Result<(), ModelError> {
        let c = &model.config;
        if self.layer >= c.n_layer {
            return Err(ModelError::Input(format!(
                "steering before layer {} of a model of {} layers: pick a layer from 0 to {}",
                self.layer,
                c.n_layer,
                c.n_layer - 1
            )));
        }
        if self.vector.len() != c.d_model {
            return Err(ModelError::Input(format!(
                "the steering vector has {} values; the residual stream has {}",
                self.vector.len(),
                c.d_model
            )));
        }
        if !self.coefficient.is_finite() || self.vector.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Input(
                "the steering coefficient and vector must be finite numbers".into(),
            ));
        }
        Ok(())
    }

    /// Whether the steering changes nothing on a `t_len`-token input.
    fn is_idle(&self, t_len: usize) -> bool {
        self.coefficient == 0.0 || self.from >= t_len
    }
}

/// The ActAdd vector before `layer`: the residual stream of `plus` minus that of `minus`, each at
/// its last position, on the engine's current variant.
pub async fn actadd_vector<E: Engine>(
    engine: &mut E,
    plus: &[u32],
    minus: &[u32],
    layer: usize,
) -> Result<Vec<f32>, E::Error> {
    let n_layer = engine.model().config.n_layer;
    if layer >= n_layer {
        return Err(ModelError::Input(format!(
            "steering before layer {layer} of a model of {n_layer} layers"
        ))
        .into());
    }
    if plus.is_empty() || minus.is_empty() {
        return Err(ModelError::Input(
            "both prompts of the steering vector need at least one token".into(),
        )
        .into());
    }
    let a = last_stream_row(engine, plus, layer).await?;
    let b = last_stream_row(engine, minus, layer).await?;
    Ok(a.iter().zip(&b).map(|(x, y)| x - y).collect())
}

/// The unit direction in the residual stream that the logit lens reads as `toward` rather than
/// `away` (or `toward` alone): the difference of their unembedding rows times the final norm's
/// scale, which is how much a step along each coordinate of the normalised stream moves the
/// logit difference; less its mean under LayerNorm, which removes any shift of all coordinates
/// alike. (The norm's `1/σ` only scales it.)
pub fn lens_direction(
    model: &Model,
    toward: u32,
    away: Option<u32>,
) -> Result<Vec<f32>, ModelError> {
    let c = &model.config;
    for token in std::iter::once(toward).chain(away) {
        if token as usize >= c.n_out() {
            return Err(ModelError::Input(format!(
                "output {token} is outside the model's {} outputs",
                c.n_out()
            )));
        }
    }
    if away == Some(toward) {
        return Err(ModelError::Input(
            "the lens direction needs two different tokens (or one alone)".into(),
        ));
    }
    let mut direction = unembedding_row(model, toward as usize);
    if let Some(away) = away {
        let other = unembedding_row(model, away as usize);
        direction.iter_mut().zip(&other).for_each(|(d, o)| *d -= o);
    }
    direction
        .iter_mut()
        .zip(&model.final_norm.weight)
        .for_each(|(d, w)| *d *= w);
    if c.norm == Norm::LayerNorm {
        let mean = direction.iter().sum::<f32>() / direction.len() as f32;
        direction.iter_mut().for_each(|d| *d -= mean);
    }
    let norm = direction.iter().map(|d| d * d).sum::<f32>().sqrt();
    if !(norm > 0.0 && norm.is_finite()) {
        return Err(ModelError::Input(
            "the lens reads no direction for these tokens (their output weights agree)".into(),
        ));
    }
    direction.iter_mut().for_each(|d| *d /= norm);
    Ok(direction)
}

/// The lens direction toward `toward` (away from `away`) as a steering vector before `layer`:
/// [`lens_direction`] scaled to the mean length of the stream's rows before that layer on
/// `tokens`, so that coefficient 1 moves a row by about its own length — the scale an ActAdd
/// vector (a difference of two rows) has too.
pub async fn lens_vector<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    layer: usize,
    (toward, away): (u32, Option<u32>),
) -> Result<Vec<f32>, E::Error> {
    let direction = lens_direction(engine.model(), toward, away)?;
    let c = &engine.model().config;
    let (d, n_layer) = (c.d_model, c.n_layer);
    if layer >= n_layer {
        return Err(ModelError::Input(format!(
            "steering before layer {layer} of a model of {n_layer} layers"
        ))
        .into());
    }
    let stream = stream_before(engine, tokens, layer).await?;
    let rows = stream.chunks_exact(d);
    let count = rows.len().max(1) as f32;
    let length = rows
        .map(|row| row.iter().map(|v| v * v).sum::<f32>().sqrt())
        .sum::<f32>()
        / count;
    Ok(direction.into_iter().map(|v| v * length).collect())
}

/// The residual stream before `layer` at the last position of `tokens`.
async fn last_stream_row<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    layer: usize,
) -> Result<Vec<f32>, E::Error> {
    let d = engine.model().config.d_model;
    let stream = stream_before(engine, tokens, layer).await?;
    Ok(stream[stream.len() - d..].to_vec())
}

/// The residual stream before `layer` on `tokens`, `[T, d_model]`.
async fn stream_before<E: Engine>(
    engine: &mut E,
    tokens: &[u32],
    layer: usize,
) -> Result<Vec<f32>, E::Error> {
    let hooks = Hooks {
        capture: vec![HookPoint::ResidPre { layer }],
        replace: Vec::new(),
    };
    let (_, mut captured) = engine
        .forward_hooked(tokens, &stream_only(), &hooks)
        .await?;
    Ok(captured.swap_remove(0).1)
}

/// A forward that reads back as little as it can: no logits, no maps (only the capture).
fn stream_only() -> Readback {
    Readback {
        logits: LogitRows::None,
        attention: AttentionMaps::None,
        head_out_norms: false,
    }
}

/// An engine under steering: the wrapped engine's forward with [`Steering`] added to the stream.
pub struct Steered<'a, E> {
    pub engine: &'a mut E,
    pub steering: Steering,
}

impl<'a, E: Engine> Steered<'a, E> {
    /// Steers `engine`, after checking the steering against its model.
    pub fn new(engine: &'a mut E, steering: Steering) -> Result<Self, E::Error> {
        steering.check(engine.model())?;
        Ok(Steered { engine, steering })
    }
}

impl<E: Engine> Engine for Steered<'_, E> {
    type Error = E::Error;

    fn model(&self) -> &Model {
        self.engine.model()
    }

    fn variant(&self) -> &Variant {
        self.engine.variant()
    }

    fn prepared(&self) -> &PreparedModel {
        self.engine.prepared()
    }

    fn set_variant(&mut self, variant: &Variant) -> Result<(), E::Error> {
        self.engine.set_variant(variant)
    }

    /// The stream before the steered layer is read (or taken from `hooks`, when they replace
    /// it), the vector times the coefficient added from `from` on, and the forward run with that
    /// stream put back; `hooks`' captures see the steered stream.
    async fn forward_hooked(
        &mut self,
        tokens: &[u32],
        readback: &Readback,
        hooks: &Hooks,
    ) -> Result<(Output, Captured), E::Error> {
        let s = &self.steering;
        if s.is_idle(tokens.len()) {
            return self.engine.forward_hooked(tokens, readback, hooks).await;
        }
        let point = HookPoint::ResidPre { layer: s.layer };
        let given = hooks.replace.iter().find(|(p, _)| *p == point);
        let mut stream = match given {
            Some((_, values)) => values.clone(),
            None => {
                let read = Hooks {
                    capture: vec![point],
                    replace: hooks.replace.clone(),
                };
                let (_, mut captured) = self
                    .engine
                    .forward_hooked(tokens, &stream_only(), &read)
                    .await?;
                captured.remove(0).1
            }
        };
        let d = s.vector.len();
        for row in stream.chunks_exact_mut(d).skip(s.from) {
            row.iter_mut()
                .zip(&s.vector)
                .for_each(|(x, v)| *x += s.coefficient * v);
        }
        let mut steered = hooks.clone();
        steered.replace.retain(|(p, _)| *p != point);
        steered.replace.push((point, stream));
        self.engine.forward_hooked(tokens, readback, &steered).await
    }
}
