//! Built-in filters behind a size check, so one filter call cannot outgrow the render's
//! memory budget.
//!
//! minijinja's fuel charges the data a template creates, but several built-in filters
//! turn a value into text before they charge anything: `string`, `tojson`, `pprint`,
//! the text filters given a list, and `indent`'s width or `join`'s items. A list costs
//! little to make and can stand for a huge text (`[name] * 100000` is 100,000 references
//! to one string; lists nested by reference grow exponentially), so those filters could
//! allocate gigabytes in one call. Each guarded filter first walks its arguments the way
//! the filter will, adding up an upper bound of the text it will produce, and refuses
//! before allocating when that bound is over what is left of the budget; a value nested
//! deeper than [`MAX_NESTING`] (a namespace holding itself is infinitely deep) is
//! refused too, since printing it would recurse without end. The walk's own work is
//! charged, so repeated calls cannot turn it into a CPU loop.

use minijinja::value::{Kwargs, ObjectRepr, Rest, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, ErrorKind, State, Value};

/// The deepest value a guarded filter prints. Deeper values are refused: printing
/// recurses once per level.
pub(super) const MAX_NESTING: usize = 256;

/// Bytes per unit of minijinja fuel (its documented data cost: one fuel per 64 bytes).
const BYTES_PER_FUEL: u64 = 64;

/// A printed string can grow by escaping: JSON's `\u003c` is six bytes for one.
const ESCAPE_FACTOR: u64 = 6;

/// Registers the guarded versions of the built-in filters that print their input.
pub(super) fn register(env: &mut Environment<'static>) {
    for name in [
        "lower",
        "upper",
        "title",
        "capitalize",
        "trim",
        "split",
        "lines",
        "escape",
        "e",
        "string",
        "format",
        "join",
        "min",
        "max",
        "sort",
        "unique",
    ] {
        let builtin = builtin_filter(name);
        let name_owned = name.to_owned();
        env.add_filter(
            name,
            move |state: &mut State<'_, '_>, args: Rest<ValueOrKwargs>| {
                let args: Vec<Value> = args.0.into_iter().map(ValueOrKwargs::into_value).collect();
                charge_for_printing(state, &name_owned, &args)?;
                builtin.call(state, &args)
            },
        );
    }
    env.add_filter("replace", replace);
    env.add_filter("indent", indent);
    env.add_filter("pprint", pprint);
    env.add_filter("tojson", tojson);
}

/// The public built-in a guarded filter calls once its input passed the check.
fn builtin_filter(name: &str) -> Value {
    use minijinja::filters;
    match name {
        "lower" => Value::from_function(filters::lower),
        "upper" => Value::from_function(filters::upper),
        "title" => Value::from_function(filters::title),
        "capitalize" => Value::from_function(filters::capitalize),
        "trim" => Value::from_function(filters::trim),
        "split" => Value::from_function(filters::split),
        "lines" => Value::from_function(filters::lines),
        "escape" | "e" => Value::from_function(filters::escape),
        "string" => Value::from_function(filters::string),
        "format" => Value::from_function(filters::format),
        "join" => Value::from_function(filters::join),
        "min" => Value::from_function(filters::min),
        "max" => Value::from_function(filters::max),
        "sort" => Value::from_function(filters::sort),
        "unique" => Value::from_function(filters::unique),
        other => unreachable!("no guarded built-in filter {other}"),
    }
}

/// Checks and charges what printing `args` will cost. `join` also pays its separator
/// once per item; the comparing filters (`min`, `max`, `sort`, `unique`) pay for the
/// bytes they compare, which their own fuel does not count.
fn charge_for_printing(state: &State<'_, '_>, filter: &str, args: &[Value]) -> Result<(), Error> {
    let mut walk = SizeWalk::new(state, 1);
    let Some((value, rest)) = args.split_first() else {
        return Ok(());
    };
    if filter == "join" {
        let separator = rest
            .first()
            .filter(|v| !v.is_kwargs())
            .and_then(Value::as_str)
            .map_or(0, str::len) as u64;
        walk.per_item = separator;
    }
    walk.add(value, 0)?;
    for arg in rest.iter().filter(|arg| !arg.is_kwargs()) {
        walk.per_item = 0;
        walk.add(arg, 0)?;
    }
    walk.charge(state)
}

/// `replace(old, new, count)`: the result's size is known before it is made.
fn replace(state: &State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args: Vec<Value> = args.0.into_iter().map(ValueOrKwargs::into_value).collect();
    let (value, old, new, count, kwargs): (Value, String, String, Option<i64>, Kwargs) =
        minijinja::value::from_args(&args)?;
    let count = match count {
        Some(count) => Some(count),
        None => kwargs.get::<Option<i64>>("count")?,
    };
    kwargs.assert_all_used()?;
    let text = printed(state, &value)?;
    let limit = count
        .and_then(|count| usize::try_from(count).ok())
        .unwrap_or(usize::MAX);
    let occurrences = if old.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(old.as_str()).count()
    }
    .min(limit);
    let grows_by = (new.len() as u64).saturating_mul(occurrences as u64);
    let mut walk = SizeWalk::new(state, 1);
    walk.total = (text.len() as u64).saturating_add(grows_by);
    walk.check()?;
    walk.charge(state)?;
    Ok(Value::from(text.replacen(old.as_str(), &new, limit)))
}

