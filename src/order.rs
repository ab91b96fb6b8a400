//! Load order: decide the order in which tables are loaded so that every
//! foreign key is satisfied without superuser rights (no disabling of
//! triggers) and without requiring DEFERRABLE constraints.
//!
//! Tables are identified by their index `0..table_count`; the caller maps
//! indices to names. Each [`FkEdge`] says "`child` references `parent`".
//! Edges whose parent table is not part of the load are not passed in by the
//! caller: rows referencing such a table must already be satisfiable by the
//! data in the database, and ordering cannot help with them.
//!
//! How the order is found:
//!
//! 1. Self-references (`child == parent`) are ignored: PostgreSQL checks a
//!    non-deferrable foreign key at the end of the statement, so a table whose
//!    rows all go in one statement (one COPY, one INSERT ... SELECT) may
//!    reference itself in any row order.
//! 2. Strongly connected components (Tarjan) find the cycles between two or
//!    more tables. Inside each cycle, DEFERRABLE edges are broken first, "for
//!    free": the loader runs `SET CONSTRAINTS ALL DEFERRED`, so they need no
//!    column nulling. Remaining cycles are broken greedily at edges whose child
//!    columns are all nullable: the loader inserts those columns as NULL and
//!    fills them in with an UPDATE after all tables are loaded. Finally every
//!    removed edge is tentatively put back (nullable ones first, then
//!    deferrable ones) and stays in place if no cycle reappears, so the set of
//!    removed edges is minimal (no single edge could be kept).
//! 3. A stable Kahn topological sort over the remaining edges: whenever
//!    several tables are free to go, the one with the lowest index (the
//!    caller's input order) goes first.
//!
//! Invariants of a successful [`LoadOrder`]:
//!
//! - `tables` holds every index in `0..table_count` exactly once, and for
//!   every edge that is neither a self-reference nor listed in `broken` or
//!   `deferred`, the parent comes before the child.
//! - `broken` and `deferred` are sorted, disjoint indices into the input
//!   `edges` slice; they only contain edges inside a cycle. `broken` edges are
//!   nullable and not deferrable; `deferred` edges are deferrable.
//! - The result depends only on the input, so the same input always gives the
//!   same order.
//!
//! If a cycle cannot be broken (every edge on it is non-deferrable with a NOT
//! NULL column), [`load_order`] returns a [`CycleError`] naming the tables
//! and constraints of that cycle.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

/// A foreign key: `child` references `parent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FkEdge {
    /// Table index holding the FK columns.
    pub child: usize,
    /// Referenced table index.
    pub parent: usize,
    /// Constraint name, for messages.
    pub name: String,
    /// All FK columns of the child are nullable.
    pub columns_nullable: bool,
    /// The constraint is DEFERRABLE.
    pub deferrable: bool,
}

/// The result of [`load_order`]; see the module documentation for its
/// invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOrder {
    /// Every input table exactly once, parents before children.
    pub tables: Vec<usize>,
    /// Indices into the input `edges` of nullable, non-deferrable edges chosen
    /// to break cycles: the loader inserts their columns as NULL and fills
    /// them in afterwards. Sorted.
    pub broken: Vec<usize>,
    /// Indices into the input `edges` of deferrable edges (inside cycles) that
    /// are relied on being deferred. Sorted.
    pub deferred: Vec<usize>,
}

/// A cycle of foreign keys that cannot be broken.
///
/// `tables[i]` references `tables[i + 1]` (wrapping around) through the
/// constraint `constraints[i]`; the cycle starts at its lowest table index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleError {
    pub tables: Vec<usize>,
    pub constraints: Vec<String>,
}

impl CycleError {
    /// The error message with tables rendered by `table_name` (for example a
    /// lookup of the real table names); `Display` renders them as `#index`.
    pub fn describe<N: fmt::Display>(&self, table_name: impl Fn(usize) -> N) -> String {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|&t| table_name(t).to_string())
            .collect();
        format!(
            "foreign keys form a cycle that cannot be broken: tables {} via {} \
             (each is NOT NULL and not DEFERRABLE)",
            tables.join(", "),
            self.constraints.join(", ")
        )
    }
}

impl fmt::Display for CycleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(|t| format!("#{t}")))
    }
}

impl std::error::Error for CycleError {}

