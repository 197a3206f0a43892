//! [`PromptStore`] on SQLite and PostgreSQL (one source, compiled for each).

use async_trait::async_trait;
use llmops_evaluator::datasets::Dataset;
use llmops_evaluator::gates::ReleaseGate;
use llmops_registry::{
    precedence_key, PromptChange, PromptEvent, PromptStore, PromptVersion, RegistryState,
    ReleaseBasis, StoreError, ACTIVE_POINTER,
};
use sqlx::{Row, Transaction};
use uuid::Uuid;

use super::{sequencer, Db, Store};
use crate::codec::{from_micros, parse, to_micros};
use crate::error::{corrupt, db_error};

const PROMPT_EVENTS: &str = "prompts";

#[async_trait]
impl PromptStore for Store {
    async fn load_registry(&self) -> Result<RegistryState, StoreError> {
        self.load_prompts(None).await
    }

    async fn load_prompt(&self, name: &str) -> Result<RegistryState, StoreError> {
        self.load_prompts(Some(name)).await
    }

    async fn commit_prompt_change(
        &self,
        change: &PromptChange,
        event: &PromptEvent,
    ) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await.map_err(db_error)?;
        apply_change(&mut tx, change).await?;
        let sequence = append_event(&mut tx, event).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(sequence)
    }

    async fn prompt_events_after(
        &self,
        after: u64,
        prompt_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<PromptEvent>, StoreError> {
        let rows = match prompt_name {
            Some(name) => {
                sqlx::query("SELECT sequence, payload FROM prompt_events WHERE prompt_name = $1 AND sequence > $2 ORDER BY sequence LIMIT $3")
                    .bind(name)
                    .bind(after as i64)
                    .bind(limit as i64)
                    .fetch_all(&self.reader)
                    .await
            }
            None => {
                sqlx::query("SELECT sequence, payload FROM prompt_events WHERE sequence > $1 ORDER BY sequence LIMIT $2")
                    .bind(after as i64)
                    .bind(limit as i64)
                    .fetch_all(&self.reader)
                    .await
            }
        }
        .map_err(db_error)?;
        rows.into_iter()
            .map(|row| {
                let mut event: PromptEvent = serde_json::from_str(row.get::<&str, _>(1))
                    .map_err(|e| corrupt("prompt event", e))?;
                event.sequence = row.get::<i64, _>(0) as u64;
                Ok(event)
            })
            .collect()
    }
}

async fn apply_change(
    tx: &mut Transaction<'_, Db>,
    change: &PromptChange,
) -> Result<(), StoreError> {
    match change {
        PromptChange::CreateVersion(record) => {
            let json = serde_json::to_string(record).map_err(|e| corrupt("prompt version", e))?;
            sqlx::query(
                "INSERT INTO prompt_versions (id, name, version, version_key, record, created_at_us, updated_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(record.id.to_string())
            .bind(&record.name)
            .bind(record.version.to_string())
            .bind(precedence_key(&record.version).to_string())
            .bind(json)
            .bind(to_micros(record.created_at))
            .bind(to_micros(record.updated_at))
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            // The first version of a prompt becomes active; later ones leave the pointer.
            sqlx::query("INSERT INTO prompts (name, active_version_id, updated_at_us) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                .bind(&record.name)
                .bind(record.id.to_string())
                .bind(to_micros(record.created_at))
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
        }
        PromptChange::Activate {
            name,
            version_id,
            at,
            basis,
        } => {
            if let Some(basis) = basis {
                check_release_basis(tx, name, ACTIVE_POINTER, basis).await?;
            }
            let updated = sqlx::query(
                "UPDATE prompts SET active_version_id = $2, updated_at_us = $3
                 WHERE name = $1 AND EXISTS (SELECT 1 FROM prompt_versions WHERE id = $2 AND name = $1)",
            )
            .bind(name)
            .bind(version_id.to_string())
            .bind(to_micros(*at))
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "prompt {name:?} has no such version"
                )));
            }
            touch_version(tx, *version_id, *at).await?;
        }
        PromptChange::SetLabel {
            name,
            label,
            version_id,
            at,
            basis,
        } => {
            if let Some(basis) = basis {
                check_release_basis(tx, name, label, basis).await?;
            }
            sqlx::query(
                "INSERT INTO prompt_labels (name, label, version_id, updated_at_us) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name, label) DO UPDATE SET version_id = excluded.version_id, updated_at_us = excluded.updated_at_us",
            )
            .bind(name)
            .bind(label)
            .bind(version_id.to_string())
            .bind(to_micros(*at))
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            touch_version(tx, *version_id, *at).await?;
        }
        PromptChange::DeleteLabel { name, label } => {
            let deleted = sqlx::query("DELETE FROM prompt_labels WHERE name = $1 AND label = $2")
                .bind(name)
                .bind(label)
                .execute(&mut **tx)
                .await
                .map_err(db_error)?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "prompt {name:?} has no label {label:?}"
                )));
            }
        }
        PromptChange::DeleteVersion { name, version_id } => {
            // Checked in the statement itself, so no concurrent writer can slip a label
            // or the active pointer onto the version between a check and the delete.
            let deleted = sqlx::query(
                "DELETE FROM prompt_versions WHERE id = $1 AND name = $2
                 AND NOT EXISTS (SELECT 1 FROM prompts WHERE active_version_id = $1)
                 AND NOT EXISTS (SELECT 1 FROM prompt_labels WHERE version_id = $1)",
            )
            .bind(version_id.to_string())
            .bind(name)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
            if deleted.rows_affected() == 0 {
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM prompt_versions WHERE id = $1")
                        .bind(version_id.to_string())
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(db_error)?;
                return Err(match exists {
                    Some(_) => StoreError::Conflict(format!(
                        "the version of {name:?} is active or labelled"
                    )),
                    None => StoreError::NotFound(format!("prompt {name:?} has no such version")),
                });
            }
        }
        PromptChange::DeletePrompt { name } => {
            for statement in [
                "DELETE FROM prompt_labels WHERE name = $1",
                "DELETE FROM prompts WHERE name = $1",
                "DELETE FROM prompt_versions WHERE name = $1",
            ] {
                sqlx::query(statement)
                    .bind(name)
                    .execute(&mut **tx)
                    .await
                    .map_err(db_error)?;
            }
        }
    }
    Ok(())
}

