//! The template engine's sandbox: how much a compile or a render may spend, and the
//! stack it runs on.
//!
//! A render has one budget of minijinja fuel. Fuel pays one unit per step and one unit
//! per 64 bytes of data the template creates (strings, lists, captured output; see
//! `Environment::set_fuel`), and the guarded filters make the built-ins that print
//! values pay before they allocate. The budget is the smaller of the two limits an
//! operator sets, `render_fuel` steps and `max_render_memory` bytes, so a render stays
//! within both: it never takes more steps than `render_fuel`, and never creates more than
//! `max_render_memory` bytes of template values.
//!
//! Printing, comparing and dropping a nested value recurse once per nesting level, and a
//! render can nest a value as deep as its budget allows (a list wrapped in itself in a
//! loop). On a 2 MiB thread stack that overflows, which aborts the whole process.
//! Renders therefore run on a stack sized for the worst their budget allows; when the
//! calling thread has that much left (the server's runtime threads are started with it)
//! this costs nothing, otherwise a segment of that size is mapped for the call. Compiles
//! recurse as deep as one expression nests, which `expression_size` bounds.

use std::cell::RefCell;

use minijinja::value::ValueOrKwargs;
use minijinja::{Environment, Error, State, Value};

use crate::limits::RegistryLimits;

/// Bytes of data one unit of minijinja fuel pays for.
const BYTES_PER_FUEL: u64 = 64;

/// Stack a render may use per unit of fuel. Every nesting level of a value costs at
/// least seven steps to build, and printing or dropping it recurses once per level with
/// frames of up to about 500 bytes (measured), so 128 bytes per step is a safe bound.
const RENDER_STACK_PER_FUEL: u64 = 128;

/// Stack every compile and render may count on, whatever the limits: ample for the
/// deepest expression `expression_size` lets through (measured: under 1 MiB).
pub(super) const BASE_STACK: usize = 8 * 1024 * 1024;

/// Fuel a namespace costs on top of the step that makes it: the namespace and its place
/// in the list of namespaces to clear after the render.
const NAMESPACE_FUEL: u64 = 4;

/// The engine fuel of one render: within both `render_fuel` steps and
/// `max_render_memory` bytes.
pub(super) fn engine_fuel(limits: &RegistryLimits) -> u64 {
    let memory_fuel = limits.max_render_memory as u64 / BYTES_PER_FUEL;
    limits.render_fuel.min(memory_fuel).max(1)
}

/// The stack a render under `limits` may need.
pub fn render_stack_size(limits: &RegistryLimits) -> usize {
    let fuel_stack = engine_fuel(limits).saturating_mul(RENDER_STACK_PER_FUEL);
    BASE_STACK.saturating_add(usize::try_from(fuel_stack).unwrap_or(usize::MAX))
}

/// Runs `work` with at least `stack_size` bytes of stack.
pub(super) fn with_stack<R>(stack_size: usize, work: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(stack_size, stack_size, work)
}

thread_local! {
    /// The namespaces the render running on this thread has made.
    static NAMESPACES: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

/// `namespace()`, remembering each namespace so that [`clear_namespaces`] can break the
/// reference cycles a template can make with them.
pub(super) fn namespace(
    state: &State<'_, '_>,
    defaults: Option<ValueOrKwargs>,
) -> Result<Value, Error> {
    state.consume_fuel(NAMESPACE_FUEL)?;
    let namespace = minijinja::functions::namespace(defaults)?;
    NAMESPACES.with(|made| made.borrow_mut().push(namespace.clone()));
    Ok(namespace)
}

/// Empties every namespace the finished render made.
///
/// A namespace is the one mutable value in a template, so `{% set ns.me = ns %}` makes
/// a reference cycle, which reference counting never frees: each such render would leak
/// whatever the namespace holds. Assigning `none` to each of its keys breaks every
/// cycle (any cycle passes through a namespace key, the only edge made after both ends
/// exist).
pub(super) fn clear_namespaces() {
    let made = NAMESPACES.with(|made| std::mem::take(&mut *made.borrow_mut()));
    if made.is_empty() {
        return;
    }
    let env = Environment::new();
    for namespace in made {
        let Ok(keys) = namespace.try_iter() else {
            continue;
        };
        let source: String = keys
            .filter_map(|key| key.as_str().map(str::to_owned))
            .filter(|key| is_identifier(key))
            .map(|key| format!("{{% set ns.{key} = none %}}"))
            .collect();
        if source.is_empty() {
            continue;
        }
        if let Err(err) = env.render_str(&source, minijinja::context! { ns => namespace }) {
            tracing::warn!(error = %err, "clearing a template namespace failed; it may leak");
        }
    }
}

/// Whether `key` can be assigned with `{% set ns.key = ... %}`.
fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
