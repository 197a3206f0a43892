//! Reading a run's results: pages of sample results and comparisons between runs.

use super::*;

impl RunService {
    /// A page of a run's results in dataset order.
    pub async fn results(
        &self,
        id: &str,
        failed_only: bool,
        page_size: usize,
        page_token: &str,
    ) -> Result<ResultPage, EvaluationError> {
        self.inner.get(id)?;
        let after = if page_token.is_empty() {
            0
        } else {
            page_token.parse::<i64>().map_err(|_| {
                EvaluationError::invalid("page_token", "is not a token this server issued")
            })?
        };
        let size = page_size.clamp(1, MAX_PAGE_SIZE);
        let mut results = self
            .inner
            .store
            .results_page(id, failed_only, after, size + 1)
            .await?;
        let next_page_token = if results.len() > size {
            results.truncate(size);
            results
                .last()
                .map(|r| r.position.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(ResultPage {
            results,
            next_page_token,
        })
    }

    /// Compares two ended runs.
    pub async fn compare(
        &self,
        baseline_id: &str,
        candidate_id: &str,
    ) -> Result<Comparison, EvaluationError> {
        let inner = &self.inner;
        let baseline = inner.get(baseline_id)?;
        let candidate = inner.get(candidate_id)?;
        let ended = |run: &Run, field: &str| {
            run.results.clone().ok_or_else(|| {
                EvaluationError::FailedPrecondition(format!(
                    "{field}: run {} is {}; only an ended run can be compared",
                    run.id,
                    run.status.as_str()
                ))
            })
        };
        let baseline_results = ended(&baseline, "baseline_run_id")?;
        let candidate_results = ended(&candidate, "candidate_run_id")?;
        let paired = if baseline.dataset_id == candidate.dataset_id {
            Some(inner.paired(&baseline.id, &candidate.id).await?)
        } else {
            None
        };
        Ok(compare(
            &baseline,
            &baseline_results,
            &candidate,
            &candidate_results,
            paired,
        ))
    }
}

impl Inner {
    /// Every stored result of a run.
    pub(super) async fn all_results(&self, id: &str) -> Result<Vec<SampleResult>, EvaluationError> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .store
                .results_page(id, false, after, MAX_PAGE_SIZE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            after = last.position;
            let full = page.len() == MAX_PAGE_SIZE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    pub(super) async fn outcomes(
        &self,
        id: &str,
    ) -> Result<HashMap<String, bool>, EvaluationError> {
        Ok(self
            .all_results(id)
            .await?
            .into_iter()
            .map(|r| (r.sample_id, r.passed))
            .collect())
    }

    pub(super) async fn paired(
        &self,
        baseline: &str,
        candidate: &str,
    ) -> Result<PairedOutcomes, EvaluationError> {
        Ok(PairedOutcomes::pair(
            &self.outcomes(baseline).await?,
            &self.outcomes(candidate).await?,
        ))
    }
}

/// A page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultPage {
    /// In dataset order.
    pub results: Vec<SampleResult>,
    /// Empty at the end.
    pub next_page_token: String,
}
