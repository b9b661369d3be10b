//! The document gate: every GraphQL operation, over HTTP or WebSocket,
//! passes it before async-graphql does any work that grows with the
//! document, and every error leaves through it.
//!
//! In order, each step bounding what the next may cost:
//! 1. a lexical pre-scan of the text (one pass, no recursion) refuses
//!    bracket nesting beyond [`MAX_NESTING`] and documents of more than
//!    `max_tokens` tokens, so the recursive parser never sees deep input;
//! 2. the parse (or the cached tree of the same text);
//! 3. a structural check: aliases and fragment spreads written, and the
//!    selections and depth the document has once fragments are expanded —
//!    computed once per fragment in dependency order, so twelve fragments
//!    that each spread the previous one four times cost twelve steps here
//!    instead of 4¹² in the validator; fragment cycles are refused here too;
//! 4. what the library lets through and the spec does not: a quoted string
//!    where an enum value belongs, a required variable not provided.
//!
//! Execution then runs under a time budget (the last guard), and every
//! error leaving the schema gets a stable code and a message that says
//! where (line, column, argument) without quoting the document's text or
//! a value: a client that inlines a secret never gets it echoed back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest, NextSubscribe,
};
use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{ErrorExtensions, Pos, Positioned, Request, Response, ServerError, ServerResult};
/// A value as written in a document (it may name a variable).
use async_graphql_value::Value;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;

use super::documents::DocumentCache;
use crate::auth::Principal;
use crate::config::GraphqlConfig;

/// Brackets (`{`, `[`, `(`) open at once, and selection sets nested once
/// fragments are expanded. The parser and the validators recurse once per
/// level; a thread's stack holds well over a thousand levels, so this
/// leaves a wide margin while no real operation comes near it.
pub const MAX_NESTING: usize = 64;

/// What one caller's documents may hold.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    pub tokens: usize,
    pub selections: usize,
    pub aliases: usize,
    pub fragment_spreads: usize,
}

impl DocumentLimits {
    pub fn signed_in(config: &GraphqlConfig) -> Self {
        DocumentLimits {
            tokens: config.max_tokens,
            selections: config.max_selections,
            aliases: config.max_aliases,
            fragment_spreads: config.max_fragment_spreads,
        }
    }

    pub fn anonymous(config: &GraphqlConfig) -> Self {
        DocumentLimits {
            tokens: config.max_tokens_anonymous.min(config.max_tokens),
            selections: config.max_selections_anonymous.min(config.max_selections),
            aliases: config.max_aliases_anonymous.min(config.max_aliases),
            fragment_spreads: config.max_fragment_spreads,
        }
    }
}

/// A document refused by the gate: what to fix, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub pos: Option<Pos>,
}

impl Refusal {
    fn new(message: impl Into<String>, pos: Option<Pos>) -> Self {
        Refusal { message: message.into(), pos }
    }

    pub fn into_server_error(self) -> ServerError {
        let mut error = ServerError::new(self.message, self.pos);
        error.extensions = bad_user_input().extensions;
        error
    }
}

fn bad_user_input() -> async_graphql::Error {
    async_graphql::Error::new(String::new()).extend_with(|_, e| e.set("code", "BAD_USER_INPUT"))
}

// ---------------------------------------------------------------------------
// 1. Lexical pre-scan

/// One pass over the text: brackets open at once and tokens, skipping
/// strings and comments as the GraphQL lexer does. No recursion, no
/// allocation; runs before anything that recurses.
pub fn prescan(text: &str, limits: &DocumentLimits) -> Result<(), Refusal> {
    prescan_counted(text, limits).0
}

/// [`prescan`] and the steps it took: one per loop turn, each moving past
/// at least one byte (a token's first byte may be looked at twice), so
/// never more than two per byte. The fuzz targets assert that bound (a
/// count, not a time).
#[doc(hidden)]
pub fn prescan_counted(text: &str, limits: &DocumentLimits) -> (Result<(), Refusal>, usize) {
    let mut steps = 0;
    let result = scan(text, limits, &mut steps);
    (result, steps)
}

