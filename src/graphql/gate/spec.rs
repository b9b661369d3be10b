//! Step 4, what the spec refuses and the library lets through.

use async_graphql::parser::types::{
    Directive, DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{Pos, Positioned, Request};
/// A value as written in a document (it may name a variable).
use async_graphql_value::Value;

use super::Refusal;

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
pub(super) fn chosen_operation<'d>(
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
pub(super) fn apply_variable_defaults(doc: &ExecutableDocument, request: &mut Request) {
    let Some(op) = chosen_operation(doc, request.operation_name.as_deref()) else { return };
    for variable in &op.node.variable_definitions {
        if let Some(default) = &variable.node.default_value {
            request.variables.entry(variable.node.name.node.clone()).or_insert_with(|| default.node.clone());
        }
    }
}
