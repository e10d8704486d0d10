//! Nexmark events as Arrow columns: the event table Flink's Nexmark suite declares
//! (`event_type`, and one `ROW` column each for `person`, `auction` and `bid`, null unless
//! the event is of that type), projected and cast to the columns the table declares.

use std::sync::Arc;

use nexmark::event::Event;
use streams_core::arrow::array::{
    Array, ArrayRef, Int32Builder, Int64Builder, NullBufferBuilder, RecordBatch, StringBuilder,
    StructArray, TimestampMillisecondBuilder,
};
use streams_core::arrow::compute::{can_cast_types, cast};
use streams_core::arrow::datatypes::{DataType, Field, Fields, SchemaRef, TimeUnit};
use streams_core::{Error, Result};

/// The three kinds of event and their fields, in the order of Flink's suite.
const PERSON: &[&str] = &[
    "id",
    "name",
    "emailAddress",
    "creditCard",
    "city",
    "state",
    "dateTime",
    "extra",
];
const AUCTION: &[&str] = &[
    "id",
    "itemName",
    "description",
    "initialBid",
    "reserve",
    "dateTime",
    "expires",
    "seller",
    "category",
    "extra",
];
const BID: &[&str] = &[
    "auction", "bidder", "price", "channel", "url", "dateTime", "extra",
];

/// The type each field is generated as (ids and money as BIGINT, times as TIMESTAMP(3)).
fn field_type(name: &str) -> DataType {
    match name {
        "dateTime" | "expires" => DataType::Timestamp(TimeUnit::Millisecond, None),
        "id" | "initialBid" | "reserve" | "seller" | "category" | "auction" | "bidder"
        | "price" => DataType::Int64,
        _ => DataType::Utf8,
    }
}

/// The Nexmark event table as the Flink suite declares it (field names as written there;
/// the SQL frontend lower-cases unquoted names, and matching here ignores case).
pub fn event_table_fields() -> Fields {
    let row = |names: &[&str]| {
        let fields: Vec<Field> = names
            .iter()
            .map(|n| Field::new(*n, field_type(n), true))
            .collect();
        DataType::Struct(fields.into())
    };
    Fields::from(vec![
        Field::new("event_type", DataType::Int32, true),
        Field::new("person", row(PERSON), true),
        Field::new("auction", row(AUCTION), true),
        Field::new("bid", row(BID), true),
    ])
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Person,
    Auction,
    Bid,
}

impl Kind {
    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Person => PERSON,
            Kind::Auction => AUCTION,
            Kind::Bid => BID,
        }
    }
}

/// How one declared column is produced.
#[derive(Clone, Debug)]
enum Column {
    EventType,
    /// A `ROW` column: for each declared field, the generated field it is read from.
    Row {
        kind: Kind,
        fields: Fields,
        from: Vec<usize>,
    },
}

/// The declared columns, checked once when the table is planned.
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    schema: SchemaRef,
    columns: Vec<Column>,
}

impl Layout {
    /// Checks the table's columns against the event table: each must be one of its columns
    /// (a `ROW` may declare a subset of the fields, in any order), with a type the generated
    /// one casts to.
    pub(crate) fn new(table: &str, schema: SchemaRef) -> Result<Self> {
        let mut columns = Vec::new();
        for f in schema.fields() {
            let kind = match f.name().to_ascii_lowercase().as_str() {
                "event_type" => {
                    check_cast(table, f.name(), &DataType::Int32, f.data_type())?;
                    columns.push(Column::EventType);
                    continue;
                }
                "person" => Kind::Person,
                "auction" => Kind::Auction,
                "bid" => Kind::Bid,
                other => {
                    return Err(Error::plan(format!(
                        "table `{table}`: the nexmark connector has no column `{other}` \
                         (it has event_type, person, auction, bid)"
                    )));
                }
            };
            let DataType::Struct(fields) = f.data_type() else {
                return Err(Error::plan(format!(
                    "table `{table}`: nexmark column `{}` must be a ROW<...> of {}",
                    f.name(),
                    kind.names().join(", ")
                )));
            };
            let mut from = Vec::new();
            for child in fields {
                let Some(i) = kind
                    .names()
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(child.name()))
                else {
                    return Err(Error::plan(format!(
                        "table `{table}`: nexmark column `{}` has no field `{}` (it has {})",
                        f.name(),
                        child.name(),
                        kind.names().join(", ")
                    )));
                };
                let path = format!("{}.{}", f.name(), child.name());
                check_cast(
                    table,
                    &path,
                    &field_type(kind.names()[i]),
                    child.data_type(),
                )?;
                from.push(i);
            }
            columns.push(Column::Row {
                kind,
                fields: fields.clone(),
                from,
            });
        }
        Ok(Layout { schema, columns })
    }

    pub(crate) fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn wants(&self, kind: Kind) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, Column::Row { kind: k, .. } if *k == kind))
    }
}