fn scan(text: &str, limits: &DocumentLimits, steps: &mut usize) -> Result<(), Refusal> {
    let bytes = text.as_bytes();
    let position = |at: usize| {
        let before = &bytes[..at.min(bytes.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |nl| nl + 1) + 1;
        Some(Pos { line, column })
    };
    let mut depth = 0usize;
    let mut tokens = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        *steps += 1;
        let start = i;
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    *steps += 1;
                    i += 1;
                }
                continue;
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                // Block string: ends at the first `"""` not escaped as `\"""`.
                // Unterminated, the grammar would read `""` and go on parsing
                // what follows: so it is refused here, never skipped.
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    *steps += 1;
                    i += if bytes[i..].starts_with(b"\\\"\"\"") { 4 } else { 1 };
                }
                if i >= bytes.len() {
                    return Err(Refusal::new("a block string (\"\"\") is not closed", position(start)));
                }
                i += 3;
            }
            b'"' => {
                // String: ends at an unescaped quote on the same line. The scan
                // is never more lenient than the grammar: unterminated is refused.
                i += 1;
                while i < bytes.len() && !matches!(bytes[i], b'"' | b'\n' | b'\r') {
                    *steps += 1;
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() || bytes[i] != b'"' {
                    return Err(Refusal::new("a string is not closed on its line", position(start)));
                }
                i += 1;
            }
            b'{' | b'[' | b'(' => {
                depth += 1;
                i += 1;
                if depth > MAX_NESTING {
                    return Err(Refusal::new(
                        format!("the document nests brackets more than {MAX_NESTING} deep; flatten it"),
                        position(start),
                    ));
                }
            }
            b'}' | b']' | b')' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.') => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-' | b'+' | b'.'))
                {
                    *steps += 1;
                    i += 1;
                }
            }
            _ => i += 1,
        }
        tokens += 1;
        if tokens > limits.tokens {
            return Err(Refusal::new(
                format!("the document has more than {} tokens; send a smaller one", limits.tokens),
                position(start),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// 2. Parsing, with errors that do not quote the text

/// Parses a document that passed [`prescan`]. Parse errors say where and
/// what was expected, never the source line (which may hold a secret).
pub fn parse(text: &str) -> Result<ExecutableDocument, Refusal> {
    use async_graphql::parser::Error;
    async_graphql::parser::parse_query(text).map_err(|e| match e {
        Error::Syntax { message, start, .. } => {
            // pest's message ends with "= expected <rules>": grammar, not text.
            let expected = message
                .lines()
                .rev()
                .find_map(|line| line.trim_start().strip_prefix("= "))
                .filter(|what| what.starts_with("expected") || what.starts_with("unexpected"))
                .map(|what| format!(": {}", what.replace('_', " ")))
                .unwrap_or_default();
            Refusal::new(format!("syntax error at line {}, column {}{expected}", start.line, start.column), Some(start))
        }
        Error::MultipleOperations { operation, .. } => Refusal::new(
            "a document with several operations must name each of them (and the request must say which to run)",
            Some(operation),
        ),
        Error::OperationDuplicated { second, .. } => {
            Refusal::new("two operations have the same name; rename one", Some(second))
        }
        Error::FragmentDuplicated { second, .. } => {
            Refusal::new("two fragments have the same name; rename one", Some(second))
        }
        Error::MissingOperation => Refusal::new("the document holds no operation", None),
        Error::RecursionLimitExceeded => {
            Refusal::new(format!("the document nests more than {MAX_NESTING} deep; flatten it"), None)
        }
        _ => Refusal::new("the document is not a valid GraphQL operation", None),
    })
}

// ---------------------------------------------------------------------------
// 3. Structure: counts written and counts after fragment expansion

/// Refuses documents over `limits`. Everything here is linear in the
/// document: each fragment's expanded size is computed once, after the
/// fragments it spreads (Kahn's order, no recursion across fragments).
pub fn check_structure(doc: &ExecutableDocument, limits: &DocumentLimits) -> Result<(), Refusal> {
    let mut written = Written::default();
    for (_, op) in doc.operations.iter() {
        written.walk(&op.node.selection_set);
    }
    let mut spreads_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, fragment) in &doc.fragments {
        let before = written.spreads.len();
        written.walk(&fragment.node.selection_set);
        spreads_of.insert(name.as_str(), written.spreads[before..].iter().map(|(n, _)| *n).collect());
    }
    if let Some((_, pos)) = written.aliases.get(limits.aliases) {
        return Err(Refusal::new(format!("the document uses more than {} aliases", limits.aliases), Some(*pos)));
    }
    if let Some((_, pos)) = written.spreads.get(limits.fragment_spreads) {
        return Err(Refusal::new(
            format!("the document spreads fragments more than {} times", limits.fragment_spreads),
            Some(*pos),
        ));
    }

    // Dependency order: a fragment after every fragment it spreads.
    let mut waiting_on: HashMap<&str, usize> = HashMap::new();
    let mut spread_by: HashMap<&str, Vec<&str>> = HashMap::new();
    for (&name, spreads) in &spreads_of {
        let known: HashSet<&str> = spreads.iter().copied().filter(|s| spreads_of.contains_key(s)).collect();
        waiting_on.insert(name, known.len());
        for dependency in known {
            spread_by.entry(dependency).or_default().push(name);
        }
    }
    let mut ready: VecDeque<&str> = waiting_on.iter().filter(|(_, &n)| n == 0).map(|(&name, _)| name).collect();
    let mut expanded: HashMap<&str, Expanded> = HashMap::new();
    while let Some(name) = ready.pop_front() {
        let size = Expanded::of(&doc.fragments[name].node.selection_set, &expanded);
        check_expanded(&size, limits, doc.fragments[name].pos)?;
        expanded.insert(name, size);
        for &dependent in spread_by.get(name).into_iter().flatten() {
            let count = waiting_on.get_mut(dependent).expect("every fragment is counted");
            *count -= 1;
            if *count == 0 {
                ready.push_back(dependent);
            }
        }
    }
    if expanded.len() < doc.fragments.len() {
        let pos = doc.fragments.iter().find(|(name, _)| !expanded.contains_key(name.as_str())).map(|(_, f)| f.pos);
        return Err(Refusal::new("fragments spread each other in a cycle; a fragment cannot contain itself", pos));
    }

    let mut total = Expanded::default();
    for (_, op) in doc.operations.iter() {
        let size = Expanded::of(&op.node.selection_set, &expanded);
        total.selections = total.selections.saturating_add(size.selections);
        total.depth = total.depth.max(size.depth);
        total.introspection_lists = total.introspection_lists.max(size.introspection_lists);
        check_expanded(&total, limits, op.pos)?;
    }
    Ok(())
}

/// Introspection fields that return lists. Each one nested in another
/// multiplies the answer by the schema's size (types × fields × …), which no
/// count of the document shows; GraphiQL's own query nests three
/// (`types { fields { args } }`).
const INTROSPECTION_LISTS: &[&str] =
    &["types", "fields", "args", "inputFields", "interfaces", "possibleTypes", "enumValues", "directives"];
pub const MAX_INTROSPECTION_LISTS: usize = 3;

fn check_expanded(size: &Expanded, limits: &DocumentLimits, pos: Pos) -> Result<(), Refusal> {
    if size.introspection_lists > MAX_INTROSPECTION_LISTS {
        return Err(Refusal::new(
            format!(
                "introspection lists (types, fields, args, …) may nest {MAX_INTROSPECTION_LISTS} deep; \
                 ask for the schema once and walk it on your side"
            ),
            Some(pos),
        ));
    }
    if size.depth > MAX_NESTING {
        return Err(Refusal::new(
            format!("with its fragments expanded the document nests more than {MAX_NESTING} deep"),
            Some(pos),
        ));
    }
    if size.selections > limits.selections {
        return Err(Refusal::new(
            format!(
                "with its fragments expanded the document selects more than {} fields; select fewer or send \
                 several requests",
                limits.selections
            ),
            Some(pos),
        ));
    }
    Ok(())
}

/// What a document writes: aliases and fragment spreads with positions.
#[derive(Default)]
struct Written<'a> {
    aliases: Vec<(&'a str, Pos)>,
    spreads: Vec<(&'a str, Pos)>,
}

impl<'a> Written<'a> {
    /// Recursion is bounded by the pre-scan's nesting limit.
    fn walk(&mut self, set: &'a Positioned<SelectionSet>) {
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => {
                    if let Some(alias) = &field.node.alias {
                        self.aliases.push((alias.node.as_str(), alias.pos));
                    }
                    self.walk(&field.node.selection_set);
                }
                Selection::InlineFragment(inline) => self.walk(&inline.node.selection_set),
                Selection::FragmentSpread(spread) => {
                    self.spreads.push((spread.node.fragment_name.node.as_str(), spread.pos));
                }
            }
        }
    }
}

/// A selection set's size once every fragment in it is expanded: each
/// field, inline fragment and spread is one selection, as each is one step
/// for the validators and the executor.
#[derive(Default, Clone, Copy)]
struct Expanded {
    selections: usize,
    depth: usize,
    /// Introspection list fields nested along the deepest path.
    introspection_lists: usize,
}

impl Expanded {
    fn of(set: &Positioned<SelectionSet>, fragments: &HashMap<&str, Expanded>) -> Expanded {
        let mut size = Expanded::default();
        for item in &set.node.items {
            let mut is_list = false;
            let inner = match &item.node {
                Selection::Field(field) => {
                    // Our own schema has no fields of these names; only
                    // introspection types do.
                    is_list = INTROSPECTION_LISTS.contains(&field.node.name.node.as_str());
                    Expanded::of(&field.node.selection_set, fragments)
                }
                Selection::InlineFragment(inline) => Expanded::of(&inline.node.selection_set, fragments),
                Selection::FragmentSpread(spread) => {
                    fragments.get(spread.node.fragment_name.node.as_str()).copied().unwrap_or_default()
                }
            };
            size.selections = size.selections.saturating_add(1).saturating_add(inner.selections);
            size.depth = size.depth.max(inner.depth.saturating_add(1));
            size.introspection_lists =
                size.introspection_lists.max(inner.introspection_lists.saturating_add(usize::from(is_list)));
        }
        size
    }
}

// ---------------------------------------------------------------------------
// 4. What the spec refuses and the library lets through

/// Enum arguments must be written as enum values (`role: ADMIN`), not as
/// strings (`role: "ADMIN"`): async-graphql accepts both, the spec only the
/// first. (Variables are JSON, where enum values are strings: those stay.)
pub fn check_enum_literals(doc: &ExecutableDocument, registry: &Registry) -> Result<(), Refusal> {
    let typed = Typed { registry };
    for (_, op) in doc.operations.iter() {
        let root = match op.node.ty {
            OperationType::Query => Some(registry.query_type.as_str()),
            OperationType::Mutation => registry.mutation_type.as_deref(),
            OperationType::Subscription => registry.subscription_type.as_deref(),
        };
        for variable in &op.node.variable_definitions {
            if let Some(default) = &variable.node.default_value {
                let ty = variable.node.var_type.node.to_string();
                typed.value(&default.node.clone().into_value(), &ty, "a variable's default value", default.pos)?;
            }
        }
        if let Some(root) = root {
            typed.selection_set(&op.node.selection_set, root)?;
        }
    }
    for fragment in doc.fragments.values() {
        typed.selection_set(&fragment.node.selection_set, fragment.node.type_condition.node.on.node.as_str())?;
    }
    Ok(())
}

struct Typed<'r> {
    registry: &'r Registry,
}

