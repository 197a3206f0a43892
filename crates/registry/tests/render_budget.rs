//! One render never holds much more than `max_render_memory`, whatever the template.
//!
//! A counting allocator measures the bytes the rendering thread holds at its peak. Every
//! template here either renders or fails with RESOURCE_EXHAUSTED; none may take the
//! process down (a stack overflow aborts the test binary) or hold more than twice the
//! budget (growth by doubling, so a string being extended can briefly need twice its
//! size).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use llmops_registry::{
    CompiledPrompt, PromptVariable, RegistryError, RegistryLimits, VariableType,
};
use serde_json::{json, Value as JsonValue};

/// Counts the bytes each thread holds (allocated minus freed on that thread).
struct CountingAllocator;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the thread-locals are gone while a thread is torn down.
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counting
// touches only `const`-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MIB: usize = 1024 * 1024;

/// What rendering `template` did: its result, the bytes held at the peak, and the bytes
/// still held afterwards (a leak), both relative to before the render.
struct Measured {
    result: Result<String, RegistryError>,
    peak: isize,
    kept: isize,
}

fn measure(template: &str, values: &BTreeMap<String, JsonValue>) -> Measured {
    let limits = RegistryLimits::default();
    let (prompt, variables) = CompiledPrompt::compile(template, &[], &[], &limits)
        .unwrap_or_else(|violations| panic!("{template}: compile failed: {violations:?}"));
    // Only the variables the template uses: an unknown one would fail the render early.
    let values: BTreeMap<String, JsonValue> = values
        .iter()
        .filter(|(name, _)| variables.iter().any(|v| &v.name == *name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let values = &values;
    let before = HELD.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = prompt.render(values).map(|rendered| rendered.text);
    let peak = PEAK.with(Cell::get) - before;
    let result = match result {
        // Keep only a summary of big outputs; the text itself would count as held.
        Ok(text) => Ok(format!("{} bytes", text.len())),
        Err(err) => Err(err),
    };
    let kept = HELD.with(Cell::get) - before;
    Measured { result, peak, kept }
}

fn name_of(len: usize) -> BTreeMap<String, JsonValue> {
    BTreeMap::from([("name".to_owned(), json!("n".repeat(len)))])
}

fn assert_within_budget(template: &str, values: &BTreeMap<String, JsonValue>) -> Measured {
    let measured = measure(template, values);
    let budget = RegistryLimits::default().max_render_memory as isize;
    assert!(
        measured.peak <= 2 * budget,
        "{template}: held {} MiB at the peak (budget {} MiB)",
        measured.peak / MIB as isize,
        budget / MIB as isize
    );
    match &measured.result {
        Ok(_) | Err(RegistryError::ResourceExhausted(_)) => {}
        // A template error (a wrong type, say) is fine; a crash or a hog is not.
        Err(RegistryError::InvalidArgument(violations))
            if violations.iter().all(|v| v.field == "template") => {}
        Err(other) => panic!("{template}: unexpected error {other:?}"),
    }
    measured
}

fn assert_exhausted(template: &str, values: &BTreeMap<String, JsonValue>) {
    let measured = assert_within_budget(template, values);
    match measured.result {
        Err(RegistryError::ResourceExhausted(message)) => assert!(
            message.contains("max_render_memory") && message.contains("render_fuel"),
            "{template}: the message should name the limits: {message}"
        ),
        other => panic!("{template}: expected RESOURCE_EXHAUSTED, got {other:?}"),
    }
}

/// The three attacks of the hardening issue: a string doubled in a loop, a huge
/// separator repeated by `join`, and a recursive macro doubling its argument.
#[test]
fn the_reported_memory_attacks_are_refused_within_the_budget() {
    assert_exhausted(
        "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
        &BTreeMap::new(),
    );
    assert_exhausted("{{ range(100000)|join(name) }}", &name_of(100_000));
    assert_exhausted(
        "{% macro f(s, n) %}{% if n > 0 %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}{{ f('a', 60) }}",
        &BTreeMap::new(),
    );
}

/// A list holding the previous one twice, forty times over (kept in a namespace), costs forty steps to build
/// and prints as 2^40 copies: `~` formatted it into one string inside one engine step,
/// where fuel cannot interrupt (gigabytes, minutes; found by the property test below).
/// The patched engine (vendor/minijinja) measures what `~` would print first.
#[test]
fn a_list_that_prints_exponentially_larger_than_it_cost_is_refused_before_concatenation() {
    for template in [
        "{% set ns = namespace(a=['x']) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ (ns.a ~ '')|length }}",
        "{% set ns = namespace(a=['x']) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ('' ~ ns.a)|length }}",
        "{% set ns = namespace(a={'k': 'x'}) %}{% for i in range(40) %}{% set ns.a = {'l': ns.a, 'r': ns.a} %}{% endfor %}{{ (ns.a ~ ns.a)|length }}",
    ] {
        assert_exhausted(template, &BTreeMap::new());
    }
    // Comparing two such lists visits every nested item: 2^32 of them, minutes of one
    // thread's time, before the patch counted them against the budget.
    assert_exhausted(
        "{% set ns = namespace(a=['x'], b=['x']) %}{% for i in range(32) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
        &BTreeMap::new(),
    );
    for template in [
        "{% set ns = namespace(a=['x'], b=['x']) %}{% for i in range(32) %}{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a in [ns.b] }}",
        "{% set ns = namespace(a=['x']) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns.a in 'text' }}",
    ] {
        assert_exhausted(template, &BTreeMap::new());
    }
    // A container that prints small is still concatenated as before, and compared.
    let (prompt, _) = CompiledPrompt::compile(
        "{{ [1, 'two'] ~ '!' }}",
        &[],
        &[],
        &RegistryLimits::default(),
    )
    .unwrap();
    assert_eq!(prompt.render(&BTreeMap::new()).unwrap().text, "[1, 'two']!");
    let (prompt, _) = CompiledPrompt::compile(
        "{{ [[1, 2], {'a': [3]}] == [[1, 2], {'a': [3]}] }} {{ [[1, 2]] == [[1, 3]] }}",
        &[],
        &[],
        &RegistryLimits::default(),
    )
    .unwrap();
    assert_eq!(prompt.render(&BTreeMap::new()).unwrap().text, "True False");
}

/// Filters whose size arguments go straight to one allocation (minijinja issue 924).
#[test]
fn size_arguments_cannot_ask_for_one_huge_allocation() {
    for template in [
        "{{ 'a'|indent(10000000000) }}",
        "{{ 'a\nb\nc'|indent(width=100000000) }}",
        "{{ [1, 2]|tojson(indent=100000000000) }}",
        "{{ range(1000)|list|tojson(indent=1000000) }}",
        "{{ 'a' * 10000000000 }}",
        "{{ '%0999999999d'|format(1) }}",
        "{{ name|replace('n', name) }}",
        "{{ name|replace('', name) }}",
    ] {
        assert_exhausted(template, &name_of(100_000));
    }
}

/// Lists that stand for far more text than they occupy (references to one string,
/// repeated lazily, or nested by reference), printed by every filter that prints.
#[test]
fn printing_a_list_that_stands_for_gigabytes_is_refused() {
    let generators = [
        "([name] * 100000)",
        "([[name] * 1000] * 1000)",
        "(range(100000)|list * 100000)",
        "(range(100000)|map('string')|list)",
    ];
    let consumers = [
        "G|string|length",
        "G|tojson|length",
        "G|tojson(indent=2)|length",
        "G|pprint|length",
        "G|join|length",
        "G|join(name)|length",
        "G|lower|length",
        "G|upper|length",
        "G|title|length",
        "G|capitalize|length",
        "G|trim|length",
        "G|escape|length",
        "G|replace('n', 'm')|length",
        "G|indent(4)|length",
        "G|lines|length",
        "G|split|list|length",
        "'%s %s'|format(G, G)|length",
        "G|map('upper')|list|length",
        "G|map('tojson')|join|length",
        "G|min|length",
        "G|max|length",
        "G|sort|length",
        "G|unique|list|length",
        "G|list|length",
        "(G|string) * 1000",
    ];
    for generator in generators {
        for consumer in consumers {
            let template = format!("{{{{ {} }}}}", consumer.replace('G', generator));
            assert_within_budget(&template, &name_of(100_000));
        }
    }
}

/// Deep nesting made at render time: printing, comparing and dropping recurse once per
/// level, which overflowed the stack and aborted the process.
#[test]
fn deeply_nested_values_neither_overflow_the_stack_nor_leak() {
    let nest = |tail: &str| {
        format!(
            "{{% set ns = namespace(x=1, y=1) %}}{{% for i in range(60000) %}}{{% set ns.x = [ns.x] %}}{{% set ns.y = [ns.y] %}}{{% endfor %}}{tail}"
        )
    };
    for tail in [
        "ok",
        "{{ ns.x|string|length }}",
        "{{ ns.x|tojson|length }}",
        "{{ ns.x|pprint|length }}",
        "{{ ns.x == ns.y }}",
        "{{ ns.x }}",
    ] {
        let measured = assert_within_budget(&nest(tail), &BTreeMap::new());
        assert!(
            measured.kept < MIB as isize,
            "{tail}: kept {} bytes",
            measured.kept
        );
    }
}

/// A namespace holding itself is infinitely deep: printing it is refused, and the
/// cycle is broken after the render, so nothing leaks.
#[test]
fn a_namespace_that_holds_itself_is_refused_and_freed() {
    let values = name_of(1_000_000);
    for tail in [
        "ok",
        "{{ ns|string|length }}",
        "{{ ns|tojson }}",
        "{{ ns }}",
    ] {
        let template = format!(
            "{{% set ns = namespace(big=name ~ '') %}}{{% set ns.me = ns %}}{{% set ns.list = [ns, [ns]] %}}{tail}"
        );
        let measured = assert_within_budget(&template, &values);
        assert!(
            measured.kept < 100_000,
            "{tail}: a render kept {} bytes (the namespace leaked)",
            measured.kept
        );
    }
}

/// Templates that nest deeply in the source: the parser and compiler recurse once per
/// level, which overflowed a 2 MiB thread stack at about 10,000 levels, and folding
/// `'a' ~ 'a' ~ ...` took minutes. They are refused, naming the tag.
#[test]
fn deeply_nested_templates_are_refused_without_crashing() {
    let limits = RegistryLimits::default();
    let bytes = limits.max_template_bytes - 16;
    for (prefix, unit, suffix) in [
        ("{{ ", "-", "1 }}"),
        ("{{ ", "not ", "1 }}"),
        ("{{ 1", "|abs", " }}"),
        ("{{ 1", "+1", " }}"),
        ("{{ 'a'", "~'a'", " }}"),
        ("{{ ", "(", "1 }}"),
        ("", "{% if 1 %}", ""),
    ] {
        let template = format!("{prefix}{}{suffix}", unit.repeat(bytes / unit.len()));
        let violations = CompiledPrompt::compile(&template, &[], &[], &limits)
            .err()
            .unwrap_or_else(|| panic!("{unit}: a {bytes}-byte nesting compiled"));
        assert_eq!(violations[0].field, "template", "{unit}");
    }
    // Just under the bound, the deepest expressions compile and render on any thread.
    for (template, expected) in [
        (format!("{{{{ 1{} }}}}", "+1".repeat(999)), "1000"),
        (format!("{{{{ {}1 }}}}", "-".repeat(1000)), "1"),
        (
            format!("{{{{ 'a'{} }}}}", "~'a'".repeat(999)),
            &*"a".repeat(1000),
        ),
    ] {
        let (prompt, _) = CompiledPrompt::compile(&template, &[], &[], &limits).unwrap();
        assert_eq!(prompt.render(&BTreeMap::new()).unwrap().text, expected);
    }
}

/// Ordinary templates are untouched by the guards: same output as before.
#[test]
fn guarded_filters_render_as_the_built_ins_do() {
    let values = BTreeMap::from([
        ("items".to_owned(), json!(["b", "a", "c"])),
        (
            "user".to_owned(),
            json!({"name": "Ada", "tags": ["x", "y"]}),
        ),
        ("text".to_owned(), json!("line one\nline two")),
    ]);
    let cases = [
        ("{{ items|join(', ') }}", "b, a, c"),
        ("{{ items|join }}", "bac"),
        ("{{ items|sort|join('-') }}", "a-b-c"),
        ("{{ items|min }}{{ items|max }}", "ac"),
        ("{{ items|unique|list|length }}", "3"),
        (
            "{{ user|tojson }}",
            r#"{"name": "Ada", "tags": ["x", "y"]}"#,
        ),
        (
            "{{ user.tags|tojson(indent=2) }}",
            "[\n  \"x\",\n  \"y\"\n]",
        ),
        ("{{ text|indent(2) }}", "line one\n  line two"),
        (
            "{{ text|indent(width=2, first=true) }}",
            "  line one\n  line two",
        ),
        ("{{ 'aaa'|replace('a', 'b', 2) }}", "bba"),
        ("{{ 'aaa'|replace('a', 'b', count=1) }}", "baa"),
        ("{{ 'Hello'|replace('l', 'L') }}", "HeLLo"),
        ("{{ '  x  '|trim }}|{{ 'xxhixx'|trim('x') }}", "x|hi"),
        ("{{ 'hello world'|title }}", "Hello World"),
        ("{{ user.tags|string }}", "['x', 'y']"),
        ("{{ '%s-%d'|format('a', 3) }}", "a-3"),
        ("{{ user.name|upper }}{{ user.name|lower }}", "ADAada"),
        ("{{ 'a,b'|split(',')|join(' ') }}", "a b"),
    ];
    let declared = [
        ("items", VariableType::List),
        ("user", VariableType::Object),
        ("text", VariableType::String),
    ]
    .map(|(name, var_type)| PromptVariable {
        var_type,
        required: false,
        ..PromptVariable::inferred(name)
    });
    let limits = RegistryLimits::default();
    for (template, expected) in cases {
        let (prompt, _) = CompiledPrompt::compile(template, &[], &declared, &limits)
            .unwrap_or_else(|violations| panic!("{template}: {violations:?}"));
        let text = prompt
            .render(&values)
            .unwrap_or_else(|err| panic!("{template}: {err}"))
            .text;
        assert_eq!(text, expected, "{template}");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Pieces of templates that make data grow, nest or loop; a generated template is a
    /// sequence of them around a namespace `ns` and the variable `name`.
    fn piece() -> impl Strategy<Value = String> {
        let value = prop_oneof![
            Just("ns.x".to_owned()),
            Just("name".to_owned()),
            Just("[ns.x, ns.x]".to_owned()),
            Just("([name] * 100)".to_owned()),
            Just("range(1000)".to_owned()),
            Just("(ns.x ~ ns.x)".to_owned()),
            Just("{'a': ns.x}".to_owned()),
        ];
        let filter = prop_oneof![
            Just("string"),
            Just("tojson"),
            Just("pprint"),
            Just("join"),
            Just("join(name)"),
            Just("upper"),
            Just("replace('a', name)"),
            Just("indent(1000)"),
            Just("list"),
            Just("sort"),
            Just("unique|list"),
            Just("length"),
            Just("format(name)"),
            Just("batch(3)|list"),
        ];
        prop_oneof![
            (value.clone(), filter.clone())
                .prop_map(|(v, f)| format!("{{% set ns.x = {v}|{f} %}}")),
            (value.clone(), filter).prop_map(|(v, f)| format!("{{{{ ({v}|{f})|length }}}}")),
            value
                .clone()
                .prop_map(|v| format!("{{% for i in range(30) %}}{{% set ns.x = {v} %}}{{% endfor %}}")),
            value.prop_map(|v| format!("{{% set ns.y = [ns.x, {v}] %}}{{% set ns.x = ns.y %}}")),
            Just("{% set ns.me = ns %}".to_owned()),
            Just("{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f(ns.x|string, 30)|length }}".to_owned()),
        ]
    }

    fn template() -> impl Strategy<Value = String> {
        prop::collection::vec(piece(), 1..6)
            .prop_map(|pieces| format!("{{% set ns = namespace(x='ab') %}}{}", pieces.concat()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Any mix of the pieces renders or is refused within the memory budget, and
        /// leaks nothing (namespaces that hold themselves included).
        #[test]
        fn generated_templates_stay_within_the_budget(template in template()) {
            let measured = assert_within_budget(&template, &name_of(10_000));
            prop_assert!(measured.kept < MIB as isize, "{template}: kept {} bytes", measured.kept);
        }

        /// Any text compiles or is refused with violations of its fields; never a panic.
        #[test]
        fn any_text_compiles_or_is_refused(text in "\\PC{0,400}") {
            let limits = RegistryLimits::default();
            match CompiledPrompt::compile(&text, &[], &[], &limits) {
                Ok((prompt, variables)) => {
                    let values: BTreeMap<String, JsonValue> = variables
                        .iter()
                        .map(|v| (v.name.clone(), json!("v")))
                        .collect();
                    match prompt.render(&values) {
                        Ok(_)
                        | Err(RegistryError::InvalidArgument(_))
                        | Err(RegistryError::ResourceExhausted(_)) => {}
                        Err(other) => prop_assert!(false, "{text:?}: {other:?}"),
                    }
                }
                Err(violations) => prop_assert!(!violations.is_empty()),
            }
        }
    }
}