fn check_cast(table: &str, column: &str, generated: &DataType, declared: &DataType) -> Result<()> {
    if can_cast_types(generated, declared) {
        Ok(())
    } else {
        Err(Error::plan(format!(
            "table `{table}`: nexmark column `{column}` is generated as {generated}, which \
             does not convert to the declared {declared}"
        )))
    }
}

/// Builds one batch of events, appending only the columns the layout declares.
#[derive(Debug)]
pub(crate) struct BatchBuilder {
    event_type: Int32Builder,
    person: Option<RowBuilder>,
    auction: Option<RowBuilder>,
    bid: Option<RowBuilder>,
}

/// One `ROW` column under construction: a builder per field, and which rows are set.
#[derive(Debug)]
struct RowBuilder {
    ints: Vec<Int64Builder>,
    strings: Vec<StringBuilder>,
    times: Vec<TimestampMillisecondBuilder>,
    valid: NullBufferBuilder,
}

impl RowBuilder {
    fn new(capacity: usize, kind: Kind) -> Self {
        let count =
            |t: fn(&DataType) -> bool| kind.names().iter().filter(|n| t(&field_type(n))).count();
        RowBuilder {
            ints: (0..count(|t| *t == DataType::Int64))
                .map(|_| Int64Builder::with_capacity(capacity))
                .collect(),
            strings: (0..count(|t| *t == DataType::Utf8))
                .map(|_| StringBuilder::with_capacity(capacity, capacity * 16))
                .collect(),
            times: (0..count(|t| matches!(t, DataType::Timestamp(..))))
                .map(|_| TimestampMillisecondBuilder::with_capacity(capacity))
                .collect(),
            valid: NullBufferBuilder::new(capacity),
        }
    }

    /// A row of another kind: defaults under a null, so no field needs its own null mask.
    fn skip(&mut self) {
        self.ints.iter_mut().for_each(|b| b.append_value(0));
        self.strings.iter_mut().for_each(|b| b.append_value(""));
        self.times.iter_mut().for_each(|b| b.append_value(0));
        self.valid.append_null();
    }

    /// The finished fields in the order of the kind's names.
    fn finish(
        &mut self,
        kind: Kind,
    ) -> (
        Vec<ArrayRef>,
        Option<streams_core::arrow::buffer::NullBuffer>,
    ) {
        let (mut i, mut s, mut t) = (0, 0, 0);
        let mut out: Vec<ArrayRef> = Vec::with_capacity(kind.names().len());
        for n in kind.names() {
            match field_type(n) {
                DataType::Int64 => {
                    out.push(Arc::new(self.ints[i].finish()));
                    i += 1;
                }
                DataType::Utf8 => {
                    out.push(Arc::new(self.strings[s].finish()));
                    s += 1;
                }
                _ => {
                    out.push(Arc::new(self.times[t].finish()));
                    t += 1;
                }
            }
        }
        (out, self.valid.finish())
    }
}

