//! The rule index: from (category, target, item name) or method to the few
//! rules that can apply, so a decision costs about the same with 20 rules
//! as with 2,000.
//!
//! Each category (tools, resources, prompts) keeps rules under their exact
//! target names, plus one shared bucket for rules whose targets are globs.
//! Inside a bucket, exact item names are a hash lookup, all glob names are
//! matched at once by one `GlobSet`, and rules that name no item at all
//! (`methods = ["tools/call"]`, or no "what" beyond targets) are a short list.
//! Methods that reach no item (plumbing a deny rule lists, unknown methods)
//! are looked up by name. Candidates are only candidates: the caller checks
//! who, target, method and condition on each.

use std::collections::HashMap;

use globset::{Candidate, GlobSet, GlobSetBuilder};

use super::rule::{categories_of, glob, Category, Rule};

#[derive(Default)]
struct BucketBuilder {
    exact: HashMap<String, Vec<u32>>,
    globs: Vec<(String, u32)>,
    any: Vec<u32>,
}

struct Bucket {
    exact: HashMap<String, Vec<u32>>,
    globs: GlobSet,
    /// Rule of each glob in `globs`, by glob index.
    glob_rules: Vec<u32>,
    any: Vec<u32>,
}

impl BucketBuilder {
    fn build(self, separator: bool) -> Result<Bucket, String> {
        let mut set = GlobSetBuilder::new();
        let mut glob_rules = Vec::with_capacity(self.globs.len());
        for (g, rule) in self.globs {
            set.add(glob(&g, separator)?);
            glob_rules.push(rule);
        }
        Ok(Bucket {
            exact: self.exact,
            globs: set
                .build()
                .map_err(|e| format!("globs do not compile: {e}"))?,
            glob_rules,
            any: self.any,
        })
    }
}

impl Bucket {
    fn candidates(&self, name: &str, scratch: &mut Vec<usize>, out: &mut Vec<u32>) {
        if let Some(r) = self.exact.get(name) {
            out.extend_from_slice(r);
        }
        if !self.globs.is_empty() {
            self.globs
                .matches_candidate_into(&Candidate::new(name), scratch);
            out.extend(scratch.iter().filter_map(|i| self.glob_rules.get(*i)));
        }
        out.extend_from_slice(&self.any);
    }
}

#[derive(Default)]
struct CategoryBuilder {
    by_target: HashMap<String, BucketBuilder>,
    any_target: BucketBuilder,
}

struct CategoryIndex {
    by_target: HashMap<String, Bucket>,
    any_target: Bucket,
}

pub struct Index {
    tools: CategoryIndex,
    resources: CategoryIndex,
    prompts: CategoryIndex,
    /// Rules that list a method reaching no item, by method.
    by_method: HashMap<String, Vec<u32>>,
}

impl Bucket {
    fn empty() -> Self {
        Self {
            exact: HashMap::new(),
            globs: GlobSet::empty(),
            glob_rules: Vec::new(),
            any: Vec::new(),
        }
    }
}

impl CategoryIndex {
    fn empty() -> Self {
        Self {
            by_target: HashMap::new(),
            any_target: Bucket::empty(),
        }
    }
}

impl Index {
    /// The index of no rules.
    pub fn empty() -> Self {
        Self {
            tools: CategoryIndex::empty(),
            resources: CategoryIndex::empty(),
            prompts: CategoryIndex::empty(),
            by_method: HashMap::new(),
        }
    }

    pub fn build(rules: &[Rule]) -> Result<Self, String> {
        let mut cats: [CategoryBuilder; 3] = Default::default();
        let mut by_method: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| "too many rules".to_owned())?;
            for m in &rule.methods {
                if categories_of(m).is_empty() {
                    by_method.entry(m.clone()).or_default().push(id);
                }
            }
            for (slot, cat) in Category::ALL.iter().enumerate() {
                let covers = rule.methods.iter().any(|m| categories_of(m).contains(cat));
                if !covers {
                    continue;
                }
                let items = rule.items(*cat);
                if items.is_none() && rule.names_items() {
                    // Names items of other kinds only.
                    continue;
                }
                let Some(builder) = cats.get_mut(slot) else {
                    continue;
                };
                let post = |b: &mut BucketBuilder| match items {
                    None => b.any.push(id),
                    Some(p) => {
                        for l in &p.literals {
                            b.exact.entry(l.clone()).or_default().push(id);
                        }
                        for g in &p.glob_sources {
                            b.globs.push((g.clone(), id));
                        }
                    }
                };
                // A rule with exact and glob targets is in both kinds of
                // bucket; duplicates are removed per lookup.
                if rule.targets.globs.is_some() {
                    post(&mut builder.any_target);
                }
                for t in &rule.targets.literals {
                    post(builder.by_target.entry(t.clone()).or_default());
                }
            }
        }
        let [tools, resources, prompts] = cats;
        let finish = |c: CategoryBuilder, sep: bool| -> Result<CategoryIndex, String> {
            Ok(CategoryIndex {
                by_target: c
                    .by_target
                    .into_iter()
                    .map(|(t, b)| b.build(sep).map(|b| (t, b)))
                    .collect::<Result<_, _>>()?,
                any_target: c.any_target.build(sep)?,
            })
        };
        Ok(Self {
            tools: finish(tools, false)?,
            resources: finish(resources, true)?,
            prompts: finish(prompts, false)?,
            by_method,
        })
    }

    fn category(&self, c: Category) -> &CategoryIndex {
        match c {
            Category::Tool => &self.tools,
            Category::Resource => &self.resources,
            Category::Prompt => &self.prompts,
        }
    }

    /// Rules that may apply to `name` of category `c` on `target`,
    /// appended to `out` (possibly with duplicates).
    pub fn items(&self, c: Category, target: &str, name: &str, out: &mut Vec<u32>) {
        let idx = self.category(c);
        let mut scratch = Vec::new();
        if let Some(b) = idx.by_target.get(target) {
            b.candidates(name, &mut scratch, out);
        }
        idx.any_target.candidates(name, &mut scratch, out);
    }

    /// Rules that list `method`, for methods that reach no item.
    pub fn method(&self, method: &str) -> &[u32] {
        self.by_method.get(method).map_or(&[], Vec::as_slice)
    }
}
