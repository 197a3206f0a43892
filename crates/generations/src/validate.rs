//! What a logged generation may hold: every problem is named by its field
//! (`generations[3].model`), and large texts are cut to the limit and flagged.

use llmops_core::{FieldViolation, ServiceError, NUL_REFUSED};

use crate::model::{Generation, GenerationStatus};

/// Generations per `LogGenerations` call at most.
pub const MAX_BATCH: usize = 1000;
/// Longest id, in bytes.
const MAX_ID_BYTES: usize = 128;
/// Longest name-like field (prompt, version, model, provider, user...), in bytes.
const MAX_NAME_BYTES: usize = 256;
/// Metadata entries at most, and the longest key and value in bytes.
const MAX_METADATA: usize = 64;
const MAX_METADATA_KEY_BYTES: usize = 256;
const MAX_METADATA_VALUE_BYTES: usize = 4096;
/// Longest error text kept, in bytes (cut, not refused).
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Checks `batch` and caps its texts at `max_text_bytes`; every problem is listed.
pub(crate) fn check_batch(
    batch: &mut [Generation],
    max_text_bytes: usize,
) -> Result<(), ServiceError> {
    let mut problems = Vec::new();
    if batch.is_empty() {
        problems.push(FieldViolation::new(
            "generations",
            "at least one is required",
        ));
    }
    if batch.len() > MAX_BATCH {
        problems.push(FieldViolation::new(
            "generations",
            format!("{} given; at most {MAX_BATCH} per call", batch.len()),
        ));
    }
    for (i, generation) in batch.iter_mut().enumerate() {
        check_generation(
            generation,
            &format!("generations[{i}]"),
            max_text_bytes,
            &mut problems,
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::InvalidArgument(problems))
    }
}

/// Checks one generation (its problems named under `at`) and caps its texts.
pub(crate) fn check_generation(
    generation: &mut Generation,
    at: &str,
    max_text_bytes: usize,
    problems: &mut Vec<FieldViolation>,
) {
    check_one(generation, at, problems);
    cap(
        &mut generation.input,
        max_text_bytes,
        &mut generation.input_truncated,
    );
    cap(
        &mut generation.output,
        max_text_bytes,
        &mut generation.output_truncated,
    );
    let mut cut = false;
    cap(&mut generation.error, MAX_ERROR_BYTES, &mut cut);
    if !generation.error.is_empty() {
        generation.status = GenerationStatus::Error;
    }
}

fn check_one(generation: &Generation, at: &str, problems: &mut Vec<FieldViolation>) {
    let mut bad = |field: &str, why: String| {
        problems.push(FieldViolation::new(format!("{at}.{field}"), why));
    };
    if generation.id.len() > MAX_ID_BYTES {
        bad("id", format!("longer than {MAX_ID_BYTES} bytes"));
    } else if generation.id.chars().any(char::is_control) {
        bad("id", "holds control characters".to_owned());
    }
    for (field, value) in [
        ("render_id", &generation.render_id),
        ("prompt_name", &generation.prompt_name),
        ("prompt_version", &generation.prompt_version),
        ("experiment_id", &generation.experiment_id),
        ("variant_id", &generation.variant_id),
        ("user_id", &generation.user_id),
        ("model", &generation.model),
        ("provider", &generation.provider),
    ] {
        if value.len() > MAX_NAME_BYTES {
            bad(field, format!("longer than {MAX_NAME_BYTES} bytes"));
        } else if value.contains('\0') {
            bad(field, NUL_REFUSED.to_owned());
        }
    }
    for (field, value) in [
        ("latency_ms", generation.latency_ms),
        ("time_to_first_token_ms", generation.time_to_first_token_ms),
    ] {
        if !(value.is_finite() && value >= 0.0) {
            bad(field, format!("{value} is not a finite number >= 0"));
        }
    }
    if let Some(cost) = generation.cost {
        if !(cost.is_finite() && cost >= 0.0) {
            bad("cost", format!("{cost} is not a finite number >= 0"));
        }
    }
    if generation.metadata.len() > MAX_METADATA {
        bad(
            "metadata",
            format!(
                "{} entries; at most {MAX_METADATA}",
                generation.metadata.len()
            ),
        );
    }
    for (key, value) in &generation.metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            bad("metadata", format!("key {key:?} is empty or too long"));
        }
        if value.len() > MAX_METADATA_VALUE_BYTES {
            bad(
                "metadata",
                format!("the value of {key:?} is longer than {MAX_METADATA_VALUE_BYTES} bytes"),
            );
        }
    }
    if let (Some(start), Some(end)) = (generation.start_time, generation.end_time) {
        if end < start {
            bad("end_time", "before start_time".to_owned());
        }
    }
}

/// Cuts `text` to at most `limit` bytes on a character boundary; sets `cut` if it did.
fn cap(text: &mut String, limit: usize, cut: &mut bool) {
    if text.len() <= limit {
        return;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    *cut = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_field_and_texts_are_cut_on_a_character_boundary() {
        let mut batch = vec![
            Generation {
                output: "é".repeat(10),
                ..Generation::default()
            },
            Generation {
                model: "m".repeat(300),
                latency_ms: -1.0,
                cost: Some(f64::NAN),
                ..Generation::default()
            },
        ];
        let ServiceError::InvalidArgument(problems) = check_batch(&mut batch, 5).unwrap_err()
        else {
            panic!("not INVALID_ARGUMENT");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "generations[1].model",
                "generations[1].latency_ms",
                "generations[1].cost"
            ]
        );
        assert_eq!(batch[0].output, "éé");
        assert!(batch[0].output_truncated && !batch[0].input_truncated);

        let mut errored = vec![Generation {
            error: "timeout".into(),
            ..Generation::default()
        }];
        check_batch(&mut errored, 10).unwrap();
        assert_eq!(errored[0].status, GenerationStatus::Error);
        let mut too_many = vec![Generation::default(); MAX_BATCH + 1];
        assert!(check_batch(&mut too_many, 10).is_err());
        assert!(check_batch(&mut [], 10).is_err());
    }
}