impl Typed<'_> {
    fn selection_set(&self, set: &Positioned<SelectionSet>, parent: &str) -> Result<(), Refusal> {
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => {
                    self.directives(&field.node.directives)?;
                    let Some(meta) =
                        self.registry.types.get(parent).and_then(|t| t.field_by_name(&field.node.name.node))
                    else {
                        continue; // unknown fields are the validator's to report
                    };
                    for (name, value) in &field.node.arguments {
                        if let Some(arg) = meta.args.get(name.node.as_str()) {
                            let what = format!("argument `{}` of `{}`", name.node, field.node.name.node);
                            self.value(&value.node, &arg.ty, &what, value.pos)?;
                        }
                    }
                    self.selection_set(&field.node.selection_set, MetaTypeName::concrete_typename(&meta.ty))?;
                }
                Selection::InlineFragment(inline) => {
                    self.directives(&inline.node.directives)?;
                    let on = inline.node.type_condition.as_ref().map_or(parent, |c| c.node.on.node.as_str());
                    self.selection_set(&inline.node.selection_set, on)?;
                }
                Selection::FragmentSpread(spread) => self.directives(&spread.node.directives)?,
            }
        }
        Ok(())
    }

    fn directives(&self, directives: &[Positioned<Directive>]) -> Result<(), Refusal> {
        for directive in directives {
            let Some(meta) = self.registry.directives.get(directive.node.name.node.as_str()) else { continue };
            for (name, value) in &directive.node.arguments {
                if let Some(arg) = meta.args.get(name.node.as_str()) {
                    let what = format!("argument `{}` of @{}", name.node, directive.node.name.node);
                    self.value(&value.node, &arg.ty, &what, value.pos)?;
                }
            }
        }
        Ok(())
    }

    /// Recursion is bounded by the pre-scan's nesting limit.
    fn value(&self, value: &Value, ty: &str, what: &str, pos: Pos) -> Result<(), Refusal> {
        match MetaTypeName::create(ty) {
            MetaTypeName::NonNull(inner) => self.value(value, inner, what, pos),
            MetaTypeName::List(inner) => match value {
                Value::List(items) => items.iter().try_for_each(|item| self.value(item, inner, what, pos)),
                single => self.value(single, inner, what, pos),
            },
            MetaTypeName::Named(name) => match (self.registry.types.get(name), value) {
                (Some(MetaType::Enum { enum_values, .. }), Value::String(_)) => {
                    let names: Vec<&str> = enum_values.keys().map(String::as_str).collect();
                    Err(Refusal::new(
                        format!(
                            "{what} is an enum: write one of {} without quotes (line {}, column {})",
                            names.join(", "),
                            pos.line,
                            pos.column
                        ),
                        Some(pos),
                    ))
                }
                (Some(MetaType::InputObject { input_fields, .. }), Value::Object(fields)) => {
                    for (field, value) in fields {
                        if let Some(meta) = input_fields.get(field.as_str()) {
                            self.value(value, &meta.ty, &format!("field `{field}` of {what}"), pos)?;
                        }
                    }
                    Ok(())
                }
                _ => Ok(()),
            },
        }
    }
}

