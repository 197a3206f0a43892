//! Which status changes are allowed.
//!
//! draft -> running; running <-> paused; running | paused -> completed;
//! draft | running | paused -> cancelled. Completed and cancelled are final.

use crate::error::ExperimentError;
use crate::model::ExperimentStatus::{self, Cancelled, Completed, Draft, Paused, Running};

/// Whether an experiment may move from `from` to `to`.
pub fn is_allowed(from: ExperimentStatus, to: ExperimentStatus) -> bool {
    matches!(
        (from, to),
        (Draft, Running)
            | (Running, Paused)
            | (Paused, Running)
            | (Running | Paused, Completed)
            | (Draft | Running | Paused, Cancelled)
    )
}

/// Refuses a move that is not allowed, naming both states.
pub fn check(
    id: &str,
    from: ExperimentStatus,
    to: ExperimentStatus,
) -> Result<(), ExperimentError> {
    if is_allowed(from, to) {
        return Ok(());
    }
    let hint = match from {
        Completed | Cancelled => " (it is final)",
        _ => "",
    };
    Err(ExperimentError::FailedPrecondition(format!(
        "experiment {id} is {}{hint}; it cannot move to {}",
        from.as_str(),
        to.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ExperimentStatus; 5] = [Draft, Running, Paused, Completed, Cancelled];

    #[test]
    fn every_move_is_allowed_or_refused_as_the_lifecycle_says() {
        let allowed = [
            (Draft, Running),
            (Draft, Cancelled),
            (Running, Paused),
            (Running, Completed),
            (Running, Cancelled),
            (Paused, Running),
            (Paused, Completed),
            (Paused, Cancelled),
        ];
        for from in ALL {
            for to in ALL {
                let expected = allowed.contains(&(from, to));
                assert_eq!(is_allowed(from, to), expected, "{from:?} -> {to:?}");
                let result = check("e", from, to);
                assert_eq!(result.is_ok(), expected, "{from:?} -> {to:?}");
                if let Err(ExperimentError::FailedPrecondition(message)) = result {
                    assert!(message.contains(from.as_str()), "{message}");
                    assert!(message.contains(to.as_str()), "{message}");
                }
            }
        }
    }
}
