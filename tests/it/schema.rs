//! The checked-in SDL matches the server, and covers the public contract.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{ServiceDocument, TypeKind, TypeSystemDefinition};

use crate::common::*;

fn exported() -> String {
    let out = std::process::Command::new(BIN)
        .arg("schema")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn checked_in_schema_matches_the_server() {
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/schema.graphql")).unwrap();
    assert!(file == exported(), "schema/schema.graphql is stale: run `cargo run -- schema > schema/schema.graphql`");
}

/// Every type, field, argument and enum value of the contract exists.
#[test]
fn schema_contains_the_contract() {
    let contract = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/contract.graphql")).unwrap();
    let ours_doc = parse_schema(exported()).unwrap();
    let ours = &ours_doc;
    let contract = parse_schema(contract).unwrap();
    let find = |name: &str| {
        ours.definitions.iter().find_map(|d| match d {
            TypeSystemDefinition::Type(t) if t.node.name.node == name => Some(t.node.kind.clone()),
            _ => None,
        })
    };
    for def in &contract.definitions {
        let TypeSystemDefinition::Type(t) = def else { continue };
        let name = t.node.name.node.as_str();
        let ours = find(name).unwrap_or_else(|| panic!("type {name} missing"));
        match (&t.node.kind, &ours) {
            (TypeKind::Object(want), TypeKind::Object(have)) => {
                for f in &want.fields {
                    let got = have
                        .fields
                        .iter()
                        .find(|g| g.node.name.node == f.node.name.node)
                        .unwrap_or_else(|| panic!("{name}.{} missing", f.node.name.node));
                    let (have_ty, want_ty) = (got.node.ty.node.to_string(), f.node.ty.node.to_string());
                    assert!(
                        have_ty == want_ty || widens(&ours_doc, &contract, &have_ty, &want_ty),
                        "{name}.{} type: {have_ty}, the contract says {want_ty}",
                        f.node.name.node
                    );
                    for a in &f.node.arguments {
                        let ga = got
                            .node
                            .arguments
                            .iter()
                            .find(|g| g.node.name.node == a.node.name.node)
                            .unwrap_or_else(|| panic!("{name}.{}({}) missing", f.node.name.node, a.node.name.node));
                        let (have_ty, want_ty) = (ga.node.ty.node.to_string(), a.node.ty.node.to_string());
                        // An argument ours also accepts as null still takes every value the contract allows.
                        assert!(
                            have_ty == want_ty || want_ty.strip_suffix('!') == Some(have_ty.as_str()),
                            "{name}.{}({}): {have_ty}, the contract says {want_ty}",
                            f.node.name.node,
                            a.node.name.node
                        );
                    }
                }
            }
            (TypeKind::InputObject(want), TypeKind::InputObject(have)) => {
                for f in &want.fields {
                    let got = have
                        .fields
                        .iter()
                        .find(|g| g.node.name.node == f.node.name.node)
                        .unwrap_or_else(|| panic!("{name}.{} missing", f.node.name.node));
                    assert_eq!(got.node.ty.node.to_string(), f.node.ty.node.to_string());
                }
            }
            (TypeKind::Enum(want), TypeKind::Enum(have)) => {
                for v in &want.values {
                    assert!(
                        have.values.iter().any(|h| h.node.value.node == v.node.value.node),
                        "{name}.{} missing",
                        v.node.value.node
                    );
                }
            }
            (TypeKind::Scalar, TypeKind::Scalar) => {}
            _ => panic!("{name} has a different kind"),
        }
    }
}

/// The fields the document's object `name` has: name → type.
fn object_fields(doc: &ServiceDocument, name: &str) -> Option<Vec<(String, String)>> {
    doc.definitions.iter().find_map(|d| match d {
        TypeSystemDefinition::Type(t) if t.node.name.node == name => match &t.node.kind {
            TypeKind::Object(o) => {
                Some(o.fields.iter().map(|f| (f.node.name.node.to_string(), f.node.ty.node.to_string())).collect())
            }
            _ => None,
        },
        _ => None,
    })
}

/// Our type answers every selection a contract client makes: the same list
/// and null shape around an object that has every field the contract's
/// object has, with the same types (e.g. `Person` for `User`).
fn widens(ours: &ServiceDocument, contract: &ServiceDocument, have: &str, want: &str) -> bool {
    let base = |t: &str| t.trim_matches(|c| matches!(c, '[' | ']' | '!')).to_owned();
    let (have_base, want_base) = (base(have), base(want));
    if have.replace(&have_base, "") != want.replace(&want_base, "") {
        return false;
    }
    match (object_fields(ours, &have_base), object_fields(contract, &want_base)) {
        (Some(have_fields), Some(want_fields)) => want_fields.iter().all(|f| have_fields.contains(f)),
        _ => false,
    }
}
