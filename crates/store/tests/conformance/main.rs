//! The store conformance suite: every case of every store trait, written once against
//! [`Storage`](llmops_store::Storage) and run against every backend.
//!
//! A case is an `async fn case(db: TestDatabase)` in its store's module; it opens the
//! database (as often as it likes, to check what survives a restart) and never names a
//! backend. `conformance!` turns the list of cases below into one test per case for a
//! backend, named `<backend>::<store>::<case>`, e.g.
//! `sqlite::alerts::matching_events_are_queued_for_webhooks_in_the_same_commit`.
//!
//! Adding a backend is a constructor on [`TestDatabase`](database::TestDatabase) and one
//! line at the bottom of this file.

mod alerts;
mod cluster;
mod database;
mod datasets;
mod experiments;
mod fixtures;
mod gates;
mod generations;
mod keys;
mod online;
mod prompts;
mod runs;
mod schedules;

/// `conformance!(backend, TestDatabase::constructor);` expands to `mod backend` holding
/// one test per case, each on a fresh database from `TestDatabase::constructor().await`.
macro_rules! conformance {
    ($backend:ident, TestDatabase::$constructor:ident) => {
        mod $backend {
            conformance!(@stores $constructor;
                prompts: [
                    versions_round_trip_and_the_first_is_active,
                    duplicates_in_precedence_are_refused,
                    active_and_labelled_versions_cannot_be_deleted,
                    activation_and_labels_persist,
                    events_are_sequenced_and_filtered,
                    concurrent_commits_get_distinct_gapless_sequences,
                    readers_never_see_a_gap_that_is_later_filled,
                    a_gated_move_commits_only_on_the_basis_it_was_checked_on,
                    deleting_a_prompt_removes_everything,
                    everything_survives_a_reopen,
                ],
                alerts: [
                    a_repeated_problem_updates_the_open_alert_and_only_raises_severity,
                    acknowledgement_is_idempotent_and_refused_once_resolved,
                    every_filter_narrows_the_newest_first_listing,
                    subscribers_resume_from_any_sequence_across_a_restart,
                    retention_prunes_resolved_alerts_and_refuses_resuming_below_it,
                    matching_events_are_queued_for_webhooks_in_the_same_commit,
                    the_sink_resolves_by_fingerprint,
                    bad_alerts_are_refused_with_the_field,
                    resuming_from_any_sequence_sees_every_later_event_once,
                    services_sharing_a_database_deduplicate_into_one_alert,
                    a_change_from_another_service_is_neither_lost_nor_overwritten,
                ],
                experiments: [
                    batches_report_which_writes_were_new,
                    an_experiment_round_trips_and_an_update_replaces_it,
                    exposures_and_records_survive_a_reopen_and_are_visited,
                    a_batch_naming_a_missing_experiment_is_refused_whole,
                    one_running_experiment_serves_a_label_whichever_process_starts_it,
                ],
                datasets: [
                    a_dataset_round_trips_with_every_field,
                    a_taken_id_or_name_is_a_duplicate,
                    every_change_makes_a_version_and_old_versions_stay_readable,
                    a_change_adding_a_current_id_is_refused_whole,
                    large_changes_are_stored_whole_and_in_order,
                    an_import_is_invisible_until_committed_and_an_abandoned_one_leaves_nothing,
                    deleting_a_dataset_removes_it_and_its_samples,
                    an_import_reservation_excludes_other_changes_until_it_ends_or_lapses,
                    everything_survives_a_reopen,
                ],
                runs: [
                    a_run_round_trips_and_a_transition_replaces_it,
                    results_are_paged_in_dataset_order,
                    existing_results_are_reported_and_never_stored_twice,
                    a_result_for_a_missing_run_is_a_conflict,
                    results_are_counted_and_refused_once_the_run_ended,
                    samples_are_claimed_in_chunks_under_leases,
                    concurrent_claimers_take_different_chunks,
                    runs_and_results_survive_a_reopen,
                ],
                schedules: [
                    schedules_round_trip_and_survive_a_reopen,
                    deleting_a_missing_schedule_reports_false_and_keeps_the_others,
                ],
                gates: [
                    a_gate_per_prompt_and_label_is_replaced_and_deleted,
                    gates_are_keyed_by_prompt_and_label_together,
                ],
                keys: [
                    keys_round_trip_and_names_and_secrets_are_unique,
                    the_first_admin_is_stored_only_while_no_admin_key_is_usable,
                    audit_entries_are_filtered_paged_newest_first_and_pruned,
                ],
                generations: [
                    generations_are_stored_once_filtered_paged_and_pruned,
                    usage_counts_each_generation_once_whoever_stores_it,
                ],
                online: [
                    samples_are_queued_with_new_generations_up_to_the_limit,
                    a_claim_is_held_once_and_a_verdict_counts_once,
                    deleting_an_evaluation_takes_its_queue_scores_and_aggregates,
                ],
                cluster: [
                    a_lease_has_one_holder_until_it_lapses_or_is_freed,
                    racing_replicas_take_a_free_lease_once,
                    heartbeats_move_and_old_replicas_are_forgotten,
                    definition_changes_are_logged_densely_in_commit_order,
                    call_slots_are_held_up_to_the_cap_until_released_or_lapsed,
                    racing_callers_never_hold_more_slots_than_the_cap,
                    call_starts_are_spaced_for_every_caller_together,
                    probed_health_is_stored_per_provider_and_replaced,
                ],
            );
        }
    };
    (@stores $constructor:ident; $($store:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $store {
                $(
                    // Two workers, as in production: concurrent writers really overlap.
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let db = crate::database::TestDatabase::$constructor().await;
                        crate::$store::$case(db).await;
                    }
                )*
            }
        )*
    };
}

conformance!(sqlite, TestDatabase::sqlite);
conformance!(postgres, TestDatabase::postgres);
