//! Compiling and rendering prompt templates with minijinja, sandboxed.
//!
//! Every version is compiled once, when it is created (or loaded at start-up), into its
//! own environment; renders reuse it. The environment is strict about undefined values,
//! spends a bounded budget of steps and memory, writes into a bounded buffer and runs on
//! a stack sized for its limits (see [`sandbox`]), so no template can hang the server,
//! exhaust its memory or overflow its stack.

mod expression_size;
mod guarded_filters;
mod sandbox;

pub use sandbox::render_stack_size;

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::Value as JsonValue;

use crate::error::{FieldViolation, RegistryError};
use crate::limits::RegistryLimits;
use crate::model::ChatMessage;
use crate::variable::{CheckedVariable, PromptVariable};

const TEXT_TEMPLATE: &str = "template";
const ALLOWED_ROLES: &[&str] = &["system", "user", "assistant", "tool", "developer"];

/// A rendered chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedMessage {
    /// The message's role.
    pub role: String,
    /// The rendered text.
    pub content: String,
}

/// The output of a render.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// The rendered text template (empty when the version has none).
    pub text: String,
    /// The rendered chat messages.
    pub messages: Vec<RenderedMessage>,
}

/// A version's templates, compiled, with its variables' checks.
#[derive(Debug)]
pub struct CompiledPrompt {
    env: Environment<'static>,
    has_text: bool,
    roles: Vec<String>,
    variables: Vec<CheckedVariable>,
    limits: RegistryLimits,
}

impl CompiledPrompt {
    /// Compiles and checks the templates and variables of a new version. Returns the
    /// compiled prompt and the final variable list (inferred when none were declared).
    /// Every problem found is reported, each naming its field.
    pub fn compile(
        template: &str,
        messages: &[ChatMessage],
        declared: &[PromptVariable],
        limits: &RegistryLimits,
    ) -> Result<(Self, Vec<PromptVariable>), Vec<FieldViolation>> {
        let mut violations = Vec::new();
        check_sizes(template, messages, declared, limits, &mut violations);
        if !violations.is_empty() {
            // Compiling a template far over the size cap would be wasted work.
            return Err(violations);
        }
        sandbox::with_stack(sandbox::BASE_STACK, || {
            Self::compile_checked(template, messages, declared, limits)
        })
    }

    /// [`Self::compile`] once the sizes are known to be within the limits.
    fn compile_checked(
        template: &str,
        messages: &[ChatMessage],
        declared: &[PromptVariable],
        limits: &RegistryLimits,
    ) -> Result<(Self, Vec<PromptVariable>), Vec<FieldViolation>> {
        let mut violations = Vec::new();
        let mut env = sandboxed_environment(limits);
        let has_text = !template.is_empty();
        if has_text {
            add_template(
                &mut env,
                TEXT_TEMPLATE,
                template,
                "template",
                &mut violations,
            );
        }
        for (index, message) in messages.iter().enumerate() {
            if !ALLOWED_ROLES.contains(&message.role.as_str()) {
                violations.push(FieldViolation::new(
                    format!("messages[{index}].role"),
                    format!(
                        "role {:?} is not one of {}",
                        message.role,
                        ALLOWED_ROLES.join(", ")
                    ),
                ));
            }
            let field = format!("messages[{index}].template");
            add_template(
                &mut env,
                &message_template_name(index),
                &message.template,
                &field,
                &mut violations,
            );
        }
        if !violations.is_empty() {
            return Err(violations);
        }

        let used = used_variables(&env);
        if declared.is_empty() && used.len() > limits.max_variables {
            // Declared variables were counted before compiling; inferred ones count too.
            violations.push(FieldViolation::new(
                "variables",
                format!(
                    "the template uses {} variables, over the limit of {}",
                    used.len(),
                    limits.max_variables
                ),
            ));
            return Err(violations);
        }
        let variables: Vec<PromptVariable> = if declared.is_empty() {
            used.iter().map(PromptVariable::inferred).collect()
        } else {
            declared.to_vec()
        };
        let mut checked = Vec::with_capacity(variables.len());
        let mut seen = BTreeSet::new();
        for (index, variable) in variables.iter().enumerate() {
            let field = format!("variables[{index}]");
            if !seen.insert(variable.name.as_str()) {
                violations.push(FieldViolation::new(
                    format!("{field}.name"),
                    format!("variable {:?} is declared twice", variable.name),
                ));
                continue;
            }
            match CheckedVariable::new(&field, variable.clone()) {
                Ok(variable) => checked.push(variable),
                Err(mut problems) => violations.append(&mut problems),
            }
        }
        for name in used.iter().filter(|name| !seen.contains(name.as_str())) {
            violations.push(FieldViolation::new(
                "variables",
                format!("the template uses {name:?}, which is not declared"),
            ));
        }
        if !violations.is_empty() {
            return Err(violations);
        }
        let compiled = Self {
            env,
            has_text,
            roles: messages.iter().map(|m| m.role.clone()).collect(),
            variables: checked,
            limits: limits.clone(),
        };
        Ok((compiled, variables))
    }