/// The operation the request runs, as async-graphql will choose it.
fn chosen_operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    }
}

/// A non-null variable without a default must be given (and not null):
/// async-graphql would otherwise read it as false in `@include(if: $b)`.
pub fn check_required_variables(doc: &ExecutableDocument, request: &Request) -> Result<(), Refusal> {
    let Some(op) = chosen_operation(doc, request.operation_name.as_deref()) else { return Ok(()) };
    for variable in &op.node.variable_definitions {
        let definition = &variable.node;
        if definition.var_type.node.nullable || definition.default_value.is_some() {
            continue;
        }
        let given = request.variables.get(definition.name.node.as_str());
        if given.is_none_or(|v| matches!(v, async_graphql::Value::Null)) {
            return Err(Refusal::new(
                format!(
                    "variable ${} ({}) is required: pass it in \"variables\"",
                    definition.name.node, definition.var_type.node
                ),
                Some(variable.pos),
            ));
        }
    }
    Ok(())
}

/// Gives every variable the operation left out its default value.
/// async-graphql reads `@include(if: $b)` from the request's variables
/// only, so a defaulted `$b` would otherwise count as false.
fn apply_variable_defaults(doc: &ExecutableDocument, request: &mut Request) {
    let Some(op) = chosen_operation(doc, request.operation_name.as_deref()) else { return };
    for variable in &op.node.variable_definitions {
        if let Some(default) = &variable.node.default_value {
            request.variables.entry(variable.node.name.node.clone()).or_insert_with(|| default.node.clone());
        }
    }
}

