//! A [`Variant`] as short, readable URL query parameters, so a shared link reproduces a view:
//! `window=4&top_k=3&beta=1.5&kernel=rf:64:0&ablate=0.1,1.3&mode=mean&drop=1&kv_groups=2&kv_rank=8`.
//!
//! Reading is forgiving: an unknown or invalid value is skipped with a message for the page, and
//! the rest of the link still applies. A value that parses but does not fit the model (a head
//! index out of range, say) is left for [`Variant::validate`] to report.

use crate::variant::{AblationMode, HeadAblation, Kernel, KernelName, Variant};

/// The query keys this module reads and writes.
pub const VARIANT_KEYS: &[&str] = &[
    "window",
    "top_k",
    "beta",
    "kernel",
    "ablate",
    "mode",
    "drop",
    "kv_groups",
    "kv_rank",
    "kv_pca",
    "route",
];

/// Encodes `variant` as `(key, value)` pairs; the unmodified model gives no pairs.
pub fn variant_to_query(variant: &Variant) -> Vec<(String, String)> {
    let v = variant.normalised();
    let mut pairs = Vec::new();
    let mut push = |k: &str, value: String| pairs.push((k.to_string(), value));
    if let Some(w) = v.window {
        push("window", w.to_string());
    }
    if let Some(k) = v.top_k {
        push("top_k", k.to_string());
    }
    if let Some(b) = v.beta {
        push("beta", b.to_string());
    }
    match &v.kernel {
        None | Some(Kernel::Named(KernelName::Softmax)) => {}
        Some(Kernel::Named(KernelName::Linear)) => push("kernel", "linear".into()),
        Some(Kernel::RandomFeatures {
            random_features,
            seed,
            iid,
        }) => push(
            "kernel",
            format!(
                "rf:{random_features}:{seed}{}",
                if *iid { ":iid" } else { "" }
            ),
        ),
    }
    if let Some(h) = &v.heads {
        let list: Vec<String> = h.ablate.iter().map(|[l, h]| format!("{l}.{h}")).collect();
        push("ablate", list.join(","));
        if h.mode == AblationMode::Mean {
            push("mode", "mean".into());
        }
    }
    if let Some(layers) = &v.drop_attention_layers {
        let list: Vec<String> = layers.iter().map(usize::to_string).collect();
        push("drop", list.join(","));
    }
    if let Some(g) = v.kv_groups {
        push("kv_groups", g.to_string());
    }
    if let Some(r) = v.kv_rank {
        push("kv_rank", r.to_string());
    }
    if let Some(r) = v.kv_pca {
        push("kv_pca", r.to_string());
    }
    if let Some(k) = v.route_heads {
        push("route", k.to_string());
    }
    pairs
}

/// Decodes the variant keys among `pairs` (other keys are ignored). Returns the variant and one
/// message per value that could not be read.
pub fn variant_from_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> (Variant, Vec<String>) {
    let mut v = Variant::default();
    let mut problems = Vec::new();
    let mut ablate: Option<Vec<[usize; 2]>> = None;
    let mut mode = AblationMode::Zero;
    for (key, value) in pairs {
        let mut bad = |what: &str| {
            problems.push(format!("ignored {key}={value:?}: {what}"));
        };
        match key {
            "window" | "top_k" | "kv_groups" | "kv_rank" | "kv_pca" | "route" => {
                match value.parse::<usize>() {
                    Ok(n) if n >= 1 => match key {
                        "route" => v.route_heads = Some(n),
                        "window" => v.window = Some(n),
                        "top_k" => v.top_k = Some(n),
                        "kv_groups" => v.kv_groups = Some(n),
                        "kv_pca" => v.kv_pca = Some(n),
                        _ => v.kv_rank = Some(n),
                    },
                    _ => bad("expected a whole number of at least 1"),
                }
            }
            "beta" => match value.parse::<f32>() {
                Ok(b) if b.is_finite() && b > 0.0 => v.beta = Some(b),
                _ => bad("expected a positive number"),
            },
            "kernel" => match parse_kernel(value) {
                Some(k) => v.kernel = Some(k),
                None => bad("expected softmax, linear or rf:FEATURES:SEED"),
            },
            "ablate" => match parse_list(value, parse_head) {
                Some(list) => ablate = Some(list),
                None => bad("expected LAYER.HEAD pairs separated by commas"),
            },
            "mode" => match value {
                "zero" => mode = AblationMode::Zero,
                "mean" => mode = AblationMode::Mean,
                _ => bad("expected zero or mean"),
            },
            "drop" => match parse_list(value, |s| s.parse::<usize>().ok()) {
                Some(list) => v.drop_attention_layers = Some(list),
                None => bad("expected layer numbers separated by commas"),
            },
            _ => {}
        }
    }
    if let Some(ablate) = ablate {
        v.heads = Some(HeadAblation { ablate, mode });
    }
    (v.normalised(), problems)
}