    /// Renders with the given values. Checks every value first and reports every problem
    /// at once (fields `variables.<name>`). Each value is substituted once: a value that
    /// contains `{{ x }}` stays literal.
    pub fn render(
        &self,
        values: &BTreeMap<String, JsonValue>,
    ) -> Result<RenderedPrompt, RegistryError> {
        let context = self.context(values)?;
        sandbox::with_stack(render_stack_size(&self.limits), || {
            let rendered = self.render_all(&context);
            sandbox::clear_namespaces();
            rendered
        })
    }

    fn render_all(
        &self,
        context: &BTreeMap<String, JsonValue>,
    ) -> Result<RenderedPrompt, RegistryError> {
        let mut budget = OutputBudget::new(self.limits.max_render_bytes);
        let text = if self.has_text {
            self.render_one(TEXT_TEMPLATE, "template", context, &mut budget)?
        } else {
            String::new()
        };
        let messages = self
            .roles
            .iter()
            .enumerate()
            .map(|(index, role)| {
                let field = format!("messages[{index}].template");
                let content =
                    self.render_one(&message_template_name(index), &field, context, &mut budget)?;
                Ok(RenderedMessage {
                    role: role.clone(),
                    content,
                })
            })
            .collect::<Result<_, RegistryError>>()?;
        Ok(RenderedPrompt { text, messages })
    }

    fn context(
        &self,
        values: &BTreeMap<String, JsonValue>,
    ) -> Result<BTreeMap<String, JsonValue>, RegistryError> {
        let mut violations = Vec::new();
        let declared: BTreeSet<&str> = self
            .variables
            .iter()
            .map(|v| v.declaration.name.as_str())
            .collect();
        for name in values
            .keys()
            .filter(|name| !declared.contains(name.as_str()))
        {
            let known = declared.iter().copied().collect::<Vec<_>>().join(", ");
            violations.push(FieldViolation::new(
                format!("variables.{name}"),
                format!("unknown variable {name:?} (declared: {known})"),
            ));
        }
        let mut context = BTreeMap::new();
        for variable in &self.variables {
            let name = &variable.declaration.name;
            // An explicit null is treated as "not given", as protobuf clients send it.
            let given = values.get(name).filter(|v| !v.is_null());
            let value = match (given, &variable.declaration.default_value) {
                (Some(value), _) => match variable.check_value(value) {
                    Ok(()) => variable.normalise(value),
                    Err(problem) => {
                        violations.push(FieldViolation::new(
                            format!("variables.{name}"),
                            format!("the value {problem}"),
                        ));
                        continue;
                    }
                },
                (None, Some(default)) => variable.normalise(default),
                (None, None) if variable.declaration.required => {
                    violations.push(FieldViolation::new(
                        format!("variables.{name}"),
                        format!("missing required variable: {name}"),
                    ));
                    continue;
                }
                // Optional and absent: renders empty and is false in a condition.
                (None, None) => JsonValue::String(String::new()),
            };
            context.insert(name.clone(), value);
        }
        if violations.is_empty() {
            Ok(context)
        } else {
            Err(RegistryError::InvalidArgument(violations))
        }
    }