/// Computes the load order of `table_count` tables linked by `edges`.
///
/// # Panics
///
/// Panics if an edge refers to a table index `>= table_count`.
pub fn load_order(table_count: usize, edges: &[FkEdge]) -> Result<LoadOrder, CycleError> {
    for (i, e) in edges.iter().enumerate() {
        assert!(
            e.child < table_count && e.parent < table_count,
            "foreign key #{i} ({}) refers to a table outside 0..{table_count}",
            e.name
        );
    }

    // references[t]: indices of the edges where `t` is the child, in input
    // order, self-references left out (they never constrain the order).
    let mut references = vec![Vec::new(); table_count];
    for (i, e) in edges.iter().enumerate() {
        if e.child != e.parent {
            references[e.child].push(i);
        }
    }

    let component = strongly_connected_components(edges, &references);
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (table, &c) in component.iter().enumerate() {
        if members.len() <= c {
            members.resize_with(c + 1, Vec::new);
        }
        members[c].push(table);
    }

    let mut removed = vec![false; edges.len()];
    let mut finder = CycleFinder::new(table_count);
    for (c, tables) in members.iter().enumerate() {
        if tables.len() > 1 {
            let graph = Component {
                id: c,
                tables,
                edges,
                references: &references,
                component: &component,
            };
            graph.break_cycles(&mut finder, &mut removed)?;
        }
    }

    let (deferred, broken): (Vec<usize>, Vec<usize>) = (0..edges.len())
        .filter(|&i| removed[i])
        .partition(|&i| edges[i].deferrable);

    Ok(LoadOrder {
        tables: stable_topological_sort(table_count, edges, &removed),
        broken,
        deferred,
    })
}

/// Tarjan's algorithm, iterative so that long chains cannot overflow the
/// stack. Returns the component number of every table; edges go from child
/// to parent (following references).
fn strongly_connected_components(edges: &[FkEdge], references: &[Vec<usize>]) -> Vec<usize> {
    const UNVISITED: usize = usize::MAX;
    let n = references.len();
    let mut index = vec![UNVISITED; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNVISITED; n];
    let mut stack = Vec::new();
    let mut next_index = 0;
    let mut component_count = 0;
    // (table, position of the next edge to follow in references[table])
    let mut frames: Vec<(usize, usize)> = Vec::new();

    for root in 0..n {
        if index[root] != UNVISITED {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        frames.push((root, 0));

        while let Some(&(v, pos)) = frames.last() {
            if let Some(&e) = references[v].get(pos) {
                if let Some(frame) = frames.last_mut() {
                    frame.1 += 1;
                }
                let w = edges[e].parent;
                if index[w] == UNVISITED {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    frames.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                frames.pop();
                if let Some(&(u, _)) = frames.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    loop {
                        let w = stack.pop().expect("Tarjan stack holds v");
                        on_stack[w] = false;
                        component[w] = component_count;
                        if w == v {
                            break;
                        }
                    }
                    component_count += 1;
                }
            }
        }
    }
    component
}

/// One strongly connected component with more than one table.
struct Component<'a> {
    id: usize,
    tables: &'a [usize],
    edges: &'a [FkEdge],
    references: &'a [Vec<usize>],
    component: &'a [usize],
}

