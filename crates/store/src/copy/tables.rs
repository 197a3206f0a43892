//! Every table `llmops migrate` copies, in an order that satisfies the foreign keys,
//! with its key (rows are read in key order, a page at a time) and its columns.
//! Both backends' schemas have exactly these tables and columns; a table added to the
//! migrations must be added here, which `every_table_and_column_of_the_schema_is_copied` checks.

/// How a column's values are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Int,
    Real,
    Bool,
}

/// One table to copy.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// The primary key's columns, which order the pages.
    pub(crate) key: &'static [&'static str],
    pub(crate) columns: &'static [(&'static str, Kind)],
}

use Kind::{Bool, Int, Real, Text};

/// Tables of a running deployment's processes, not of its data: the source's replicas
/// and leases mean nothing to the target's processes, and the change log only serves
/// caches of processes running now (the target's processes load everything at start).
/// Sample chunks are claims of the source's workers: the target's workers divide a
/// running run's snapshot again and skip the samples that have a result. Provider call
/// slots, pacing and probes belong to the source's processes; the target's probe again.
/// An import's reservation belongs to its process; its staged samples are copied and
/// discarded by the target's first start.
#[cfg(test)]
pub(crate) const NOT_COPIED: &[&str] = &[
    "replicas",
    "leases",
    "changes",
    "eval_run_chunks",
    "provider_call_slots",
    "provider_call_pacing",
    "provider_probes",
    "dataset_imports",
];