fn parse_kernel(value: &str) -> Option<Kernel> {
    match value {
        "softmax" => Some(Kernel::Named(KernelName::Softmax)),
        "linear" => Some(Kernel::Named(KernelName::Linear)),
        _ => {
            let rest = value.strip_prefix("rf:")?;
            let mut parts = rest.split(':');
            let m = parts.next()?.parse::<usize>().ok().filter(|&m| m >= 1)?;
            let seed = match parts.next() {
                Some(s) => s.parse::<u64>().ok()?,
                None => 0,
            };
            let iid = match parts.next() {
                Some("iid") => true,
                Some(_) => return None,
                None => false,
            };
            parts.next().is_none().then_some(Kernel::RandomFeatures {
                random_features: m,
                seed,
                iid,
            })
        }
    }
}

fn parse_head(s: &str) -> Option<[usize; 2]> {
    let (l, h) = s.split_once('.')?;
    Some([l.parse().ok()?, h.parse().ok()?])
}

fn parse_list<T>(value: &str, item: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(|s| item(s.trim())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: &Variant) -> Variant {
        let pairs = variant_to_query(v);
        let (back, problems) =
            variant_from_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert!(problems.is_empty(), "{problems:?}");
        back
    }

    #[test]
    fn every_field_round_trips() {
        let v = Variant::from_json(
            r#"{"window": 4, "top_k": 3, "beta": 1.5,
                "kernel": {"random_features": 64, "seed": 7},
                "heads": {"ablate": [[1, 3], [0, 1]], "mode": "mean"},
                "drop_attention_layers": [1], "kv_groups": 2, "kv_rank": 8}"#,
        )
        .unwrap();
        assert_eq!(round_trip(&v), v.normalised());
        let linear = Variant::from_json(r#"{"kernel": "linear"}"#).unwrap();
        assert_eq!(round_trip(&linear), linear);
        let pca = Variant::from_json(r#"{"kv_pca": 3, "kv_groups": 2, "route_heads": 2}"#).unwrap();
        assert_eq!(round_trip(&pca), pca);
        let iid =
            Variant::from_json(r#"{"kernel": {"random_features": 16, "seed": 2, "iid": true}}"#)
                .unwrap();
        assert_eq!(round_trip(&iid), iid);
        assert_eq!(variant_to_query(&iid)[0].1, "rf:16:2:iid");
        assert!(parse_kernel("rf:16:2:nope").is_none());
        assert!(variant_to_query(&Variant::default()).is_empty());
    }

    #[test]
    fn the_encoding_is_readable() {
        let v = Variant::from_json(r#"{"heads": {"ablate": [[0, 1], [1, 2]]}, "kv_groups": 1}"#)
            .unwrap();
        let pairs = variant_to_query(&v);
        assert_eq!(
            pairs,
            vec![
                ("ablate".to_string(), "0.1,1.2".to_string()),
                ("kv_groups".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn bad_values_are_skipped_with_a_message() {
        let (v, problems) = variant_from_query([
            ("window", "0"),
            ("beta", "hot"),
            ("kernel", "cosine"),
            ("ablate", "1-2"),
            ("kv_groups", "2"),
            ("model", "induction"),
        ]);
        assert_eq!(v.kv_groups, Some(2));
        assert_eq!(v.window, None);
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("window"));
    }
}
