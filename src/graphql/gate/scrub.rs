//! Errors leaving the schema: a stable code, and no text or value the
//! client sent.

use std::collections::HashSet;

use async_graphql::registry::{MetaType, Registry};
use async_graphql::ServerError;

use super::bad_user_input;

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

    pub(super) fn scrub(&self, message: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