/// `indent(width, first, blank)`: each line gains `width` spaces.
fn indent(state: &mut State<'_, '_>, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args: Vec<Value> = args.0.into_iter().map(ValueOrKwargs::into_value).collect();
    let Some((value, rest)) = args.split_first() else {
        return Err(Error::new(
            ErrorKind::MissingArgument,
            "indent needs a value",
        ));
    };
    let text = printed(state, value)?;
    let width = match rest.first().filter(|v| !v.is_kwargs()) {
        Some(width) => usize::try_from(width.clone())?,
        None => rest
            .last()
            .filter(|v| v.is_kwargs())
            .and_then(|kwargs| kwargs.get_attr("width").ok())
            .filter(|width| !width.is_undefined())
            .map(usize::try_from)
            .transpose()?
            .unwrap_or(4),
    };
    let lines = text.lines().count().max(1) as u64;
    let mut walk = SizeWalk::new(state, 1);
    walk.total = (text.len() as u64).saturating_add(lines.saturating_mul(width as u64 + 1));
    walk.check()?;
    walk.charge(state)?;
    let mut call = Vec::with_capacity(args.len());
    call.push(Value::from(text));
    call.extend(rest.iter().cloned());
    Value::from_function(minijinja::filters::indent).call(state, &call)
}

/// `pprint`: the value's debug form.
fn pprint(state: &State<'_, '_>, value: &Value) -> Result<Value, Error> {
    let mut walk = SizeWalk::new(state, ESCAPE_FACTOR);
    // Pretty printing puts each item on its own line, indented by its depth.
    walk.per_level = 2;
    walk.add(value, 0)?;
    walk.charge(state)?;
    Ok(Value::from(minijinja::filters::pprint(value)))
}

/// `tojson(indent)`: JSON, escaped for HTML, optionally indented.
fn tojson(state: &State<'_, '_>, value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args: Vec<Value> = args.0.into_iter().map(ValueOrKwargs::into_value).collect();
    let (indent, kwargs): (Option<Value>, Kwargs) = minijinja::value::from_args(&args)?;
    let indent_value = match &indent {
        Some(indent) => Some(indent.clone()),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let width = match &indent_value {
        None => 0,
        Some(v) if v.kind() == ValueKind::Bool && v.is_true() => 2,
        Some(v) if v.kind() == ValueKind::Bool => 0,
        Some(v) => usize::try_from(v.clone())?,
    };
    let mut walk = SizeWalk::new(state, ESCAPE_FACTOR);
    walk.per_level = width as u64;
    walk.per_item = width as u64;
    walk.add(value, 0)?;
    walk.charge(state)?;
    minijinja::filters::tojson(value, indent, kwargs)
}

/// `value` as the text a filter would see, refused before printing when that text
/// would not fit in what is left of the budget.
fn printed(state: &State<'_, '_>, value: &Value) -> Result<String, Error> {
    if let Some(text) = value.as_str() {
        return Ok(text.to_owned());
    }
    let mut walk = SizeWalk::new(state, 1);
    walk.add(value, 0)?;
    walk.charge(state)?;
    Ok(value.to_string())
}

/// An upper bound on the bytes printing a value takes, computed without printing it and
/// abandoned as soon as it passes what is left of the render's budget.
struct SizeWalk {
    /// What is left of the budget, in bytes.
    limit: u64,
    /// The bound so far, in bytes.
    total: u64,
    /// Bytes a printed string may take per byte of the string.
    string_factor: u64,
    /// Extra bytes per item (a separator, or an indentation step).
    per_item: u64,
    /// Extra bytes per item per nesting level (pretty-printed indentation).
    per_level: u64,
}

impl SizeWalk {
    fn new(state: &State<'_, '_>, string_factor: u64) -> Self {
        let limit = state.fuel_levels().map_or(u64::MAX, |(_, remaining)| {
            remaining.saturating_mul(BYTES_PER_FUEL)
        });
        Self {
            limit,
            total: 0,
            string_factor,
            per_item: 0,
            per_level: 0,
        }
    }

    fn add(&mut self, value: &Value, depth: usize) -> Result<(), Error> {
        if depth > MAX_NESTING {
            return Err(Error::new(
                ErrorKind::OutOfFuel,
                format!("a value is nested deeper than {MAX_NESTING} levels and cannot be printed"),
            ));
        }
        match value.kind() {
            ValueKind::String | ValueKind::Bytes => {
                let len = value
                    .as_str()
                    .map_or_else(|| value.as_bytes().map_or(0, <[u8]>::len), str::len)
                    as u64;
                self.grow(len.saturating_mul(self.string_factor).saturating_add(2))?;
            }
            ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
                let object = value.as_object();
                let is_map = object.is_some_and(|o| o.repr() == ObjectRepr::Map);
                self.grow(2)?;
                let items = value.try_iter()?;
                for item in items {
                    let per_item = self
                        .per_item
                        .saturating_add(self.per_level.saturating_mul(depth as u64 + 1))
                        .saturating_add(2);
                    self.grow(per_item)?;
                    if is_map {
                        let entry = value.get_item(&item)?;
                        self.add(&item, depth + 1)?;
                        self.add(&entry, depth + 1)?;
                    } else {
                        self.add(&item, depth + 1)?;
                    }
                }
            }
            // Numbers, booleans, none, undefined, callables: short when printed.
            _ => self.grow(32)?,
        }
        Ok(())
    }

    fn grow(&mut self, bytes: u64) -> Result<(), Error> {
        self.total = self.total.saturating_add(bytes);
        self.check()
    }

    fn check(&self) -> Result<(), Error> {
        if self.total >= self.limit {
            return Err(Error::new(
                ErrorKind::OutOfFuel,
                "a filter's result would outgrow the render's memory budget",
            ));
        }
        Ok(())
    }

    /// Pays for the walk (and the text it bounds) out of the render's fuel.
    fn charge(&self, state: &State<'_, '_>) -> Result<(), Error> {
        state.consume_fuel(self.total / BYTES_PER_FUEL)
    }
}
