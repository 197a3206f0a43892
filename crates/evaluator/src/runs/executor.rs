//! One sample's evaluation: render the prompt version with the sample's variables, call
//! the model, score the output with every metric, and decide pass or fail. Nothing here
//! fails the run: every problem becomes the sample's error, grouped by cause.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use llmops_registry::{Registry, RenderedPrompt, VersionSelector};
use serde_json::{Map, Value};

use super::metric::{CompiledMetric, MetricScorer};
use super::model::{JudgeScore, SampleResult, DEFAULT_THRESHOLD};
use crate::datasets::StoredSample;
use crate::judges::{built_in_rubric, JudgeConfig, JudgePrompt};
use crate::providers::{
    ChatMessage, CompletionRequest, Provider, ProviderError, ProviderSet, QueueClock,
};

/// The prompt version a run renders, resolved once when the run (re)starts.
#[derive(Debug, Clone)]
pub(super) struct PreparedPrompt {
    /// The prompt's name.
    pub(super) name: String,
    /// The exact version.
    pub(super) version: String,
    /// The variables it declares; other keys of an object input are left out.
    pub(super) declared: HashSet<String>,
    /// The version's model parameters (temperature, ...), sent with each call.
    pub(super) parameters: Map<String, Value>,
}

impl PreparedPrompt {
    /// Resolves `version` of `name` in the registry.
    pub(super) fn resolve(
        registry: &Registry,
        name: &str,
        version: &str,
    ) -> Result<Self, llmops_registry::RegistryError> {
        let view = registry.get_version(name, &VersionSelector::Version(version.to_owned()))?;
        Ok(Self {
            name: name.to_owned(),
            version: view.version.version.to_string(),
            declared: view
                .version
                .variables
                .iter()
                .map(|v| v.name.clone())
                .collect(),
            parameters: view
                .version
                .model_config
                .map(|config| config.parameters)
                .unwrap_or_default(),
        })
    }
}

/// What scoring an output needs.
#[derive(Clone)]
pub(crate) struct Scoring {
    /// Renders registry judge prompts.
    pub(crate) registry: Arc<Registry>,
    /// Judges by name.
    pub(crate) providers: ProviderSet,
    /// The run's metrics.
    pub(crate) metrics: Arc<Vec<CompiledMetric>>,
    /// Per metric name.
    pub(crate) thresholds: Arc<BTreeMap<String, f64>>,
    /// Keep each judge's answer as its reasoning (online scores do; run results, which
    /// may hold millions of verdicts, do not).
    pub(crate) keep_reasoning: bool,
}

/// What evaluating a sample needs.
#[derive(Clone)]
pub(super) struct SampleContext {
    /// How outputs are scored.
    pub(super) scoring: Scoring,
    /// The run's model.
    pub(super) model: Arc<dyn Provider>,
    /// The run's prompt version.
    pub(super) prompt: Arc<PreparedPrompt>,
}

/// A result with the sample's fields and nothing else yet.
pub(crate) fn blank_result(sample: &StoredSample) -> SampleResult {
    SampleResult {
        sample_id: sample.sample.id.clone(),
        position: sample.position,
        input: sample.sample.input.clone(),
        expected_output: sample.sample.expected_output.clone(),
        output: String::new(),
        scores: BTreeMap::new(),
        passed: false,
        latency: None,
        error: String::new(),
        failure_reason: String::new(),
        input_tokens: 0,
        output_tokens: 0,
        cost: None,
        judge_scores: Vec::new(),
        panel_spread: BTreeMap::new(),
    }
}

/// Marks a result errored, with the cause it is grouped under.
pub(super) fn set_error(
    result: &mut SampleResult,
    reason: impl Into<String>,
    error: impl Into<String>,
) {
    result.passed = false;
    result.failure_reason = reason.into();
    result.error = error.into();
}

/// How often a queued sample's moving deadline is looked at.
const QUEUE_RECHECK: Duration = Duration::from_millis(100);

/// Evaluates one sample within `timeout`; a sample that takes longer errors.
/// Time spent queued for a provider (a concurrency slot, a requests-per-minute turn)
/// does not count: the limit is about the model and the scorers.
pub(super) async fn evaluate(
    context: &SampleContext,
    sample: &StoredSample,
    timeout: Duration,
) -> SampleResult {
    let queue = QueueClock::default();
    let started = tokio::time::Instant::now();
    let evaluation = evaluate_untimed(context, sample, &queue);
    tokio::pin!(evaluation);
    let timed_out = loop {
        // While the sample waits in a provider's queue, its deadline moves with it: look
        // again after a while rather than at a deadline that keeps receding.
        let mut deadline = started + timeout + queue.waited();
        if queue.is_waiting() {
            deadline = deadline.max(tokio::time::Instant::now() + QUEUE_RECHECK);
        }
        tokio::select! {
            // A sample that finished right at its deadline keeps its result.
            biased;
            result = &mut evaluation => break Err(result),
            _ = tokio::time::sleep_until(deadline) => {
                if tokio::time::Instant::now() >= started + timeout + queue.waited() {
                    break Ok(());
                }
            }
        }
    };
    match timed_out {
        Err(result) => result,
        Ok(()) => {
            let mut result = blank_result(sample);
            set_error(
                &mut result,
                "timeout",
                format!("the sample took longer than its {timeout:?} limit"),
            );
            // The slowest samples count in the latency figures (and the latency_p99
            // threshold) at least as long as they were given.
            result.latency = Some(timeout);
            result
        }
    }
}