fn int(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn millis(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl BatchBuilder {
    pub(crate) fn new(layout: &Layout, capacity: usize) -> Self {
        let row = |k: Kind| layout.wants(k).then(|| RowBuilder::new(capacity, k));
        BatchBuilder {
            event_type: Int32Builder::with_capacity(capacity),
            person: row(Kind::Person),
            auction: row(Kind::Auction),
            bid: row(Kind::Bid),
        }
    }

    pub(crate) fn append(&mut self, event: &Event) {
        let (ty, kind) = match event {
            Event::Person(_) => (0, Kind::Person),
            Event::Auction(_) => (1, Kind::Auction),
            Event::Bid(_) => (2, Kind::Bid),
        };
        self.event_type.append_value(ty);
        for (k, b) in [
            (Kind::Person, &mut self.person),
            (Kind::Auction, &mut self.auction),
            (Kind::Bid, &mut self.bid),
        ] {
            if let Some(b) = b
                && k != kind
            {
                b.skip();
            }
        }
        // Field order matches PERSON / AUCTION / BID within each type group.
        match event {
            Event::Person(p) => {
                if let Some(b) = &mut self.person {
                    b.ints[0].append_value(int(p.id));
                    for (i, v) in [
                        &p.name,
                        &p.email_address,
                        &p.credit_card,
                        &p.city,
                        &p.state,
                        &p.extra,
                    ]
                    .into_iter()
                    .enumerate()
                    {
                        b.strings[i].append_value(v);
                    }
                    b.times[0].append_value(millis(p.date_time));
                    b.valid.append_non_null();
                }
            }
            Event::Auction(a) => {
                if let Some(b) = &mut self.auction {
                    for (i, v) in [a.id, a.initial_bid, a.reserve, a.seller, a.category]
                        .into_iter()
                        .enumerate()
                    {
                        b.ints[i].append_value(int(v));
                    }
                    for (i, v) in [&a.item_name, &a.description, &a.extra]
                        .into_iter()
                        .enumerate()
                    {
                        b.strings[i].append_value(v);
                    }
                    b.times[0].append_value(millis(a.date_time));
                    b.times[1].append_value(millis(a.expires));
                    b.valid.append_non_null();
                }
            }
            Event::Bid(bid) => {
                if let Some(b) = &mut self.bid {
                    for (i, v) in [bid.auction, bid.bidder, bid.price].into_iter().enumerate() {
                        b.ints[i].append_value(int(v));
                    }
                    for (i, v) in [&bid.channel, &bid.url, &bid.extra].into_iter().enumerate() {
                        b.strings[i].append_value(v);
                    }
                    b.times[0].append_value(millis(bid.date_time));
                    b.valid.append_non_null();
                }
            }
        }
    }

    /// The rows appended since the last call, as the declared columns.
    pub(crate) fn finish(&mut self, layout: &Layout) -> Result<RecordBatch> {
        let event_type: ArrayRef = Arc::new(self.event_type.finish());
        let mut rows = [
            (
                Kind::Person,
                self.person.as_mut().map(|b| b.finish(Kind::Person)),
            ),
            (
                Kind::Auction,
                self.auction.as_mut().map(|b| b.finish(Kind::Auction)),
            ),
            (Kind::Bid, self.bid.as_mut().map(|b| b.finish(Kind::Bid))),
        ];
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(layout.columns.len());
        for (c, f) in layout.columns.iter().zip(layout.schema.fields()) {
            match c {
                Column::EventType => columns.push(convert(&event_type, f.data_type())?),
                Column::Row { kind, fields, from } => {
                    let Some((_, Some((generated, nulls)))) =
                        rows.iter_mut().find(|(k, _)| k == kind)
                    else {
                        return Err(Error::Internal(format!("nexmark: no {kind:?} builder")));
                    };
                    let children = from
                        .iter()
                        .zip(fields.iter())
                        .map(|(i, field)| convert(&generated[*i], field.data_type()))
                        .collect::<Result<Vec<_>>>()?;
                    columns.push(Arc::new(StructArray::try_new(
                        fields.clone(),
                        children,
                        nulls.clone(),
                    )?));
                }
            }
        }
        Ok(RecordBatch::try_new(layout.schema(), columns)?)
    }
}

fn convert(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        Ok(Arc::clone(array))
    } else {
        Ok(cast(array, to)?)
    }
}
