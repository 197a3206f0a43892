//! Schedule expressions: a cron expression (5 fields, or 6 with a leading seconds field;
//! UTC), a macro (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), `@every
//! <duration>` (`@every 90s`, `@every 1h30m`), or empty (the configured default
//! interval, when automatic evaluation is on).
//!
//! Cron parsing and next-fire computation are `croner`'s (POSIX semantics: when both
//! day of month and day of week are restricted, either matches).

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// The shortest `@every` interval.
pub const MIN_EVERY: Duration = Duration::from_secs(1);
/// The longest `@every` interval (a leap year).
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

/// A parsed schedule expression.
#[derive(Debug, Clone)]
pub enum ScheduleExpression {
    /// Empty: every `[evaluation] interval` when automatic evaluation is on, otherwise
    /// never by time (only on prompt changes).
    Default,
    /// A cron expression or macro, in UTC.
    Cron(Box<Cron>),
    /// `@every <duration>`.
    Every(Duration),
}

impl PartialEq for ScheduleExpression {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Default, Self::Default) => true,
            (Self::Cron(a), Self::Cron(b)) => a.pattern.to_string() == b.pattern.to_string(),
            (Self::Every(a), Self::Every(b)) => a == b,
            _ => false,
        }
    }
}

impl ScheduleExpression {
    /// Parses `text`; the error says what is wrong, for an INVALID_ARGUMENT.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Self::Default);
        }
        if let Some(rest) = text.strip_prefix("@every") {
            let rest = rest.trim();
            if rest.is_empty() {
                return Err(
                    "@every needs a duration, e.g. `@every 90s` or `@every 1h30m`".to_owned(),
                );
            }
            let every = humantime::parse_duration(rest).map_err(|err| {
                format!("@every {rest:?} is not a duration ({err}); e.g. `@every 90s`")
            })?;
            if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
                return Err(format!(
                    "@every {rest} is out of range: between {} and {}",
                    humantime::format_duration(MIN_EVERY),
                    humantime::format_duration(MAX_EVERY)
                ));
            }
            return Ok(Self::Every(every));
        }
        let fields = text.split_whitespace().count();
        if !text.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "{text:?} has {fields} fields; a cron expression has 5 (minute hour day-of-month month day-of-week) or 6 (with a leading seconds field)"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(text)
            .map_err(|err| format!("{text:?} is not a valid cron expression: {err}"))?;
        // A pattern that can never fire (the 30th of February) is refused now rather
        // than found to be silent later.
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).expect("the epoch is a valid time");
        if cron.find_next_occurrence(&epoch, false).is_err() {
            return Err(format!("{text:?} never fires"));
        }
        Ok(Self::Cron(Box::new(cron)))
    }

    /// When the schedule fires next strictly after `after`. `default_interval` is the
    /// interval of an empty expression (None when automatic evaluation is off: it
    /// never fires by time).
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        default_interval: Option<Duration>,
    ) -> Option<DateTime<Utc>> {
        let add = |interval: Duration| {
            chrono::Duration::from_std(interval)
                .ok()
                .and_then(|interval| after.checked_add_signed(interval))
        };
        match self {
            Self::Default => default_interval.and_then(add),
            Self::Every(every) => add(*every),
            Self::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn next(expression: &str, after: DateTime<Utc>) -> DateTime<Utc> {
        ScheduleExpression::parse(expression)
            .unwrap()
            .next_after(after, None)
            .unwrap()
    }

    #[test]
    fn five_field_expressions_fire_on_the_minute_in_utc() {
        assert_eq!(
            next("*/15 * * * *", at(2026, 11, 27, 10, 7, 30)),
            at(2026, 11, 27, 10, 15, 0)
        );
        assert_eq!(
            next("0 9 * * MON", at(2026, 11, 27, 10, 0, 0)),
            at(2026, 11, 30, 9, 0, 0)
        );
        // Strictly after: a schedule due now fires next time, not again now.
        assert_eq!(
            next("0 * * * *", at(2026, 11, 27, 10, 0, 0)),
            at(2026, 11, 27, 11, 0, 0)
        );
    }

    #[test]
    fn six_fields_lead_with_seconds() {
        assert_eq!(
            next("*/20 * * * * *", at(2026, 1, 1, 0, 0, 5)),
            at(2026, 1, 1, 0, 0, 20)
        );
        assert_eq!(
            next("30 0 12 * * *", at(2026, 1, 1, 12, 0, 30)),
            at(2026, 1, 2, 12, 0, 30)
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        // The 31st skips the months that have none.
        assert_eq!(
            next("0 0 31 * *", at(2026, 1, 31, 0, 0, 0)),
            at(2026, 3, 31, 0, 0, 0)
        );
        assert_eq!(
            next("0 0 31 * *", at(2026, 4, 1, 0, 0, 0)),
            at(2026, 5, 31, 0, 0, 0)
        );
        // The last day of the month, whatever its length.
        assert_eq!(
            next("0 0 L * *", at(2028, 2, 1, 0, 0, 0)),
            at(2028, 2, 29, 0, 0, 0)
        );
        assert_eq!(
            next("0 0 L * *", at(2026, 2, 1, 0, 0, 0)),
            at(2026, 2, 28, 0, 0, 0)
        );
        // The 29th of February waits for a leap year.
        assert_eq!(
            next("0 0 29 2 *", at(2026, 3, 1, 0, 0, 0)),
            at(2028, 2, 29, 0, 0, 0)
        );
        assert_eq!(
            next("0 0 29 2 *", at(2096, 3, 1, 0, 0, 0)),
            at(2104, 2, 29, 0, 0, 0),
            "2100 is not a leap year"
        );
    }

    #[test]
    fn macros_and_every() {
        assert_eq!(
            next("@hourly", at(2026, 1, 1, 0, 30, 0)),
            at(2026, 1, 1, 1, 0, 0)
        );
        assert_eq!(
            next("@daily", at(2026, 1, 1, 0, 30, 0)),
            at(2026, 1, 2, 0, 0, 0)
        );
        assert_eq!(
            next("@weekly", at(2026, 11, 27, 0, 0, 0)),
            at(2026, 11, 29, 0, 0, 0),
            "Sundays"
        );
        assert_eq!(
            next("@monthly", at(2026, 11, 27, 0, 0, 0)),
            at(2026, 12, 1, 0, 0, 0)
        );
        assert_eq!(
            next("@yearly", at(2026, 11, 27, 0, 0, 0)),
            at(2027, 1, 1, 0, 0, 0)
        );
        assert_eq!(
            next("@every 90s", at(2026, 1, 1, 0, 0, 0)),
            at(2026, 1, 1, 0, 1, 30)
        );
        assert_eq!(
            next("@every 1h30m", at(2026, 1, 1, 0, 0, 0)),
            at(2026, 1, 1, 1, 30, 0)
        );
    }

    #[test]
    fn empty_uses_the_default_interval_only_when_there_is_one() {
        let empty = ScheduleExpression::parse("  ").unwrap();
        assert_eq!(empty, ScheduleExpression::Default);
        let now = at(2026, 1, 1, 0, 0, 0);
        assert_eq!(
            empty.next_after(now, Some(Duration::from_secs(86_400))),
            Some(at(2026, 1, 2, 0, 0, 0))
        );
        assert_eq!(
            empty.next_after(now, None),
            None,
            "auto-evaluation off: never by time"
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        let cases = [
            ("* * * *", "has 4 fields"),
            ("* * * * * * *", "has 7 fields"),
            ("61 * * * *", "not a valid cron expression"),
            ("0 0 30 2 *", "never fires"),
            ("@every", "needs a duration"),
            ("@every soon", "is not a duration"),
            ("@every 500ms", "out of range"),
            ("@fortnightly", "not a valid cron expression"),
        ];
        for (text, why) in cases {
            let err = ScheduleExpression::parse(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    proptest::proptest! {
        /// Any text is a schedule or a reason, never a panic; a schedule's next fire
        /// time is after the time asked about.
        #[test]
        fn any_text_is_a_schedule_or_a_reason(text in "[0-9*/,\\- a-zA-Z@#?LW]{0,40}") {
            if let Ok(expression) = ScheduleExpression::parse(&text) {
                let now = Utc::now();
                if let Some(next) = expression.next_after(now, Some(Duration::from_secs(60))) {
                    proptest::prop_assert!(next > now);
                }
            }
        }

        /// Cron-shaped expressions of five or six fields never panic either.
        #[test]
        fn cron_shaped_text_never_panics(
            fields in proptest::collection::vec("(\\*|[0-9]{1,3}|[0-9]{1,2}-[0-9]{1,2}|\\*/[0-9]{1,3}|[0-9],[0-9])", 5..=6)
        ) {
            let text = fields.join(" ");
            match ScheduleExpression::parse(&text) {
                Ok(expression) => {
                    let _ = expression.next_after(Utc::now(), None);
                }
                Err(reason) => proptest::prop_assert!(!reason.is_empty()),
            }
        }
    }
}
