//! Limits on what callers may put in an alert.

use crate::error::AlertError;
use crate::model::NewAlert;

const MAX_MESSAGE_BYTES: usize = 8 * 1024;
const MAX_SHORT_BYTES: usize = 256;
const MAX_ENTRIES: usize = 64;
const MAX_VALUE_BYTES: usize = 1024;

/// Checks sizes and required fields; the error names the field at fault.
pub(crate) fn validate_new_alert(alert: &NewAlert) -> Result<(), AlertError> {
    if alert.message.is_empty() {
        return Err(AlertError::invalid("alert.message", "message is required"));
    }
    if alert.message.len() > MAX_MESSAGE_BYTES {
        return Err(AlertError::invalid(
            "alert.message",
            format!("longer than {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    if alert.source.is_empty() {
        return Err(AlertError::invalid("alert.source", "source is required"));
    }
    for (field, value) in [
        ("alert.source", &alert.source),
        ("alert.source_id", &alert.source_id),
        ("alert.metric", &alert.metric),
        ("alert.fingerprint", &alert.fingerprint),
    ] {
        if value.len() > MAX_SHORT_BYTES {
            return Err(AlertError::invalid(
                field,
                format!("longer than {MAX_SHORT_BYTES} bytes"),
            ));
        }
        if value.contains('\0') {
            return Err(AlertError::invalid(field, llmops_core::NUL_REFUSED));
        }
    }
    for (field, map) in [
        ("alert.labels", &alert.labels),
        ("alert.metadata", &alert.metadata),
    ] {
        if map.len() > MAX_ENTRIES {
            return Err(AlertError::invalid(
                field,
                format!("more than {MAX_ENTRIES} entries"),
            ));
        }
        if let Some((key, _)) = map
            .iter()
            .find(|(k, v)| k.is_empty() || k.len() > MAX_SHORT_BYTES || v.len() > MAX_VALUE_BYTES)
        {
            return Err(AlertError::invalid(
                format!("{field}.{key}"),
                format!(
                    "keys must be 1-{MAX_SHORT_BYTES} bytes and values at most {MAX_VALUE_BYTES}"
                ),
            ));
        }
    }
    for (field, value) in [
        ("alert.threshold", alert.threshold),
        ("alert.actual_value", alert.actual_value),
    ] {
        if value.is_some_and(|v| !v.is_finite()) {
            return Err(AlertError::invalid(field, "must be a finite number"));
        }
    }
    Ok(())
}
