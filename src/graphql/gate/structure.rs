//! Step 3, structure: counts written and counts after fragment expansion.

use std::collections::{HashMap, HashSet, VecDeque};

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Pos, Positioned};

use super::{DocumentLimits, Refusal, MAX_NESTING};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graphql::gate::parse;
    use crate::graphql::gate::test_limits as limits;
    use crate::graphql::GraphqlConfig;

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
        // The example: 12 levels, each spreading the previous one 4 times.
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
}
