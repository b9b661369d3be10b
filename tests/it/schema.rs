//! The checked-in SDL matches the server, and covers the public contract.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

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
    let ours = parse_schema(exported()).unwrap();
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
                    assert_eq!(
                        got.node.ty.node.to_string(),
                        f.node.ty.node.to_string(),
                        "{name}.{} type",
                        f.node.name.node
                    );
                    for a in &f.node.arguments {
                        let ga = got
                            .node
                            .arguments
                            .iter()
                            .find(|g| g.node.name.node == a.node.name.node)
                            .unwrap_or_else(|| panic!("{name}.{}({}) missing", f.node.name.node, a.node.name.node));
                        assert_eq!(ga.node.ty.node.to_string(), a.node.ty.node.to_string());
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