/// Fails the pointer move unless the release gate's decision still stands: the gate
/// is the one that was checked (or still absent) and its dataset is still at the version
/// the evidence ran on. Both rows are read with [`super::FOR_SHARE`], so a concurrent
/// change of either waits for this commit or is seen by it.
async fn check_release_basis(
    tx: &mut Transaction<'_, Db>,
    prompt: &str,
    pointer: &str,
    basis: &ReleaseBasis,
) -> Result<(), StoreError> {
    let gate: Option<String> = sqlx::query_scalar(&format!(
        "SELECT record FROM release_gates WHERE prompt_name = $1 AND label = $2{}",
        super::FOR_SHARE
    ))
    .bind(prompt)
    .bind(pointer)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_error)?;
    let gate_updated_at = gate
        .map(|record| parse::<ReleaseGate>("release gate", &record))
        .transpose()?
        .map(|gate| gate.updated_at);
    if gate_updated_at != basis.gate_updated_at {
        return Err(StoreError::Conflict(format!(
            "the release gate of {prompt:?} {pointer:?} changed while the move was being checked; try again"
        )));
    }
    if let Some((dataset_id, version)) = &basis.dataset {
        let dataset: Option<String> = sqlx::query_scalar(&format!(
            "SELECT record FROM datasets WHERE id = $1{}",
            super::FOR_SHARE
        ))
        .bind(dataset_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        let current = dataset
            .map(|record| parse::<Dataset>("dataset", &record))
            .transpose()?
            .map(|dataset| dataset.version);
        if current != Some(*version) {
            return Err(StoreError::Conflict(format!(
                "the release gate's dataset {dataset_id} changed while the move was being checked; try again"
            )));
        }
    }
    Ok(())
}

async fn touch_version(
    tx: &mut Transaction<'_, Db>,
    version_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE prompt_versions SET updated_at_us = $2 WHERE id = $1")
        .bind(version_id.to_string())
        .bind(to_micros(at))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Assigns the next sequence (in commit order) and stores the event.
async fn append_event(
    tx: &mut Transaction<'_, Db>,
    event: &PromptEvent,
) -> Result<u64, StoreError> {
    let sequence = sequencer::next_sequence(tx, PROMPT_EVENTS)
        .await
        .map_err(db_error)?;
    let payload = serde_json::to_string(event).map_err(|e| corrupt("prompt event", e))?;
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    sqlx::query("INSERT INTO prompt_events (sequence, prompt_name, kind, payload, created_at_us) VALUES ($1, $2, $3, $4, $5)")
        .bind(sequence)
        .bind(&event.prompt_name)
        .bind(kind)
        .bind(payload)
        .bind(to_micros(event.time))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
    Ok(sequence as u64)
}

fn parse_id(text: String) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&text).map_err(|e| corrupt("id", e))
}

impl Store {
    /// Every prompt's state, or only `name`'s, with the head sequence, in one snapshot:
    /// the head must match the state, or a watcher resuming from it would miss or repeat
    /// a change.
    async fn load_prompts(&self, name: Option<&str>) -> Result<RegistryState, StoreError> {
        let only = if name.is_some() {
            " WHERE name = $1"
        } else {
            ""
        };
        let mut tx = super::begin_snapshot(&self.reader)
            .await
            .map_err(db_error)?;
        let query = format!(
            "SELECT record, updated_at_us FROM prompt_versions{only} ORDER BY name, created_at_us"
        );
        let rows = bind_name(sqlx::query(&query), name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            let mut record: PromptVersion = serde_json::from_str(row.get::<&str, _>(0))
                .map_err(|e| corrupt("prompt version", e))?;
            record.updated_at = from_micros(row.get(1));
            versions.push(record);
        }
        let query = format!("SELECT name, active_version_id FROM prompts{only}");
        let active = bind_name(sqlx::query(&query), name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| Ok((row.get::<String, _>(0), parse_id(row.get(1))?)))
            .collect::<Result<_, StoreError>>()?;
        let query = format!("SELECT name, label, version_id FROM prompt_labels{only}");
        let labels = bind_name(sqlx::query(&query), name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|row| {
                Ok((
                    row.get::<String, _>(0),
                    row.get::<String, _>(1),
                    parse_id(row.get(2))?,
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        let head = sequencer::current(&mut *tx, PROMPT_EVENTS)
            .await
            .map_err(db_error)?;
        Ok(RegistryState {
            versions,
            active,
            labels,
            head_sequence: head as u64,
        })
    }
}

/// Binds the prompt name a query filters on, when it filters.
fn bind_name<'q>(
    query: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
    name: Option<&'q str>,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
    match name {
        Some(name) => query.bind(name),
        None => query,
    }
}
