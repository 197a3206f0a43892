//! Holm-Bonferroni adjusted p-values, as `statsmodels.stats.multitest.multipletests(
//! method="holm")` computes them: sort ascending, multiply the i-th smallest by
//! (m - i), carry the running maximum, cap at 1, and return in the input order.

/// The adjusted p-values, in the order given.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    // A stable sort keeps ties in input order, as numpy's mergesort does.
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = (p_values[index] * (m - rank) as f64).min(1.0);
        running = running.max(scaled);
        adjusted[index] = running;
    }
    adjusted
}
