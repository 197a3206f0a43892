//! Assignment of users to variants (the GrowthBook hash every client can reproduce) and
//! durable exposures.

use super::*;

impl ExperimentService {
    /// Assigns `user_id` a variant. The first assignment of a user is durable as an
    /// exposure before the answer; later ones touch no storage.
    pub async fn assign(&self, id: &str, user_id: &str) -> Result<Assignment, ExperimentError> {
        check_user_id("user_id", user_id)?;
        let live = self.live(id)?;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if experiment.status != ExperimentStatus::Running {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; users are assigned only while it is running",
                experiment.status.as_str()
            )));
        }
        let bucket = hash_v2(&experiment.seed, user_id);
        if let Some(index) = live.known_users.get(user_id).map(|entry| *entry.value()) {
            return Ok(Assignment {
                in_experiment: true,
                variant: experiment.variants[index].clone(),
                bucket,
                new_exposure: false,
            });
        }
        let Some(index) = choose_variation(bucket, &snapshot.ranges) else {
            return Ok(Assignment {
                in_experiment: false,
                variant: experiment.variants[experiment.control_index()].clone(),
                bucket,
                new_exposure: false,
            });
        };
        let variant = experiment.variants[index].clone();
        // The status is checked again under the gate, which is held until the exposure
        // is committed (variants and ranges are frozen while running).
        let _writes = live.gate.read().await;
        let status = live.snapshot().experiment.status;
        if status != ExperimentStatus::Running {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; users are assigned only while it is running",
                status.as_str()
            )));
        }
        let exposure = Exposure {
            experiment_id: id.to_owned(),
            user_id: user_id.to_owned(),
            variant_id: variant.id.clone(),
            time: Utc::now(),
        };
        let committed = self
            .writer
            .commit(Writes {
                exposures: vec![exposure],
                records: Vec::new(),
            })
            .await?;
        Ok(Assignment {
            in_experiment: true,
            variant,
            bucket,
            new_exposure: committed.exposures.first().copied().unwrap_or(false),
        })
    }

    /// Records exposures of users a client assigned locally. Each variant must be the
    /// one the hash gives; users already exposed are acknowledged and not counted again.
    /// Returns how many were new.
    pub async fn record_exposures(
        &self,
        id: &str,
        exposures: Vec<(String, String)>,
    ) -> Result<u64, ExperimentError> {
        let live = self.live(id)?;
        let _writes = live.gate.read().await;
        let snapshot = live.snapshot();
        let experiment = &snapshot.experiment;
        if !experiment.status.accepts_metrics() {
            return Err(ExperimentError::FailedPrecondition(format!(
                "experiment {id} is {}; exposures are recorded only while it is running or paused",
                experiment.status.as_str()
            )));
        }
        if exposures.len() > MAX_EXPOSURES_PER_CALL {
            return Err(ExperimentError::invalid(
                "exposures",
                format!("at most {MAX_EXPOSURES_PER_CALL} per call"),
            ));
        }
        let mut violations = Violations::default();
        let now = Utc::now();
        let mut writes = Vec::with_capacity(exposures.len());
        for (i, (user_id, variant_id)) in exposures.into_iter().enumerate() {
            if let Err(ExperimentError::InvalidArgument(v)) =
                check_user_id(&format!("exposures[{i}].user_id"), &user_id)
            {
                violations.extend(v);
                continue;
            }
            let expected = choose_variation(hash_v2(&experiment.seed, &user_id), &snapshot.ranges);
            match expected {
                Some(index) if experiment.variants[index].id == variant_id => {}
                Some(index) => violations.add(
                    format!("exposures[{i}].variant_id"),
                    format!(
                        "user {user_id:?} hashes to variant {:?}, not {variant_id:?}",
                        experiment.variants[index].id
                    ),
                ),
                None => violations.add(
                    format!("exposures[{i}].user_id"),
                    format!("user {user_id:?} is outside the experiment's coverage"),
                ),
            }
            writes.push(Exposure {
                experiment_id: id.to_owned(),
                user_id,
                variant_id,
                time: now,
            });
        }
        violations.into_result()?;
        let committed = self
            .writer
            .commit(Writes {
                exposures: writes,
                records: Vec::new(),
            })
            .await?;
        Ok(committed.exposures.iter().filter(|new| **new).count() as u64)
    }
}

/// The answer to an assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Whether the user is in the experiment (coverage may leave them out).
    pub in_experiment: bool,
    /// The variant to serve: the user's, or control when not in the experiment.
    pub variant: Variant,
    /// The user's hash in [0, 1).
    pub bucket: f64,
    /// Whether this call stored the user's first exposure.
    pub new_exposure: bool,
}

fn check_user_id(field: &str, user_id: &str) -> Result<(), ExperimentError> {
    if user_id.is_empty() {
        return Err(ExperimentError::invalid(field, "is required"));
    }
    if user_id.len() > limits::USER_ID_BYTES {
        return Err(ExperimentError::invalid(
            field,
            format!("is longer than {} bytes", limits::USER_ID_BYTES),
        ));
    }
    if user_id.contains('\0') {
        return Err(ExperimentError::invalid(field, llmops_core::NUL_REFUSED));
    }
    Ok(())
}
