//! Typed steps: logic that is not an expression, written as Rust functions over `serde`
//! structs. Batches are converted to and from `Vec<T>` with `serde_arrow` (values, not boxed
//! rows), the function runs over the whole batch, and the result is a batch again.
//!
//! Column types follow the struct: integers, floats, `bool`, `String`, `Option<_>` (nullable),
//! nested structs and `Vec<_>` (lists). An output field named like an input timestamp column
//! and holding `i64` milliseconds keeps that column's timestamp type, so event time survives a
//! `map`; elsewhere times are `i64` milliseconds, which windows and watermarks accept.

use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::DFSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_arrow::schema::{SchemaLike, TracingOptions};

use super::{ForEachSink, Pipeline, Stream};
use crate::operator::{Operator, Output};
use crate::ops::Cloning;
use crate::testing::{CollectSink, MemorySource};
use crate::{Error, Result};

fn plan_error(what: &str, e: serde_arrow::Error) -> Error {
    Error::plan(format!("{what}: {e}"))
}

fn run_error(what: &str, e: serde_arrow::Error) -> Error {
    Error::Execution {
        context: what.to_string(),
        message: e.to_string(),
    }
}

/// The columns of `T`; fields named like a timestamp column of `like` and traced as integers
/// take that timestamp type.
fn fields_of<T: DeserializeOwned>(what: &str, like: Option<&Schema>) -> Result<Vec<FieldRef>> {
    let options = TracingOptions::default().allow_null_fields(true);
    let traced = Vec::<FieldRef>::from_type::<T>(options).map_err(|e| {
        plan_error(
            &format!(
                "{what}: cannot derive columns from {}",
                std::any::type_name::<T>()
            ),
            e,
        )
    })?;
    Ok(traced
        .into_iter()
        .map(|f| {
            let timestamp = like
                .and_then(|s| s.field_with_name(f.name()).ok())
                .filter(|c| matches!(c.data_type(), DataType::Timestamp(..)));
            match timestamp {
                Some(c) if f.data_type().is_integer() => {
                    Arc::new(Field::new(f.name(), c.data_type().clone(), f.is_nullable()))
                }
                _ => f,
            }
        })
        .collect())
}

fn decode<T: DeserializeOwned>(what: &str, batch: &RecordBatch) -> Result<Vec<T>> {
    serde_arrow::from_record_batch(batch).map_err(|e| run_error(what, e))
}

fn encode<T: Serialize>(
    what: &str,
    schema: &SchemaRef,
    fields: &[FieldRef],
    rows: &[T],
) -> Result<RecordBatch> {
    let batch = serde_arrow::to_record_batch(fields, &rows).map_err(|e| run_error(what, e))?;
    Ok(RecordBatch::try_new(
        Arc::clone(schema),
        batch.columns().to_vec(),
    )?)
}

type BatchStep = dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync;

/// A stateless operator running a typed step over each batch.
#[derive(Clone)]
struct Typed {
    step: Arc<BatchStep>,
}

impl std::fmt::Debug for Typed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Typed")
    }
}

impl Operator for Typed {
    fn process_batch(&mut self, _input: usize, batch: RecordBatch, out: &mut Output) -> Result<()> {
        if batch.num_rows() > 0 {
            out.emit((self.step)(batch)?);
        }
        Ok(())
    }
}

impl Pipeline {
    /// A bounded stream of `items` (one split), for tests and small inputs.
    pub fn from_iter<T>(&self, name: &str, items: impl IntoIterator<Item = T>) -> Result<Stream>
    where
        T: Serialize + DeserializeOwned,
    {
        let fields = fields_of::<T>(name, None)?;
        let schema = Arc::new(Schema::new(fields.clone()));
        let items: Vec<T> = items.into_iter().collect();
        let batches = items
            .chunks(4096)
            .map(|chunk| encode(name, &schema, &fields, chunk))
            .collect::<Result<Vec<_>>>()?;
        let source = MemorySource::new(name, schema).with_batches(batches);
        self.source(name, Arc::new(source))
    }
}

impl Stream {
    fn typed_refusal(&self, what: &str) -> Result<()> {
        if crate::changelog::is_update_stream(self.plan.schema().as_arrow()) {
            return Err(Error::plan(format!(
                "{what} over an update stream is not supported: typed steps see rows, not \
                 changes; use filter() and select() there"
            )));
        }
        Ok(())
    }