async fn evaluate_untimed(
    context: &SampleContext,
    sample: &StoredSample,
    queue: &QueueClock,
) -> SampleResult {
    let mut result = blank_result(sample);
    let messages = match render(&context.scoring.registry, &context.prompt, sample) {
        Ok(messages) => messages,
        Err(err) => {
            set_error(
                &mut result,
                "render error",
                format!("rendering the prompt: {err}"),
            );
            return result;
        }
    };
    let request = CompletionRequest {
        messages,
        parameters: context.prompt.parameters.clone(),
        queue: queue.clone(),
    };
    let call = queue.stopwatch();
    match context.model.complete(&request).await {
        Ok(completion) => {
            result.output = completion.text;
            result.latency = Some(completion.latency);
            result.input_tokens = completion.input_tokens;
            result.output_tokens = completion.output_tokens;
            result.cost = completion.cost;
        }
        Err(err) => {
            set_error(
                &mut result,
                provider_reason(&err),
                format!("model {}: {err}", context.model.name()),
            );
            // Failed calls count in the latency figures with the time they took (not
            // the time they were queued for the provider).
            result.latency = Some(call.elapsed());
            return result;
        }
    }
    let prompt_text = transcript(&request.messages);
    score(
        &context.scoring,
        &prompt_text,
        &sample.sample.context,
        &mut result,
        queue,
    )
    .await;
    result
}

/// The messages the run's prompt version renders to for a sample.
pub(super) fn render(
    registry: &Registry,
    prompt: &PreparedPrompt,
    sample: &StoredSample,
) -> Result<Vec<ChatMessage>, llmops_registry::RegistryError> {
    let variables = variables(&sample.sample.input, &prompt.declared);
    let (rendered, _) = registry.render(
        &prompt.name,
        &VersionSelector::Version(prompt.version.clone()),
        &variables,
    )?;
    Ok(messages(rendered))
}

/// Scores `result.output` with every metric that has no score yet (submitted scores are
/// kept as given), then decides whether the sample passed.
/// Judges count their time queued for a provider on `queue`.
pub(crate) async fn score(
    context: &Scoring,
    prompt_text: &str,
    sample_context: &str,
    result: &mut SampleResult,
    queue: &QueueClock,
) {
    for metric in context.metrics.iter() {
        let name = &metric.config.name;
        if result.scores.contains_key(name) {
            continue;
        }
        match &metric.scorer {
            MetricScorer::Local(scorer) => {
                let value = scorer.score(&result.output, &result.expected_output);
                result.scores.insert(name.clone(), value);
            }
            MetricScorer::Judge(judge) => {
                match ask_judges(
                    context,
                    judge,
                    name,
                    prompt_text,
                    sample_context,
                    result,
                    queue,
                )
                .await
                {
                    Ok(value) => {
                        result.scores.insert(name.clone(), value);
                    }
                    Err(error) => {
                        set_error(result, format!("judge error ({name})"), error);
                        return;
                    }
                }
            }
        }
    }
    decide(result, &context.thresholds);
}

/// Passed when there are scores and each reaches its threshold.
pub(super) fn decide(result: &mut SampleResult, thresholds: &BTreeMap<String, f64>) {
    if !result.error.is_empty() {
        return;
    }
    if result.scores.is_empty() {
        result.passed = false;
        result.failure_reason = "no scores".to_owned();
        return;
    }
    let short = result.scores.iter().find_map(|(name, score)| {
        let threshold = thresholds.get(name).copied().unwrap_or(DEFAULT_THRESHOLD);
        (*score < threshold).then(|| format!("{name} below {threshold}"))
    });
    result.passed = short.is_none();
    result.failure_reason = short.unwrap_or_default();
}

