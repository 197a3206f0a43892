//! A text chart of relative lifts: one fixed-width line per comparison with `|` at zero,
//! `[` and `]` at the interval's ends, `-` between them and `*` at the estimate, every
//! line on the same scale so the comparisons can be read against each other.

use crate::pb;

/// Characters per chart line; odd, so zero sits in the middle.
pub(crate) const WIDTH: usize = 41;

/// The middle column, where zero is.
const ZERO: usize = WIDTH / 2;

/// The largest absolute value among the computable effects' estimates and interval ends
/// (0 when there is none): the value the chart's edges stand for.
pub(crate) fn scale<'a>(effects: impl IntoIterator<Item = &'a pb::Effect>) -> f64 {
    effects
        .into_iter()
        .filter(|effect| effect.computable)
        .flat_map(|effect| [effect.ci_lower, effect.estimate, effect.ci_upper])
        .filter(|value| value.is_finite())
        .fold(0.0, |largest: f64, value| largest.max(value.abs()))
}

/// The column of `value` when the edges stand for `-scale` and `+scale`; zero (and
/// everything, when `scale` is not positive) is the middle column.
fn column(value: f64, scale: f64) -> usize {
    if !(scale > 0.0 && scale.is_finite() && value.is_finite()) {
        return ZERO;
    }
    let offset = (value / scale * ZERO as f64).round();
    let offset = offset.clamp(-(ZERO as f64), ZERO as f64);
    // Within +-ZERO, so the sum is within 0..WIDTH and the casts are exact.
    (ZERO as f64 + offset) as usize
}

/// One chart line, exactly [`WIDTH`] characters: `[`..`]` from `lower` to `upper` with
/// `*` at `estimate`, `|` at zero. Where marks meet, `*` wins over `[`/`]`, which win
/// over `|`.
pub(crate) fn line(lower: f64, estimate: f64, upper: f64, scale: f64) -> String {
    let (lower, upper) = if lower <= upper {
        (lower, upper)
    } else {
        (upper, lower)
    };
    let (from, to) = (column(lower, scale), column(upper, scale));
    let mut cells = [' '; WIDTH];
    for cell in &mut cells[from..=to] {
        *cell = '-';
    }
    cells[ZERO] = '|';
    cells[from] = '[';
    cells[to] = ']';
    cells[column(estimate, scale)] = '*';
    cells.iter().collect()
}

/// The axis under the chart, exactly [`WIDTH`] characters: `-scale` at the left edge,
/// `0` at the middle and `+scale` at the right edge, in percent.
pub(crate) fn axis(scale: f64) -> String {
    let mut cells = [' '; WIDTH];
    let left = format!("{:.1}%", -scale * 100.0);
    let right = format!("{:+.1}%", scale * 100.0);
    cells[ZERO] = '0';
    // Edge labels only when they leave room around the middle `0`.
    if left.len() < ZERO && right.len() < ZERO {
        for (cell, c) in cells.iter_mut().zip(left.chars()) {
            *cell = c;
        }
        for (cell, c) in cells[WIDTH - right.len()..].iter_mut().zip(right.chars()) {
            *cell = c;
        }
    }
    cells.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effect(lower: f64, estimate: f64, upper: f64, computable: bool) -> pb::Effect {
        pb::Effect {
            estimate,
            ci_lower: lower,
            ci_upper: upper,
            computable,
            ..Default::default()
        }
    }

    #[test]
    fn the_scale_is_the_largest_absolute_bound_of_the_computable_effects() {
        let effects = [
            effect(0.01, 0.042, 0.074, true),
            effect(-0.09, -0.05, -0.01, true),
            effect(0.0, 0.0, 0.0, false),
        ];
        assert_eq!(scale(&effects), 0.09);
        assert_eq!(scale(&effects[2..]), 0.0);
        assert_eq!(scale(&[]), 0.0);
    }

    #[test]
    fn an_interval_right_of_zero() {
        // +4.2% [+1.0%, +7.4%] on its own scale: the upper end is the right edge.
        let chart = line(0.010, 0.042, 0.074, 0.074);
        assert_eq!(chart.chars().count(), WIDTH);
        let expected = format!("{}|  [{}*{}]", " ".repeat(20), "-".repeat(7), "-".repeat(8));
        assert_eq!(chart, expected);
    }

    #[test]
    fn an_interval_across_zero_shows_zero_inside_it() {
        let chart = line(-0.05, 0.02, 0.08, 0.1);
        assert_eq!(chart.len(), WIDTH);
        assert_eq!(
            chart,
            format!(
                "{}[{}|{}*{}]{}",
                " ".repeat(10),
                "-".repeat(9),
                "-".repeat(3),
                "-".repeat(11),
                " ".repeat(4)
            )
        );
        assert_eq!(chart.find('|'), Some(20));
        assert_eq!(chart.find('*'), Some(24));
    }

    #[test]
    fn marks_are_clamped_to_the_edges_and_the_estimate_wins_ties() {
        // Beyond the scale: clamped to the edges.
        let chart = line(-0.5, -0.3, -0.02, 0.1);
        assert_eq!(
            chart,
            format!("*{}]{}|{}", "-".repeat(15), " ".repeat(3), " ".repeat(20))
        );
        // A zero-width interval at zero: only the estimate shows.
        let chart = line(0.0, 0.0, 0.0, 0.0);
        assert_eq!(chart, format!("{}*{}", " ".repeat(20), " ".repeat(20)));
        // Reversed ends are put in order.
        assert_eq!(
            line(0.074, 0.042, 0.010, 0.074),
            line(0.010, 0.042, 0.074, 0.074)
        );
    }

    #[test]
    fn the_axis_labels_the_edges_and_zero() {
        let axis = axis(0.074);
        assert_eq!(axis.len(), WIDTH);
        assert_eq!(
            axis,
            format!("-7.4%{}0{}+7.4%", " ".repeat(15), " ".repeat(15))
        );
    }
}
