//! Schedule messages: protobuf <-> the evaluator's schedule types.

use llmops_evaluator::schedules::{NewSchedule, Schedule};
use tonic::Status;

use super::run_messages::{spec_from_pb, spec_to_pb};
use crate::grpc::convert::timestamp;
use crate::grpc::status::invalid_field;
use crate::pb;

pub(crate) fn new_schedule_from_pb(request: pb::ScheduleRunRequest) -> Result<NewSchedule, Status> {
    let Some(template) = request.run_template else {
        return Err(invalid_field("run_template", "is required"));
    };
    Ok(NewSchedule {
        id: request.schedule_id,
        template: spec_from_pb(template, "run_template")?,
        schedule: request.schedule,
        on_prompt_change: request.on_prompt_change,
        watch_label: request.watch_label,
        // Set by the handler from the caller.
        created_by: String::new(),
    })
}

pub(crate) fn schedule_to_pb(schedule: Schedule) -> pb::Schedule {
    pb::Schedule {
        id: schedule.id,
        run_template: Some(spec_to_pb(schedule.template)),
        schedule: schedule.schedule,
        on_prompt_change: schedule.on_prompt_change,
        watch_label: schedule.watch_label,
        paused: schedule.paused,
        next_run_at: schedule.next_run_at.map(timestamp),
        last_run_id: schedule.last_run_id,
        skipped_ticks: schedule.skipped_ticks,
        created_at: Some(timestamp(schedule.created_at)),
        runs_started: schedule.runs_started,
        last_error: schedule.last_error,
        watched_version: schedule.watched_version,
        updated_at: Some(timestamp(schedule.updated_at)),
        created_by: schedule.created_by,
    }
}
