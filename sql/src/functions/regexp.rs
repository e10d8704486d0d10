//! `REGEXP_EXTRACT`, on `regex-automata`'s meta engine (what the `regex` crate wraps) so that
//! each call keeps the compiled pattern and its matching scratch space to itself for a whole
//! batch: through `regex::Regex`, a pattern shared by two threads fetched and returned its
//! scratch space on every row, and one compiled per batch built its lazy DFA again each time.

use std::sync::{Arc, Mutex, PoisonError};

use regex_automata::meta::{Cache, Regex};
use regex_automata::util::primitives::NonMaxUsize;
use regex_automata::{Input, PatternID};
use streams_core::arrow::array::{Array, AsArray};
use streams_core::arrow::datatypes::{DataType, Int64Type};
use streams_core::datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use streams_core::datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use super::pieces::pieces;

/// `REGEXP_EXTRACT(text, regex [, group])`: the `group`-th (default 1; 0 is the whole match)
/// capture group of the first match, or NULL when nothing matches or the group does not
/// exist.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct RegexpExtract {
    signature: Signature,
    compiled: Compiled,
}

impl RegexpExtract {
    pub(super) fn new() -> Self {
        RegexpExtract {
            signature: Signature::user_defined(Volatility::Immutable),
            compiled: Compiled::default(),
        }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        // The text is read in the string type it has (no copy into another per batch).
        let text = match arg_types.first() {
            Some(t @ (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)) => t.clone(),
            _ => DataType::Utf8,
        };
        match arg_types.len() {
            2 => Ok(vec![text, DataType::Utf8]),
            3 => Ok(vec![text, DataType::Utf8, DataType::Int64]),
            _ => plan_err!("REGEXP_EXTRACT takes a string, a regex and optionally a group index"),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let text = args.args[0].to_array(n)?;
        // The usual case, a constant pattern and group: neither expanded into a column.
        let group = match args.args.get(2) {
            None => Some(Some(1)),
            Some(ColumnarValue::Scalar(ScalarValue::Int64(g))) => {
                Some(g.and_then(|g| usize::try_from(g).ok()))
            }
            Some(_) => None,
        };
        if let (ColumnarValue::Scalar(ScalarValue::Utf8(pattern)), Some(group)) =
            (&args.args[1], group)
        {
            let out = match pattern.as_deref().zip(group) {
                Some((pattern, group)) => {
                    let mut extract = Extract::new(self.compiled.get(pattern)?);
                    pieces(&text, |_, t| extract.run(t, group))?
                }
                None => pieces(&text, |_, _| None)?,
            };
            return Ok(ColumnarValue::Array(out));
        }
        let patterns = args.args[1].to_array(n)?;
        let patterns = patterns.as_string::<i32>();
        let groups = args.args.get(2).map(|g| g.to_array(n)).transpose()?;
        let groups = groups.as_ref().map(|g| g.as_primitive::<Int64Type>());
        let mut failed = None;
        // Patterns from a column repeat from row to row: looked up again only when they change.
        let mut last: Option<(&str, Extract)> = None;
        let out = pieces(&text, |i, t| {
            let group = match groups {
                Some(g) if g.is_null(i) => None,
                Some(g) => usize::try_from(g.value(i)).ok(),
                None => Some(1),
            };
            let group = group.filter(|_| !patterns.is_null(i) && failed.is_none())?;
            let pattern = patterns.value(i);
            if last.as_ref().is_none_or(|(p, _)| *p != pattern) {
                match self.compiled.get(pattern) {
                    Ok(re) => last = Some((pattern, Extract::new(re))),
                    Err(e) => failed = Some(e),
                }
            }
            match (&mut last, &failed) {
                (Some((_, extract)), None) => extract.run(t, group),
                _ => None,
            }
        })?;
        match failed {
            Some(e) => Err(e),
            None => Ok(ColumnarValue::Array(out)),
        }
    }
}

/// Compiled patterns, kept between batches: compiling `(&|^)channel_id=([^&]*)` took longer
/// than matching a batch of urls with it. The function is one value per session, so this is
/// shared by its calls; the least recently used pattern goes when more than `KEPT` are.
#[derive(Debug, Default)]
struct Compiled(Mutex<Vec<(String, Arc<Pattern>)>>);

impl Compiled {
    const KEPT: usize = 64;

    fn get(&self, pattern: &str) -> Result<Arc<Pattern>> {
        let lock = || self.0.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let mut kept = lock();
            if let Some(i) = kept.iter().position(|(p, _)| p == pattern) {
                let entry = kept.remove(i);
                let found = Arc::clone(&entry.1);
                kept.push(entry);
                return Ok(found);
            }
        }
        // Compiled without holding the lock: other calls go on matching meanwhile.
        let re = match Regex::new(pattern) {
            Ok(re) => re,
            Err(e) => return exec_err!("REGEXP_EXTRACT: bad regular expression '{pattern}': {e}"),
        };
        let compiled = Arc::new(Pattern {
            re,
            caches: Mutex::default(),
        });
        let mut kept = lock();
        if kept.len() >= Self::KEPT {
            kept.remove(0);
        }
        kept.push((pattern.to_string(), Arc::clone(&compiled)));
        Ok(compiled)
    }
}

// What is kept does not change what the function is.
impl PartialEq for Compiled {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Compiled {}

impl std::hash::Hash for Compiled {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

/// A compiled pattern and the scratch spaces of calls that used it (one per call at a time;
/// each keeps the lazy DFA states built while matching, so a later batch starts warm).
#[derive(Debug)]
struct Pattern {
    re: Regex,
    caches: Mutex<Vec<Cache>>,
}

/// One call's use of a pattern over a batch: its own scratch space and capture slots.
struct Extract {
    pattern: Arc<Pattern>,
    cache: Option<Cache>,
    slots: Vec<Option<NonMaxUsize>>,
}

impl Extract {
    fn new(pattern: Arc<Pattern>) -> Self {
        let kept = pattern
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let cache = kept.unwrap_or_else(|| pattern.re.create_cache());
        Extract {
            pattern,
            cache: Some(cache),
            slots: Vec::new(),
        }
    }

    fn run<'t>(&mut self, text: &'t str, group: usize) -> Option<&'t str> {
        let re = &self.pattern.re;
        if group >= re.group_info().group_len(PatternID::ZERO) {
            return None;
        }
        let cache = self.cache.get_or_insert_with(|| re.create_cache());
        // Only the slots up to the group's are asked for: the whole match alone is found
        // without resolving any capture group.
        let wanted = 2 * (group + 1);
        if self.slots.len() < wanted {
            self.slots.resize(wanted, None);
        }
        let slots = &mut self.slots[..wanted];
        re.search_slots_with(cache, &Input::new(text), slots)?;
        let (start, end) = (slots[2 * group]?, slots[2 * group + 1]?);
        text.get(start.get()..end.get())
    }
}

impl Drop for Extract {
    fn drop(&mut self) {
        if let Some(cache) = self.cache.take() {
            let mut caches = self
                .pattern
                .caches
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            caches.push(cache);
        }
    }
}