// ---------------------------------------------------------------------------
// Errors leaving the schema

/// Gives an error the library raised (parse, validation, input coercion)
/// the code BAD_USER_INPUT and a message without the document's text or
/// values: a quoted word stays only when it is a name from the schema
/// (a type, field, argument or enum value); anything else becomes `…`, and
/// "found <value>" is cut. Errors our resolvers raised carry a code and a
/// message written for the client; they pass unchanged.
pub fn sanitize(error: &mut ServerError, names: &SchemaNames) {
    let has_code = error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
    if has_code {
        return;
    }
    error.extensions = bad_user_input().extensions;
    error.message = names.scrub(&error.message);
}

/// Every name the schema defines: quoting one of these cannot leak
/// anything a client sent.
#[derive(Default)]
pub struct SchemaNames(HashSet<String>);

impl SchemaNames {
    pub fn from_registry(registry: &Registry) -> Self {
        let mut names = HashSet::new();
        for (name, ty) in &registry.types {
            names.insert(name.clone());
            if let Some(fields) = ty.fields() {
                for (field, meta) in fields {
                    names.insert(field.clone());
                    names.extend(meta.args.keys().cloned());
                }
            }
            match ty {
                MetaType::Enum { enum_values, .. } => names.extend(enum_values.keys().cloned()),
                MetaType::InputObject { input_fields, .. } => names.extend(input_fields.keys().cloned()),
                _ => {}
            }
        }
        for (name, directive) in &registry.directives {
            names.insert(name.clone());
            names.insert(format!("@{name}"));
            names.extend(directive.args.keys().cloned());
        }
        SchemaNames(names)
    }

    fn known(&self, quoted: &str) -> bool {
        // Type references like `[Provider!]!` quote schema names too.
        let bare = quoted.trim_matches(|c| matches!(c, '[' | ']' | '!'));
        !bare.is_empty() && self.0.contains(bare)
    }