impl Component<'_> {
    /// Marks in `removed` a minimal set of this component's edges whose
    /// removal leaves it acyclic, preferring deferrable edges, then nullable
    /// ones.
    fn break_cycles(
        &self,
        finder: &mut CycleFinder,
        removed: &mut [bool],
    ) -> Result<(), CycleError> {
        // Edges inside the component (self-references are not in
        // `references`), in input order.
        let inside: Vec<usize> = self
            .tables
            .iter()
            .flat_map(|&t| self.references[t].iter().copied())
            .filter(|&e| self.component[self.edges[e].parent] == self.id)
            .collect();

        // Deferrable edges cost nothing to break: remove them all for now.
        for &e in &inside {
            if self.edges[e].deferrable {
                removed[e] = true;
            }
        }

        // Every cycle left consists of non-deferrable edges: break it at its
        // lowest-numbered nullable edge, or give up if it has none (then no
        // choice of edges could have broken it).
        while let Some(cycle) = finder.find(self, removed) {
            match cycle
                .iter()
                .copied()
                .filter(|&e| self.edges[e].columns_nullable)
                .min()
            {
                Some(e) => removed[e] = true,
                None => return Err(self.cycle_error(&cycle)),
            }
        }

        // The greedy steps may have removed more than needed: put back every
        // edge that does not close a cycle again. Nullable edges first,
        // because keeping them saves an UPDATE while keeping a deferrable
        // edge saves nothing.
        let mut removed_inside: Vec<usize> = inside.into_iter().filter(|&e| removed[e]).collect();
        removed_inside.sort_by_key(|&e| (self.edges[e].deferrable, e));
        for e in removed_inside {
            removed[e] = false;
            if finder.find(self, removed).is_some() {
                removed[e] = true;
            }
        }
        Ok(())
    }

    /// Builds the error for `cycle` (edge indices, each edge's parent being
    /// the next edge's child), rotated to start at its lowest table.
    fn cycle_error(&self, cycle: &[usize]) -> CycleError {
        let start = (0..cycle.len())
            .min_by_key(|&i| self.edges[cycle[i]].child)
            .unwrap_or(0);
        let rotated = cycle[start..].iter().chain(&cycle[..start]);
        let (tables, constraints) = rotated
            .map(|&e| (self.edges[e].child, self.edges[e].name.clone()))
            .unzip();
        CycleError {
            tables,
            constraints,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    New,
    Open,
    Done,
}

/// Depth-first search for a cycle inside one component, with buffers reused
/// across calls (only the component's tables are reset each time).
struct CycleFinder {
    state: Vec<Visit>,
    /// Depth on the DFS path of each open table.
    depth: Vec<usize>,
}

impl CycleFinder {
    fn new(table_count: usize) -> Self {
        CycleFinder {
            state: vec![Visit::New; table_count],
            depth: vec![0; table_count],
        }
    }

    /// Returns the edges of a cycle made of edges inside `graph` that are not
    /// `removed`, in reference order, or `None` if there is no such cycle.
    /// Deterministic: tables and edges are visited in index order.
    fn find(&mut self, graph: &Component<'_>, removed: &[bool]) -> Option<Vec<usize>> {
        for &t in graph.tables {
            self.state[t] = Visit::New;
        }
        let mut frames: Vec<(usize, usize)> = Vec::new();
        // path[i] is the edge from frames[i].0 to frames[i + 1].0.
        let mut path: Vec<usize> = Vec::new();

        for &root in graph.tables {
            if self.state[root] != Visit::New {
                continue;
            }
            self.state[root] = Visit::Open;
            self.depth[root] = 0;
            frames.push((root, 0));

            while let Some(&(v, pos)) = frames.last() {
                let Some(&e) = graph.references[v].get(pos) else {
                    self.state[v] = Visit::Done;
                    frames.pop();
                    path.pop();
                    continue;
                };
                if let Some(frame) = frames.last_mut() {
                    frame.1 += 1;
                }
                let w = graph.edges[e].parent;
                if removed[e] || graph.component[w] != graph.id {
                    continue;
                }
                match self.state[w] {
                    Visit::New => {
                        self.state[w] = Visit::Open;
                        self.depth[w] = frames.len();
                        frames.push((w, 0));
                        path.push(e);
                    }
                    Visit::Open => {
                        let mut cycle = path[self.depth[w]..].to_vec();
                        cycle.push(e);
                        return Some(cycle);
                    }
                    Visit::Done => {}
                }
            }
        }
        None
    }
}

/// Kahn's algorithm over the edges that are neither self-references nor
/// `removed`; among the tables free to go, the lowest index goes first.
fn stable_topological_sort(table_count: usize, edges: &[FkEdge], removed: &[bool]) -> Vec<usize> {
    // Parallel edges count once each, both here and when released below.
    let mut unloaded_parents = vec![0usize; table_count];
    let mut children = vec![Vec::new(); table_count];
    for (i, e) in edges.iter().enumerate() {
        if e.child != e.parent && !removed[i] {
            unloaded_parents[e.child] += 1;
            children[e.parent].push(e.child);
        }
    }

    let mut ready: BinaryHeap<Reverse<usize>> = (0..table_count)
        .filter(|&t| unloaded_parents[t] == 0)
        .map(Reverse)
        .collect();
    let mut order = Vec::with_capacity(table_count);
    while let Some(Reverse(t)) = ready.pop() {
        order.push(t);
        for &c in &children[t] {
            unloaded_parents[c] -= 1;
            if unloaded_parents[c] == 0 {
                ready.push(Reverse(c));
            }
        }
    }
    assert_eq!(
        order.len(),
        table_count,
        "cycle breaking left a cycle behind"
    );
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// NOT NULL, not deferrable.
    fn hard(child: usize, parent: usize, name: &str) -> FkEdge {
        FkEdge {
            child,
            parent,
            name: name.to_string(),
            columns_nullable: false,
            deferrable: false,
        }
    }

    /// Nullable, not deferrable.
    fn nullable(child: usize, parent: usize, name: &str) -> FkEdge {
        FkEdge {
            columns_nullable: true,
            ..hard(child, parent, name)
        }
    }

    /// NOT NULL, deferrable.
    fn deferrable(child: usize, parent: usize, name: &str) -> FkEdge {
        FkEdge {
            deferrable: true,
            ..hard(child, parent, name)
        }
    }

    fn ok(tables: &[usize], broken: &[usize], deferred: &[usize]) -> Result<LoadOrder, CycleError> {
        Ok(LoadOrder {
            tables: tables.to_vec(),
            broken: broken.to_vec(),
            deferred: deferred.to_vec(),
        })
    }

    #[test]
    fn empty_input() {
        assert_eq!(load_order(0, &[]), ok(&[], &[], &[]));
    }

    #[test]
    fn chain() {
        // 0 -> 1 -> 2 (child -> parent); the deferrable edge is not in a
        // cycle, so it is not relied on being deferred.
        let edges = [hard(0, 1, "a"), deferrable(1, 2, "b")];
        assert_eq!(load_order(3, &edges), ok(&[2, 1, 0], &[], &[]));
    }

    #[test]
    fn diamond() {
        // 0 references 1 and 2, which both reference 3.
        let edges = [
            hard(0, 1, "a"),
            hard(0, 2, "b"),
            hard(1, 3, "c"),
            hard(2, 3, "d"),
        ];
        assert_eq!(load_order(4, &edges), ok(&[3, 1, 2, 0], &[], &[]));
    }

    #[test]
    fn independent_tables_keep_input_order() {
        assert_eq!(load_order(3, &[]), ok(&[0, 1, 2], &[], &[]));
        // 1 waits for 3, then goes before 4 because it comes first in input.
        let edges = [hard(1, 3, "a")];
        assert_eq!(load_order(5, &edges), ok(&[0, 2, 3, 1, 4], &[], &[]));
    }

    #[test]
    fn self_reference_needs_nothing() {
        let edges = [hard(0, 0, "parent_id"), hard(0, 1, "a")];
        assert_eq!(load_order(2, &edges), ok(&[1, 0], &[], &[]));
    }

    #[test]
    fn two_cycle_breaks_the_nullable_edge() {
        let edges = [hard(0, 1, "a"), nullable(1, 0, "b")];
        // Edge 1 is broken, so its parent-to-be (0) waits for 1.
        assert_eq!(load_order(2, &edges), ok(&[1, 0], &[1], &[]));

        // Both nullable: the lowest-numbered edge is broken.
        let edges = [nullable(0, 1, "a"), nullable(1, 0, "b")];
        assert_eq!(load_order(2, &edges), ok(&[0, 1], &[0], &[]));
    }

    #[test]
    fn two_cycle_uses_the_deferrable_edge() {
        let edges = [deferrable(0, 1, "a"), hard(1, 0, "b")];
        assert_eq!(load_order(2, &edges), ok(&[0, 1], &[], &[0]));

        // Deferring is preferred over nulling a nullable column.
        let edges = [nullable(0, 1, "a"), deferrable(1, 0, "b")];
        assert_eq!(load_order(2, &edges), ok(&[1, 0], &[], &[1]));
    }

    #[test]
    fn three_cycle() {
        let edges = [
            hard(0, 1, "a"),
            nullable(1, 2, "b"),
            hard(2, 0, "c"),
            hard(3, 2, "d"),
        ];
        assert_eq!(load_order(4, &edges), ok(&[1, 0, 2, 3], &[1], &[]));
    }

    #[test]
    fn two_separate_cycles() {
        let edges = [
            nullable(0, 3, "a"),
            hard(3, 0, "b"),
            deferrable(1, 2, "c"),
            hard(2, 1, "d"),
            hard(4, 1, "e"),
        ];
        assert_eq!(load_order(5, &edges), ok(&[0, 1, 2, 3, 4], &[0], &[2]));
    }

    #[test]
    fn unbreakable_cycle_is_an_error() {
        let edges = [hard(1, 2, "fk_b"), hard(2, 0, "fk_c"), hard(0, 1, "fk_a")];
        let err = load_order(4, &edges).unwrap_err();
        assert_eq!(
            err,
            CycleError {
                tables: vec![0, 1, 2],
                constraints: vec!["fk_a".into(), "fk_b".into(), "fk_c".into()],
            }
        );
        assert_eq!(
            err.to_string(),
            "foreign keys form a cycle that cannot be broken: tables #0, #1, #2 \
             via fk_a, fk_b, fk_c (each is NOT NULL and not DEFERRABLE)"
        );
        let names = ["users", "teams", "orgs", "other"];
        assert_eq!(
            err.describe(|t| names[t]),
            "foreign keys form a cycle that cannot be broken: tables users, teams, orgs \
             via fk_a, fk_b, fk_c (each is NOT NULL and not DEFERRABLE)"
        );
    }

    #[test]
    fn unbreakable_inner_cycle_is_reported_even_if_others_break() {
        // 0 <-> 1 is breakable, 1 <-> 2 is not.
        let edges = [
            nullable(0, 1, "a"),
            nullable(1, 0, "b"),
            hard(2, 1, "c"),
            hard(1, 2, "d"),
        ];
        assert_eq!(
            load_order(3, &edges),
            Err(CycleError {
                tables: vec![1, 2],
                constraints: vec!["d".into(), "c".into()],
            })
        );
    }

    #[test]
    fn parallel_edges() {
        // Both parallel edges must be broken, as the reverse edge cannot be.
        let edges = [nullable(0, 1, "a"), nullable(0, 1, "b"), hard(1, 0, "c")];
        // Only "1 references 0" is left, so 0 goes first.
        assert_eq!(load_order(2, &edges), ok(&[0, 1], &[0, 1], &[]));

        // The greedy step first breaks edge 0, then must break edge 2 for the
        // NOT NULL parallel edge 1; edge 0 is then put back as unnecessary.
        let edges = [nullable(0, 1, "a"), hard(0, 1, "b"), nullable(1, 0, "c")];
        assert_eq!(load_order(2, &edges), ok(&[1, 0], &[2], &[]));

        // Parallel edges without a cycle just count twice in the sort.
        let edges = [hard(0, 1, "a"), hard(0, 1, "b"), hard(2, 0, "c")];
        assert_eq!(load_order(3, &edges), ok(&[1, 0, 2], &[], &[]));
    }

    #[test]
    #[should_panic(expected = "outside 0..2")]
    fn out_of_range_table_panics() {
        let _ = load_order(2, &[hard(0, 2, "a")]);
    }

    #[test]
    fn large_chain_in_reverse_order() {
        const N: usize = 2_000;
        let start = Instant::now();
        // Table i references table i + 1, edges listed from the end.
        let edges: Vec<FkEdge> = (0..N - 1)
            .rev()
            .map(|i| hard(i, i + 1, &format!("fk_{i}")))
            .collect();
        let expected: Vec<usize> = (0..N).rev().collect();
        assert_eq!(load_order(N, &edges), ok(&expected, &[], &[]));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn large_ring_with_one_nullable_edge() {
        const N: usize = 2_000;
        let start = Instant::now();
        // Table i references table (i + 1) % N; only edge 1000 is nullable.
        let edges: Vec<FkEdge> = (0..N)
            .map(|i| {
                let name = format!("fk_{i}");
                if i == 1000 {
                    nullable(i, (i + 1) % N, &name)
                } else {
                    hard(i, (i + 1) % N, &name)
                }
            })
            .collect();
        // 1000 goes first, then back down to 0, then 1999 down to 1001.
        let expected: Vec<usize> = (0..=1000).rev().chain((1001..N).rev()).collect();
        assert_eq!(load_order(N, &edges), ok(&expected, &[1000], &[]));
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
