//! Criterion benchmarks of the registry's hot read paths: rendering a compiled
//! three-variable template, and looking up and rendering a version in a registry of
//! 1,000 prompts x 5 versions (served from memory, so the store here is a stub).
//!
//! Run with `cargo bench -p llmops-registry --bench render`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use criterion::Criterion;
use llmops_registry::{
    render_stack_size, CompiledPrompt, NewPromptVersion, PromptChange, PromptEvent, PromptStore,
    PromptVariable, Registry, RegistryLimits, RegistryState, StoreError, VariableType,
    VersionSelector,
};
use serde_json::Value as JsonValue;

/// The template every benchmark renders.
const TEMPLATE: &str = "Review this {{ language }} code for {{ focus_area }}: {{ code }}";
const PROMPTS: usize = 1_000;
const VERSIONS: [&str; 5] = ["1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "2.0.0"];

/// Accepts every change and keeps nothing: the registry serves reads from memory, so a
/// store is only needed to build it.
#[derive(Default)]
struct NullStore {
    sequence: AtomicU64,
}

#[async_trait]
impl PromptStore for NullStore {
    async fn load_registry(&self) -> Result<RegistryState, StoreError> {
        Ok(RegistryState::default())
    }

    async fn load_prompt(&self, _name: &str) -> Result<RegistryState, StoreError> {
        Ok(RegistryState::default())
    }

    async fn commit_prompt_change(
        &self,
        _change: &PromptChange,
        _event: &PromptEvent,
    ) -> Result<u64, StoreError> {
        Ok(self.sequence.fetch_add(1, Ordering::SeqCst) + 1)
    }

    async fn prompt_events_after(
        &self,
        _after: u64,
        _prompt_name: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<PromptEvent>, StoreError> {
        Ok(Vec::new())
    }
}

fn variables() -> Vec<PromptVariable> {
    ["language", "focus_area", "code"]
        .into_iter()
        .map(|name| PromptVariable {
            var_type: VariableType::String,
            ..PromptVariable::inferred(name)
        })
        .collect()
}

fn values() -> BTreeMap<String, JsonValue> {
    [
        ("language", "rust"),
        ("focus_area", "error handling"),
        (
            "code",
            "fn main() {\n    let n: u32 = std::env::args().count().try_into().unwrap();\n    println!(\"{n}\");\n}",
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), JsonValue::from(value)))
    .collect()
}

fn prompt_name(index: usize) -> String {
    format!("team-{}/prompt-{index:04}", index % 10)
}

/// A registry of [`PROMPTS`] prompts with every one of [`VERSIONS`].
fn big_registry(runtime: &tokio::runtime::Runtime) -> Registry {
    runtime.block_on(async {
        let registry = Registry::open(Arc::new(NullStore::default()), RegistryLimits::default())
            .await
            .expect("an empty registry opens");
        for index in 0..PROMPTS {
            for version in VERSIONS {
                let new = NewPromptVersion {
                    name: prompt_name(index),
                    version: version.to_owned(),
                    template: format!("{TEMPLATE} (v{version})"),
                    variables: variables(),
                    ..Default::default()
                };
                registry
                    .create_version(new)
                    .await
                    .expect("the bench versions are valid");
            }
        }
        registry
    })
}

/// The lookups cycled through, so that not every iteration hits the same entry.
fn lookups() -> Vec<(String, VersionSelector)> {
    (0..PROMPTS)
        .step_by(7)
        .map(|index| {
            let version = VERSIONS[index % VERSIONS.len()];
            (
                prompt_name(index),
                VersionSelector::Version(version.to_owned()),
            )
        })
        .collect()
}

fn compiled_render(c: &mut Criterion) {
    let (compiled, _) =
        CompiledPrompt::compile(TEMPLATE, &[], &variables(), &RegistryLimits::default())
            .expect("the template compiles");
    let values = values();
    c.bench_function("compiled_prompt/render_3_vars", |b| {
        b.iter(|| compiled.render(black_box(&values)).expect("renders"))
    });
}

/// The same render on a thread with less stack than a render may need (the 8 MiB main
/// thread): each render maps a stack of its own for the call.
fn compiled_render_switching_stack(c: &mut Criterion) {
    let (compiled, _) =
        CompiledPrompt::compile(TEMPLATE, &[], &variables(), &RegistryLimits::default())
            .expect("the template compiles");
    let values = values();
    c.bench_function("compiled_prompt/render_3_vars_on_a_small_stack", |b| {
        b.iter(|| compiled.render(black_box(&values)).expect("renders"))
    });
}

fn registry_reads(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let registry = big_registry(&runtime);
    let lookups = lookups();
    let values = values();

    let mut group = c.benchmark_group("registry_1000x5");
    let mut next = lookups.iter().cycle();
    group.bench_function("get_version", |b| {
        b.iter(|| {
            let (name, selector) = next.next().expect("cycle is endless");
            registry
                .get_version(black_box(name), black_box(selector))
                .expect("the version exists")
        })
    });
    let mut next = lookups.iter().cycle();
    group.bench_function("render", |b| {
        b.iter(|| {
            let (name, selector) = next.next().expect("cycle is endless");
            registry
                .render(black_box(name), black_box(selector), black_box(&values))
                .expect("renders")
        })
    });
    group.finish();
    // The registry is dropped inside the runtime it was built in.
    let _guard = runtime.enter();
    drop(registry);
}

/// The server's runtime threads have room for a render under the default limits (see
/// `RUNTIME_THREAD_STACK` in `src/main.rs`), so the hot-path benchmarks run on such a
/// thread; one benchmark shows the cost on a thread without that room.
fn main() {
    let stack = render_stack_size(&RegistryLimits::default()) + 16 * 1024 * 1024;
    std::thread::Builder::new()
        .name("bench".into())
        .stack_size(stack)
        .spawn(|| {
            let mut criterion = Criterion::default().configure_from_args();
            compiled_render(&mut criterion);
            registry_reads(&mut criterion);
            criterion.final_summary();
        })
        .expect("a benchmark thread")
        .join()
        .expect("the benchmarks finish");
    let mut criterion = Criterion::default().configure_from_args();
    compiled_render_switching_stack(&mut criterion);
    criterion.final_summary();
}