    fn typed_step(self, kind: &str, schema: SchemaRef, step: Arc<BatchStep>) -> Result<Stream> {
        let df = DFSchema::try_from(schema.as_ref().clone())?;
        let detail = format!(
            "{} columns",
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let plan = self
            .builder()
            .operator(kind, &detail, Arc::new(Cloning(Typed { step })), df)
            .build();
        Ok(self.next(plan))
    }

    /// Each row as an `In`, through `f`, as an `Out`: the columns become `Out`'s.
    ///
    /// ```
    /// # use streams_core::dsl::Pipeline;
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct Line { text: String }
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Stats { text: String, words: i64, shout: bool }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> streams_core::Result<()> {
    /// let p = Pipeline::new();
    /// let stats = p
    ///     .from_iter("lines", [Line { text: "hello stream world".into() }])?
    ///     .map(|l: Line| Stats {
    ///         words: l.text.split_whitespace().count() as i64,
    ///         shout: l.text.ends_with('!'),
    ///         text: l.text,
    ///     })?
    ///     .collect::<Stats>()?;
    /// p.execute()?.wait().await?;
    /// assert_eq!(stats.rows()?[0].words, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub fn map<In, Out>(self, f: impl Fn(In) -> Out + Send + Sync + 'static) -> Result<Stream>
    where
        In: DeserializeOwned,
        Out: Serialize + DeserializeOwned,
    {
        self.flat_map::<In, Out, _>(move |row| std::iter::once(f(row)))
    }

    /// Each row as an `In`, through `f`, as any number of `Out` rows.
    pub fn flat_map<In, Out, I>(self, f: impl Fn(In) -> I + Send + Sync + 'static) -> Result<Stream>
    where
        In: DeserializeOwned,
        Out: Serialize + DeserializeOwned,
        I: IntoIterator<Item = Out>,
    {
        self.typed_refusal("map")?;
        let input = self.schema();
        let fields = fields_of::<Out>("map", Some(&input))?;
        // Check `In` against the columns now rather than on the first batch.
        fields_of::<In>("map input", None)?;
        let schema = Arc::new(Schema::new(fields.clone()));
        let out_schema = Arc::clone(&schema);
        let step = Arc::new(move |batch: RecordBatch| {
            let rows: Vec<In> = decode("map", &batch)?;
            let mapped: Vec<Out> = rows.into_iter().flat_map(&f).collect();
            encode("map", &out_schema, &fields, &mapped)
        });
        self.typed_step("map", schema, step)
    }

    /// Keeps the rows for which `f`, given the row as a `T`, is true. `T` may name only some
    /// columns; the others are kept as they are.
    pub fn filter_rows<T>(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Result<Stream>
    where
        T: DeserializeOwned,
    {
        self.typed_refusal("filter_rows")?;
        fields_of::<T>("filter_rows", None)?;
        let schema = self.schema();
        let step = Arc::new(move |batch: RecordBatch| {
            let rows: Vec<T> = decode("filter_rows", &batch)?;
            let keep: BooleanArray = rows.iter().map(|r| Some(f(r))).collect();
            Ok(filter_record_batch(&batch, &keep)?)
        });
        self.typed_step("filter rows", schema, step)
    }

    /// Calls `f` with every row, as a `T`, from the subtask that has it.
    pub fn for_each<T>(self, f: impl Fn(T) + Send + Sync + 'static) -> Result<()>
    where
        T: DeserializeOwned,
    {
        self.typed_refusal("for_each")?;
        fields_of::<T>("for_each", None)?;
        let sink = ForEachSink::new(
            Arc::new(move |batch: &RecordBatch| {
                decode::<T>("for_each", batch)?.into_iter().for_each(&f);
                Ok(())
            }),
            false,
        );
        self.sink("for_each", Arc::new(sink))
    }

    /// Keeps every row the job produces, to read as `T`s once it has run (an update stream is
    /// read as the table it describes).
    pub fn collect<T>(self) -> Result<Collected<T>>
    where
        T: DeserializeOwned,
    {
        fields_of::<T>("collect", None)?;
        let sink = Arc::new(CollectSink::new());
        let schema = self.schema();
        self.sink("collect", sink.clone())?;
        Ok(Collected {
            sink,
            schema,
            _rows: PhantomData,
        })
    }
}

/// The rows a `collect` step kept.
#[derive(Debug)]
pub struct Collected<T> {
    sink: Arc<CollectSink>,
    schema: SchemaRef,
    _rows: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Collected<T> {
    /// The rows so far (all of them once the job has ended), as `T`s.
    pub fn rows(&self) -> Result<Vec<T>> {
        let table = crate::changelog::materialize(&self.schema, &self.sink.batches())?;
        decode("collect", &table)
    }

    /// The rows so far as one batch (an update stream applied).
    pub fn batch(&self) -> Result<RecordBatch> {
        crate::changelog::materialize(&self.schema, &self.sink.batches())
    }
}
