//! Continuous evaluation schedules. So far: the schedule expression and when it next
//! fires (the scheduler, its storage and the RPCs come next; see issue 6).

mod expression;

pub use expression::{ScheduleExpression, MAX_EVERY, MIN_EVERY};
