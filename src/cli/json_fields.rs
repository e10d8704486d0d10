//! Taking a record's key and timestamp from fields of a JSON line, without building the whole
//! JSON value: other fields are skipped unparsed and field names are compared in place.

use std::fmt;

use bytes::Bytes;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

/// The JSON fields `produce` takes the key and the timestamp from.
#[derive(Clone, Copy)]
pub(crate) struct Fields<'a> {
    pub(crate) key: Option<&'a str>,
    pub(crate) timestamp: Option<&'a str>,
}

impl Fields<'_> {
    /// The key and timestamp of a line holding a JSON object, or why there are none.
    pub(crate) fn extract(
        self,
        line: &[u8],
    ) -> std::result::Result<(Option<Bytes>, Option<i64>), String> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let found = ObjectSeed(self)
            .deserialize(&mut de)
            .and_then(|found| de.end().map(|()| found))
            .map_err(|e| {
                let msg = e.to_string();
                let msg = msg
                    .rsplit_once(" at line ")
                    .map_or(msg.as_str(), |(m, _)| m);
                format!("not a JSON object: {msg} at column {}", e.column())
            })?;
        let key = match (self.key, found.key) {
            (None, _) => None,
            (Some(f), None) => return Err(format!("the JSON object has no field `{f}`")),
            (Some(f), Some(Value::Null)) => return Err(format!("field `{f}` is null: no key")),
            (Some(_), Some(Value::String(s))) => Some(Bytes::from(s)),
            (Some(_), Some(v)) => Some(Bytes::from(v.to_string())),
        };
        let timestamp = match (self.timestamp, found.timestamp) {
            (None, _) => None,
            (Some(f), None) => return Err(format!("the JSON object has no field `{f}`")),
            (Some(f), Some(v)) => Some(timestamp_millis(&v).ok_or_else(|| {
                format!(
                    "field `{f}` holds {v}, not epoch milliseconds or an RFC 3339 time \
                     such as \"2024-05-01T12:00:00Z\""
                )
            })?),
        };
        Ok((key, timestamp))
    }
}

/// Whole epoch milliseconds within the range of dates that can be printed, or an RFC 3339 time.
fn timestamp_millis(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|&ms| chrono::DateTime::from_timestamp_millis(ms).is_some()),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

#[derive(Default)]
struct Found {
    key: Option<Value>,
    timestamp: Option<Value>,
}

/// Which wanted field a JSON object key names, found without allocating.
enum Field {
    Key,
    Timestamp,
    Both,
    Other,
}

struct FieldSeed<'a>(Fields<'a>);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Field, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for FieldSeed<'_> {
    type Value = Field;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Field, E> {
        let key = self.0.key == Some(v);
        let ts = self.0.timestamp == Some(v);
        Ok(match (key, ts) {
            (true, true) => Field::Both,
            (true, false) => Field::Key,
            (false, true) => Field::Timestamp,
            (false, false) => Field::Other,
        })
    }
}

/// Reads one JSON object, keeping only the wanted fields' values.
struct ObjectSeed<'a>(Fields<'a>);

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Found;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Found, A::Error> {
        let mut found = Found::default();
        while let Some(field) = map.next_key_seed(FieldSeed(self.0))? {
            match field {
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
                Field::Key => found.key = Some(map.next_value()?),
                Field::Timestamp => found.timestamp = Some(map.next_value()?),
                Field::Both => {
                    let v: Value = map.next_value()?;
                    found.timestamp = Some(v.clone());
                    found.key = Some(v);
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Fields<'static> = Fields {
        key: Some("user"),
        timestamp: Some("ts"),
    };

    #[test]
    fn keys_and_timestamps_are_extracted() {
        let (k, t) = BOTH
            .extract(br#"{"a":[1,{"user":2}],"user":"al\"ice","ts":1500}"#)
            .unwrap();
        assert_eq!(k.as_deref(), Some(&b"al\"ice"[..]));
        assert_eq!(t, Some(1500));
        let (k, t) = BOTH
            .extract(br#"{"user":42,"ts":"1970-01-01T00:00:02Z"}"#)
            .unwrap();
        assert_eq!(k.as_deref(), Some(&b"42"[..]));
        assert_eq!(t, Some(2000));
        let (k, _) = BOTH.extract(br#"{"user":{"id":1},"ts":0}"#).unwrap();
        assert_eq!(k.as_deref(), Some(&br#"{"id":1}"#[..]));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(
            BOTH.extract(b"hello")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            BOTH.extract(b"[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(BOTH.extract(br#"{"ts":1}"#).unwrap_err().contains("`user`"));
        assert!(
            BOTH.extract(br#"{"user":"a","ts":true}"#)
                .unwrap_err()
                .contains("`ts`")
        );
        assert!(BOTH.extract(br#"{"user":"a","ts":1} x"#).is_err());
    }
}