    fn render_one(
        &self,
        template_name: &str,
        field: &str,
        context: &BTreeMap<String, JsonValue>,
        budget: &mut OutputBudget,
    ) -> Result<String, RegistryError> {
        let template = self
            .env
            .get_template(template_name)
            .map_err(|err| RegistryError::Storage(format!("compiled template missing: {err}")))?;
        let start = budget.output.len();
        match template.render_captured_to(Serde(context), &mut *budget) {
            Ok(_) => Ok(String::from_utf8_lossy(&budget.output[start..]).into_owned()),
            Err(_) if budget.exceeded => Err(RegistryError::ResourceExhausted(format!(
                "the rendered prompt is larger than the limit of {} bytes",
                budget.limit
            ))),
            Err(err) if err.kind() == ErrorKind::OutOfFuel => {
                Err(RegistryError::ResourceExhausted(format!(
                    "rendering {field} used up its budget ({}): a render may take at most \
                     render_fuel = {} steps and create at most max_render_memory = {} bytes \
                     of template values (each step counts as 64 bytes)",
                    err.detail().unwrap_or("out of fuel"),
                    self.limits.render_fuel,
                    self.limits.max_render_memory,
                )))
            }
            Err(err) => Err(RegistryError::invalid(
                field,
                format!("rendering failed: {}", describe_error(&err)),
            )),
        }
    }
}

fn sandboxed_environment(limits: &RegistryLimits) -> Environment<'static> {
    let mut env = Environment::new();
    guarded_filters::register(&mut env);
    env.add_function("namespace", sandbox::namespace);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_fuel(Some(sandbox::engine_fuel(limits)));
    env
}

fn add_template(
    env: &mut Environment<'static>,
    name: &str,
    source: &str,
    field: &str,
    violations: &mut Vec<FieldViolation>,
) {
    if let Some(tag) = expression_size::find_oversized_tag(source) {
        violations.push(FieldViolation::new(
            field,
            format!(
                "the tag at line {}, column {} holds {} operators, over the limit of {} \
                 (split the expression with {{% set %}})",
                tag.line,
                tag.column,
                tag.operators,
                expression_size::MAX_OPERATORS_PER_TAG
            ),
        ));
        return;
    }
    if let Err(err) = env.add_template_owned(name.to_owned(), source.to_owned()) {
        let (line, column) = error_position(source, &err);
        violations.push(FieldViolation::new(
            field,
            format!(
                "syntax error at line {line}, column {column}: {}",
                describe_error(&err)
            ),
        ));
    }
}

/// Line and column (both 1-based) of a template error.
fn error_position(source: &str, err: &minijinja::Error) -> (usize, usize) {
    let line = err.line().unwrap_or(1);
    let column = match err.range() {
        Some(range) => {
            let offset = range.start.min(source.len());
            let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
            source[line_start..offset].chars().count() + 1
        }
        None => 1,
    };
    (line, column)
}

fn describe_error(err: &minijinja::Error) -> String {
    match err.detail() {
        Some(detail) => format!("{}: {detail}", err.kind()),
        None => err.kind().to_string(),
    }
}

/// The top-level variables the templates read, minus the engine's global functions.
fn used_variables(env: &Environment<'static>) -> BTreeSet<String> {
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    env.templates()
        .flat_map(|(_, template)| template.undeclared_variables(false))
        .filter(|name| !globals.contains(name.as_str()))
        .collect()
}

fn check_sizes(
    template: &str,
    messages: &[ChatMessage],
    declared: &[PromptVariable],
    limits: &RegistryLimits,
    violations: &mut Vec<FieldViolation>,
) {
    if template.is_empty() && messages.is_empty() {
        violations.push(FieldViolation::new(
            "template",
            "a template or at least one message is required",
        ));
    }
    let total: usize = template.len() + messages.iter().map(|m| m.template.len()).sum::<usize>();
    if total > limits.max_template_bytes {
        violations.push(FieldViolation::new(
            "template",
            format!(
                "the templates total {total} bytes, over the limit of {} bytes",
                limits.max_template_bytes
            ),
        ));
    }
    if messages.len() > limits.max_messages {
        violations.push(FieldViolation::new(
            "messages",
            format!(
                "{} messages, over the limit of {}",
                messages.len(),
                limits.max_messages
            ),
        ));
    }
    if declared.len() > limits.max_variables {
        violations.push(FieldViolation::new(
            "variables",
            format!(
                "{} variables, over the limit of {}",
                declared.len(),
                limits.max_variables
            ),
        ));
    }
}

fn message_template_name(index: usize) -> String {
    format!("messages[{index}]")
}

/// A writer that refuses to grow past a limit, so a render cannot exhaust memory.
struct OutputBudget {
    output: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl OutputBudget {
    fn new(limit: usize) -> Self {
        Self {
            output: Vec::new(),
            limit,
            exceeded: false,
        }
    }
}

impl io::Write for OutputBudget {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.output.len() + buf.len() > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("render output limit exceeded"));
        }
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