/// Asks each judge of a metric (concurrently), records their scores, and returns the
/// consensus.
async fn ask_judges(
    context: &Scoring,
    judge: &JudgeConfig,
    metric: &str,
    prompt_text: &str,
    sample_context: &str,
    result: &mut SampleResult,
    queue: &QueueClock,
) -> Result<f64, String> {
    let question = judge_prompt(context, judge, prompt_text, sample_context, result)?;
    let request = CompletionRequest {
        messages: question,
        parameters: Map::new(),
        queue: queue.clone(),
    };
    let calls = judge.judges.iter().map(|name| {
        let request = &request;
        async move {
            let provider = context
                .providers
                .get(name)
                .ok_or_else(|| format!("judge {name} is no longer configured"))?;
            let completion = provider
                .complete(request)
                .await
                .map_err(|err| format!("judge {name}: {err}"))?;
            let score = judge
                .read_score(&completion.text)
                .map_err(|err| format!("judge {name}: {err}"))?;
            let reasoning = if context.keep_reasoning {
                judge_reasoning(&completion.text)
            } else {
                String::new()
            };
            Ok::<_, String>((name.clone(), score, completion.cost, reasoning))
        }
    });
    let mut scores = Vec::new();
    for verdict in join_all(calls).await {
        let (name, score, cost, reasoning) = verdict?;
        if let Some(cost) = cost {
            *result.cost.get_or_insert(0.0) += cost;
        }
        result.judge_scores.push(JudgeScore {
            metric: metric.to_owned(),
            judge: name,
            score,
            reasoning,
        });
        scores.push(score);
    }
    if scores.len() > 1 {
        let (low, high) = scores
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), s| {
                (l.min(*s), h.max(*s))
            });
        result.panel_spread.insert(metric.to_owned(), high - low);
    }
    Ok(judge.consensus.combine(&scores))
}

/// Most of a judge's answer kept as its reasoning.
const REASONING_BYTES: usize = 4096;

/// A judge's answer without its score lines, trimmed and capped at [`REASONING_BYTES`].
fn judge_reasoning(answer: &str) -> String {
    let text: Vec<&str> = answer
        .lines()
        .filter(|line| {
            !line
                .trim_start()
                .trim_start_matches('*')
                .starts_with("SCORE_")
        })
        .collect();
    let text = text.join("\n");
    let text = text.trim();
    let mut end = text.len().min(REASONING_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The messages a judge is sent.
fn judge_prompt(
    context: &Scoring,
    judge: &JudgeConfig,
    prompt_text: &str,
    sample_context: &str,
    result: &SampleResult,
) -> Result<Vec<ChatMessage>, String> {
    match &judge.prompt {
        JudgePrompt::BuiltIn => Ok(vec![ChatMessage {
            role: "user".to_owned(),
            content: built_in_rubric(
                prompt_text,
                &result.output,
                &result.expected_output,
                sample_context,
                &judge.criterion,
            ),
        }]),
        JudgePrompt::Registry { name, label } => {
            let selector = if label.is_empty() {
                VersionSelector::Active
            } else {
                VersionSelector::Label(label.clone())
            };
            let view = context
                .registry
                .get_version(name, &selector)
                .map_err(|err| format!("judge prompt: {err}"))?;
            let offered = [
                ("prompt", Value::from(prompt_text)),
                ("response", Value::from(result.output.as_str())),
                ("expected", Value::from(result.expected_output.as_str())),
                ("context", Value::from(sample_context)),
                ("input", result.input.clone()),
                ("criterion", Value::from(judge.criterion.as_str())),
            ];
            let values = offered
                .into_iter()
                .filter(|(key, _)| view.version.variables.iter().any(|v| v.name == *key))
                .map(|(key, value)| (key.to_owned(), value))
                .collect();
            let exact = VersionSelector::Version(view.version.version.to_string());
            let (rendered, _) = context
                .registry
                .render(name, &exact, &values)
                .map_err(|err| format!("rendering judge prompt {name}: {err}"))?;
            Ok(messages(rendered))
        }
    }
}

/// The template variables of a sample: a string input is `input`; an object's keys are
/// variables. Only the variables the version declares are passed, so a dataset may carry
/// extra fields.
pub(super) fn variables(input: &Value, declared: &HashSet<String>) -> BTreeMap<String, Value> {
    let all: BTreeMap<String, Value> = match input {
        Value::Object(map) => map.clone().into_iter().collect(),
        other => BTreeMap::from([("input".to_owned(), other.clone())]),
    };
    all.into_iter()
        .filter(|(name, _)| declared.contains(name))
        .collect()
}

/// Chat prompts send their messages; text prompts one user message.
pub(super) fn messages(rendered: RenderedPrompt) -> Vec<ChatMessage> {
    if rendered.messages.is_empty() {
        vec![ChatMessage {
            role: "user".to_owned(),
            content: rendered.text,
        }]
    } else {
        rendered
            .messages
            .into_iter()
            .map(|m| ChatMessage {
                role: m.role,
                content: m.content,
            })
            .collect()
    }
}

/// The conversation as one text, for judges.
pub(super) fn transcript(messages: &[ChatMessage]) -> String {
    if let [only] = messages {
        return only.content.clone();
    }
    messages
        .iter()
        .map(|m| format!("{}: {}", m.role, m.content))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The cause a failed model call is grouped under.
fn provider_reason(err: &ProviderError) -> String {
    match err {
        ProviderError::Timeout(_) => "model call timed out".to_owned(),
        ProviderError::Exhausted { .. } => "model call failed after retries".to_owned(),
        ProviderError::Refused { status, .. } => format!("model call refused (HTTP {status})"),
        ProviderError::Malformed(_) => "unreadable model answer".to_owned(),
        ProviderError::Connection(_) => "model connection failed".to_owned(),
    }
}
