//! Continuous evaluation: schedules that start runs by themselves, on a cron expression
//! or interval and whenever their prompt changes.

mod expression;
mod model;
mod service;
mod store;

pub use expression::{ScheduleExpression, MAX_EVERY, MIN_EVERY};
pub use model::{PendingRun, Schedule, Trigger};
pub use service::{
    NewSchedule, ScheduleService, ScheduleSettings, MAX_SCHEDULES, SCHEDULED_RUNS_TOTAL,
    SKIPPED_TICKS_TOTAL,
};
pub use store::ScheduleStore;