pub(crate) const TABLES: &[Table] = &[
    Table {
        name: "prompt_versions",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("name", Text),
            ("version", Text),
            ("version_key", Text),
            ("record", Text),
            ("created_at_us", Int),
            ("updated_at_us", Int),
        ],
    },
    Table {
        name: "prompts",
        key: &["name"],
        columns: &[
            ("name", Text),
            ("active_version_id", Text),
            ("updated_at_us", Int),
        ],
    },
    Table {
        name: "prompt_labels",
        key: &["name", "label"],
        columns: &[
            ("name", Text),
            ("label", Text),
            ("version_id", Text),
            ("updated_at_us", Int),
        ],
    },
    Table {
        name: "event_sequences",
        key: &["stream"],
        columns: &[("stream", Text), ("value", Int)],
    },
    Table {
        name: "prompt_events",
        key: &["sequence"],
        columns: &[
            ("sequence", Int),
            ("prompt_name", Text),
            ("kind", Text),
            ("payload", Text),
            ("created_at_us", Int),
        ],
    },
    Table {
        name: "alerts",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("fingerprint", Text),
            ("alert_type", Text),
            ("severity", Text),
            ("status", Text),
            ("source", Text),
            ("source_id", Text),
            ("acknowledged", Bool),
            ("record", Text),
            ("created_at_us", Int),
            ("resolved_at_us", Int),
        ],
    },
    Table {
        name: "alert_events",
        key: &["sequence"],
        columns: &[
            ("sequence", Int),
            ("alert_id", Text),
            ("kind", Text),
            ("payload", Text),
            ("created_at_us", Int),
        ],
    },
    Table {
        name: "webhook_deliveries",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("receiver", Text),
            ("sequence", Int),
            ("body", Text),
            ("state", Text),
            ("attempts", Int),
            ("next_attempt_at_us", Int),
            ("last_error", Text),
            ("finished_at_us", Int),
        ],
    },
    Table {
        name: "experiments",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("status", Text),
            ("record", Text),
            ("created_at_us", Int),
            ("updated_at_us", Int),
            ("serving_prompt", Text),
            ("serving_label", Text),
        ],
    },
    Table {
        name: "experiment_exposures",
        key: &["experiment_id", "user_id"],
        columns: &[
            ("experiment_id", Text),
            ("user_id", Text),
            ("variant_id", Text),
            ("exposed_at_us", Int),
            ("batch_sequence", Int),
        ],
    },
    Table {
        name: "experiment_metric_records",
        key: &["id"],
        columns: &[
            ("id", Int),
            ("experiment_id", Text),
            ("variant_id", Text),
            ("metric", Text),
            ("value", Real),
            ("user_id", Text),
            ("record_id", Text),
            ("recorded_at_us", Int),
            ("batch_sequence", Int),
        ],
    },
    Table {
        name: "datasets",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("name", Text),
            ("record", Text),
            ("created_at_us", Int),
        ],
    },
    Table {
        name: "dataset_samples",
        key: &["position"],
        columns: &[
            ("position", Int),
            ("dataset_id", Text),
            ("sample_id", Text),
            ("added_version", Int),
            ("removed_version", Int),
            ("record", Text),
        ],
    },
    Table {
        name: "eval_runs",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("dataset_id", Text),
            ("status", Text),
            ("created_at_us", Int),
            ("record", Text),
            ("done_count", Int),
            ("passed_count", Int),
            ("errored_count", Int),
        ],
    },
    Table {
        name: "eval_run_results",
        key: &["run_id", "sample_id"],
        columns: &[
            ("run_id", Text),
            ("sample_id", Text),
            ("position", Int),
            ("passed", Bool),
            ("record", Text),
        ],
    },
    Table {
        name: "eval_schedules",
        key: &["id"],
        columns: &[("id", Text), ("created_at_us", Int), ("record", Text)],
    },
    Table {
        name: "release_gates",
        key: &["prompt_name", "label"],
        columns: &[("prompt_name", Text), ("label", Text), ("record", Text)],
    },
    Table {
        name: "api_keys",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("name", Text),
            ("secret_hash", Text),
            ("record", Text),
            ("created_at_us", Int),
        ],
    },
    Table {
        name: "audit_events",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("time_us", Int),
            ("actor", Text),
            ("api_key_id", Text),
            ("method", Text),
            ("resource", Text),
            ("code", Text),
            ("request_id", Text),
        ],
    },
    Table {
        name: "generations",
        key: &["id"],
        columns: &[
            ("id", Text),
            ("time_us", Int),
            ("prompt_name", Text),
            ("prompt_version", Text),
            ("model", Text),
            ("experiment_id", Text),
            ("variant_id", Text),
            ("user_id", Text),
            ("status", Text),
            ("record", Text),
        ],
    },
    Table {
        name: "usage_hourly",
        key: &["bucket_us", "per_user", "group_key"],
        columns: &[
            ("bucket_us", Int),
            ("per_user", Bool),
            ("group_key", Text),
            ("prompt_name", Text),
            ("prompt_version", Text),
            ("model", Text),
            ("experiment_id", Text),
            ("variant_id", Text),
            ("user_id", Text),
            ("count", Int),
            ("errors", Int),
            ("input_tokens", Int),
            ("output_tokens", Int),
            ("cost", Real),
            ("latency", Text),
        ],
    },
    Table {
        name: "online_evaluations",
        key: &["id"],
        columns: &[("id", Text), ("created_at_us", Int), ("record", Text)],
    },
    Table {
        name: "online_queue",
        key: &["evaluation_id", "generation_id"],
        columns: &[
            ("evaluation_id", Text),
            ("generation_id", Text),
            ("enqueued_us", Int),
            ("claimed_by", Text),
            ("claimed_until_us", Int),
        ],
    },
    Table {
        name: "online_queue_depth",
        key: &["id"],
        columns: &[("id", Int), ("depth", Int)],
    },
    Table {
        name: "online_scores",
        key: &["evaluation_id", "generation_id"],
        columns: &[
            ("evaluation_id", Text),
            ("generation_id", Text),
            ("scored_at_us", Int),
            ("record", Text),
        ],
    },
    Table {
        name: "online_aggregates",
        key: &["evaluation_id", "minute_us", "group_key"],
        columns: &[
            ("evaluation_id", Text),
            ("minute_us", Int),
            ("group_key", Text),
            ("prompt_name", Text),
            ("prompt_version", Text),
            ("model", Text),
            ("experiment_id", Text),
            ("variant_id", Text),
            ("record", Text),
        ],
    },
];

/// Tables whose key the database generates: after rows are copied in with their own
/// keys, PostgreSQL's identity must continue after the largest.
pub(crate) const GENERATED_KEYS: &[(&str, &str)] = &[
    ("experiment_metric_records", "id"),
    ("dataset_samples", "position"),
];