    fn scrub(&self, message: &str) -> String {
        // "Expected input type "X", found <value>." / "…, found <value>": cut the value.
        let message = match message.find("found ") {
            Some(at) => format!("{}found a value of another type.", &message[..at]),
            None => message.to_owned(),
        };
        let mut out = String::with_capacity(message.len());
        let mut parts = message.split('"');
        if let Some(first) = parts.next() {
            out.push_str(first);
        }
        let rest: Vec<&str> = parts.collect();
        // Between the 1st and 2nd quote, the 3rd and 4th, … is quoted text;
        // an unpaired last quote leaves its tail unquoted but still unsafe.
        for (i, part) in rest.iter().enumerate() {
            let quoted = i % 2 == 0;
            if quoted {
                let paired = i + 1 < rest.len();
                if paired && self.known(part) {
                    out.push('"');
                    out.push_str(part);
                    out.push('"');
                } else {
                    out.push_str("\"…\"");
                    if !paired {
                        break;
                    }
                }
            } else {
                out.push_str(part);
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// The extension

/// Installs the gate on a schema (see the module doc).
pub struct DocumentGate {
    state: Arc<GateState>,
}

struct GateState {
    signed_in: DocumentLimits,
    anonymous: DocumentLimits,
    timeout: Duration,
    cache: DocumentCache,
    names: OnceLock<SchemaNames>,
}

impl DocumentGate {
    pub fn new(config: &GraphqlConfig) -> Self {
        DocumentGate {
            state: Arc::new(GateState {
                signed_in: DocumentLimits::signed_in(config),
                anonymous: DocumentLimits::anonymous(config),
                timeout: config.request_timeout,
                cache: DocumentCache::default(),
                names: OnceLock::new(),
            }),
        }
    }
}

impl ExtensionFactory for DocumentGate {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GateExtension { state: self.state.clone(), is_query: Default::default() })
    }
}

struct GateExtension {
    state: Arc<GateState>,
    /// Set once the request is admitted: only queries run under the time
    /// budget. A mutation stopped halfway could have committed and not yet
    /// announced its change; mutations are bounded by the database's and
    /// the providers' own timeouts instead.
    is_query: std::sync::atomic::AtomicBool,
}

impl GateState {
    fn names(&self, ctx: &ExtensionContext<'_>) -> &SchemaNames {
        self.names.get_or_init(|| SchemaNames::from_registry(&ctx.schema_env.registry))
    }

    /// Steps 1–4 for one request; the parsed tree goes into the request.
    /// Returns whether the operation it runs is a query.
    fn admit(&self, ctx: &ExtensionContext<'_>, request: &mut Request, signed_in: bool) -> Result<bool, Refusal> {
        let limits = if signed_in { &self.signed_in } else { &self.anonymous };
        check_operation_name(request.operation_name.as_deref())?;
        let document = match signed_in.then(|| self.cache.get(&request.query)).flatten() {
            Some(document) => document,
            None => {
                prescan(&request.query, limits)?;
                let document = parse(&request.query)?;
                check_structure(&document, limits)?;
                check_enum_literals(&document, &ctx.schema_env.registry)?;
                let document = Arc::new(document);
                if signed_in {
                    self.cache.insert(&request.query, document.clone());
                }
                document
            }
        };
        check_required_variables(&document, request)?;
        apply_variable_defaults(&document, request);
        let is_query = chosen_operation(&document, request.operation_name.as_deref())
            .is_some_and(|op| op.node.ty == OperationType::Query);
        request.set_parsed_query(ExecutableDocument::clone(&document));
        Ok(is_query)
    }
}

/// The operation to run is named by the request, not the document: a name
/// that is not a GraphQL name can match no operation, and async-graphql's
/// "Unknown operation named \"…\"" would quote it whole, past [`sanitize`]
/// when it holds quotes itself (found by the `gate_request` fuzz target).
fn check_operation_name(name: Option<&str>) -> Result<(), Refusal> {
    let Some(name) = name else { return Ok(()) };
    let mut chars = name.chars();
    let is_name = chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric());
    if is_name {
        Ok(())
    } else {
        Err(Refusal::new("operationName is not a GraphQL name ([_A-Za-z][_0-9A-Za-z]*)", None))
    }
}

fn is_signed_in(ctx: &ExtensionContext<'_>, request: &Request) -> bool {
    let key = std::any::TypeId::of::<Principal>();
    request.data.contains_key(&key) || ctx.session_data.contains_key(&key)
}

#[async_graphql::async_trait::async_trait]
impl Extension for GateExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let signed_in = is_signed_in(ctx, &request);
        let is_query = self.state.admit(ctx, &mut request, signed_in).map_err(Refusal::into_server_error)?;
        self.is_query.store(is_query, std::sync::atomic::Ordering::Relaxed);
        next.run(ctx, request).await
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        let names = self.state.names(ctx);
        response.errors.iter_mut().for_each(|e| sanitize(e, names));
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let state = self.state.clone();
        // Names are built on first use; make sure they exist for the stream.
        state.names(ctx);
        next.run(ctx, stream)
            .map(move |mut response| {
                if let Some(names) = state.names.get() {
                    response.errors.iter_mut().for_each(|e| sanitize(e, names));
                }
                response
            })
            .boxed()
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if !self.is_query.load(std::sync::atomic::Ordering::Relaxed) {
            return next.run(ctx, operation_name).await;
        }
        match tokio::time::timeout(self.state.timeout, next.run(ctx, operation_name)).await {
            Ok(response) => response,
            Err(_) => {
                let message = format!(
                    "the request ran longer than {} and was stopped (SESAME_GRAPHQL__REQUEST_TIMEOUT)",
                    humantime::format_duration(self.state.timeout)
                );
                let error = async_graphql::Error::new(message).extend_with(|_, e| e.set("code", "LIMIT_EXCEEDED"));
                Response::from_errors(vec![error.into_server_error(Pos::default())])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DocumentLimits {
        DocumentLimits::signed_in(&GraphqlConfig::default())
    }

    #[test]
    fn prescan_refuses_deep_nesting_outside_strings_only() {
        let deep = format!("{{ __typename(x: {}{}) }}", "[".repeat(2000), "]".repeat(2000));
        let refusal = prescan(&deep, &limits()).unwrap_err();
        assert!(refusal.message.contains("nests brackets"), "{refusal:?}");
        assert_eq!(refusal.pos, Some(Pos { line: 1, column: 17 + MAX_NESTING - 2 }));
        let in_string = format!("{{ a(x: \"{}\") }}", "[".repeat(2000));
        assert!(prescan(&in_string, &limits()).is_ok());
        let in_block = format!("{{ a(x: \"\"\"\\\"\"\" {} \"\"\") }}", "{".repeat(2000));
        assert!(prescan(&in_block, &limits()).is_ok());
        let in_comment = format!("# {}\n{{ a }}", "(".repeat(2000));
        assert!(prescan(&in_comment, &limits()).is_ok());
        // An escaped quote does not end the string early.
        let escaped = format!("{{ a(x: \"\\\" {} \") }}", "[".repeat(100));
        assert!(prescan(&escaped, &limits()).is_ok());
        // Unterminated strings are refused, never skipped: the grammar reads an
        // unclosed `"""` as `""` and parses what follows.
        let cut = format!("{{ a(x: \"oops\n{}) }}", "[".repeat(100));
        assert!(prescan(&cut, &limits()).unwrap_err().message.contains("not closed"));
        let unclosed_block = format!("{{ __typename(x: [\"\"\"x\" {}{} ]) }}", "[".repeat(3000), "]".repeat(3000));
        assert!(prescan(&unclosed_block, &limits()).unwrap_err().message.contains("not closed"));
        assert!(prescan("{ a(x: \"open", &limits()).is_err());
    }

    #[test]
    fn introspection_lists_nest_three_deep_at_most() {
        let graphiql = "{ __schema { types { fields { args { name } } } } }";
        assert!(check_structure(&parse(graphiql).unwrap(), &limits()).is_ok());
        let blowup = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
        let refusal = check_structure(&parse(blowup).unwrap(), &limits()).unwrap_err();
        assert!(refusal.message.contains("introspection"), "{refusal:?}");
        // Through fragments too.
        let hidden = "{ __schema { types { ...F } } } fragment F on __Type { fields { type { fields { type { fields { name } } } } } }";
        assert!(check_structure(&parse(hidden).unwrap(), &limits()).is_err());
    }

    #[test]
    fn prescan_counts_tokens() {
        let many = format!("{{ {} }}", "a ".repeat(20_000));
        assert!(prescan(&many, &limits()).unwrap_err().message.contains("tokens"));
        let long_string = format!("{{ a(x: \"{}\") }}", "x".repeat(200_000));
        assert!(prescan(&long_string, &limits()).is_ok());
    }

    fn bomb(levels: usize, fan_out: usize) -> String {
        let mut text = String::from("query { ...F0 }\nfragment F0 on Query { __typename }\n");
        for level in 1..=levels {
            let spreads = format!("...F{} ", level - 1).repeat(fan_out);
            text.push_str(&format!("fragment F{level} on Query {{ {spreads} }}\n"));
        }
        text.replace("query { ...F0 }", &format!("query {{ ...F{levels} }}"))
    }

    #[test]
    fn fragment_fan_out_is_counted_without_expanding() {
        // The issue's example: 12 levels, each spreading the previous one 4 times.
        let config = GraphqlConfig { max_fragment_spreads: 1000, ..GraphqlConfig::default() };
        let doc = parse(&bomb(12, 4)).unwrap();
        let refusal = check_structure(&doc, &DocumentLimits::signed_in(&config)).unwrap_err();
        assert!(refusal.message.contains("selects more than"), "{refusal:?}");
        // 60 levels would overflow any counter without saturation.
        let doc = parse(&bomb(60, 16)).unwrap();
        assert!(check_structure(&doc, &DocumentLimits::signed_in(&config)).is_err());
        // A small one passes.
        let doc = parse(&bomb(2, 2)).unwrap();
        assert!(check_structure(&doc, &limits()).is_ok());
    }

    #[test]
    fn fragment_cycles_and_chains_are_refused() {
        let doc = parse("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }").unwrap();
        assert!(check_structure(&doc, &limits()).unwrap_err().message.contains("cycle"));
        let doc = parse("{ ...A } fragment A on Query { ...A }").unwrap();
        assert!(check_structure(&doc, &limits()).unwrap_err().message.contains("cycle"));
        // A long chain nests deeper than any bracket count shows.
        let mut chain = String::from("{ ...F0 }");
        for i in 0..90 {
            chain.push_str(&format!(" fragment F{i} on Query {{ me {{ ...F{} }} }}", i + 1));
        }
        chain.push_str(" fragment F90 on Query { __typename }");
        let doc = parse(&chain).unwrap();
        assert!(check_structure(&doc, &limits()).unwrap_err().message.contains("nests more than"));
    }

    #[test]
    fn aliases_and_spreads_are_capped() {
        let aliases: String = (0..150).map(|i| format!("a{i}: __typename ")).collect();
        let doc = parse(&format!("{{ {aliases} }}")).unwrap();
        assert!(check_structure(&doc, &limits()).unwrap_err().message.contains("aliases"));
        let spreads = "...F ".repeat(150);
        let doc = parse(&format!("{{ {spreads} }} fragment F on Query {{ __typename }}")).unwrap();
        assert!(check_structure(&doc, &limits()).unwrap_err().message.contains("spreads"));
    }

    #[test]
    fn parse_errors_do_not_quote_the_text() {
        let refusal = parse("mutation { setApiKey(key: \"sk-ant-secret\" provider: ) }").unwrap_err();
        assert!(!refusal.message.contains("sk-ant"), "{}", refusal.message);
        assert!(refusal.message.starts_with("syntax error at line 1, column"), "{}", refusal.message);
    }

    #[test]
    fn operation_names_are_graphql_names() {
        assert_eq!(check_operation_name(None), Ok(()));
        assert_eq!(check_operation_name(Some("Q_1")), Ok(()));
        assert_eq!(check_operation_name(Some("_q")), Ok(()));
        for bad in ["", "1Q", "a b", "a\"sk-ant-secret\"b", "ü"] {
            let refusal = check_operation_name(Some(bad)).unwrap_err();
            assert!(!refusal.message.contains("secret"), "{refusal:?}");
        }
        // What the check keeps out: a quoted name holding quotes escapes the scrub.
        let names = SchemaNames::default();
        let leaked = names.scrub(r#"Unknown operation named "a"sk-ant-secret"b""#);
        assert!(leaked.contains("secret"), "{leaked}");
    }

    #[test]
    fn scrub_keeps_schema_names_only() {
        let names = SchemaNames(["Provider".to_owned(), "provider".to_owned()].into_iter().collect());
        assert_eq!(
            names.scrub(r#"Invalid value for argument "provider", enumeration type "Provider" does not contain the value "sk-secret""#),
            r#"Invalid value for argument "provider", enumeration type "Provider" does not contain the value "…""#
        );
        assert_eq!(names.scrub(r#"Unknown field "ghp_abc" on type "Query"."#), r#"Unknown field "…" on type "…"."#);
        assert_eq!(
            names.scrub(r#"Failed to parse "[Provider!]": Expected input type "Provider", found "sk-1"."#),
            r#"Failed to parse "[Provider!]": Expected input type "Provider", found a value of another type."#
        );
        assert_eq!(names.scrub(r#"unpaired "sk-secret"#), r#"unpaired "…""#);
    }
}
