//! The JSON form of message bytes, shared by `consume --format json` (writing) and
//! `produce --format json` (reading): bytes that are valid UTF-8 are a JSON string, other
//! bytes are an object `{"base64": "..."}` (standard alphabet, padded), and an absent key
//! or header value is `null`. A string is always the bytes' UTF-8 text, so a value that
//! happens to look like base64 is never decoded by mistake.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// `bytes` as JSON: `null`, a string, or `{"base64": "..."}`.
pub(crate) fn bytes_to_json(bytes: Option<&[u8]>) -> Value {
    match bytes {
        None => Value::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(text) => Value::String(text.to_string()),
            Err(_) => json!({ "base64": STANDARD.encode(b) }),
        },
    }
}

/// Message headers as JSON: a list of `{"key": ..., "value": ...}` in record order (keys
/// may repeat, so not an object).
pub(crate) fn headers_to_json(headers: &[(Bytes, Option<Bytes>)]) -> Value {
    let list = headers
        .iter()
        .map(|(k, v)| json!({ "key": bytes_to_json(Some(k)), "value": bytes_to_json(v.as_deref()) }))
        .collect();
    Value::Array(list)
}

/// The bytes a JSON field holds (the inverse of [`bytes_to_json`]); `what` names the field
/// in the error.
pub(crate) fn json_to_bytes(value: &Value, what: &str) -> Result<Option<Bytes>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) => Ok(Some(Bytes::copy_from_slice(text.as_bytes()))),
        Value::Object(map) if map.len() == 1 => match map.get("base64") {
            Some(Value::String(encoded)) => STANDARD
                .decode(encoded)
                .map(|b| Some(Bytes::from(b)))
                .map_err(|e| format!("{what}: invalid base64: {e}")),
            _ => Err(format!("{what}: expected a string, null or {{\"base64\": \"...\"}}")),
        },
        _ => Err(format!("{what}: expected a string, null or {{\"base64\": \"...\"}}")),
    }
}

/// Headers given as an object (`{"k": "v"}`) or as a list of `{"key", "value"}` objects.
pub(crate) fn json_to_headers(value: &Value) -> Result<Vec<(Bytes, Option<Bytes>)>, String> {
    let pair = |key: &Value, value: &Value| -> Result<(Bytes, Option<Bytes>), String> {
        let key = json_to_bytes(key, "header key")?.ok_or("header key: null")?;
        Ok((key, json_to_bytes(value, "header value")?))
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map.iter().map(|(k, v)| pair(&Value::String(k.clone()), v)).collect(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item.as_object() {
                Some(obj) if is_key_value(obj) => pair(&obj["key"], obj.get("value").unwrap_or(&Value::Null)),
                _ => Err("headers: each list item must be {\"key\": ..., \"value\": ...}".to_string()),
            })
            .collect(),
        _ => Err("headers: expected an object or a list of {\"key\", \"value\"} objects".to_string()),
    }
}

fn is_key_value(obj: &Map<String, Value>) -> bool {
    obj.contains_key("key") && obj.keys().all(|k| k == "key" || k == "value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_through_json() {
        for bytes in [None, Some(&b""[..]), Some(b"plain text"), Some(b"\xff\x00binary")] {
            let json = bytes_to_json(bytes);
            assert_eq!(json_to_bytes(&json, "v").unwrap().as_deref(), bytes, "{json}");
        }
        assert_eq!(bytes_to_json(Some(b"\xff")), json!({"base64": "/w=="}));
        assert_eq!(bytes_to_json(Some(b"aGk=")), json!("aGk="), "a string is never decoded");
        assert!(json_to_bytes(&json!(5), "value").unwrap_err().starts_with("value: expected"));
        assert!(json_to_bytes(&json!({"base64": "!!"}), "key").unwrap_err().contains("invalid base64"));
    }

    #[test]
    fn headers_as_object_or_list() {
        let from_object = json_to_headers(&json!({"a": "1", "b": null})).unwrap();
        assert_eq!(from_object, vec![(Bytes::from("a"), Some(Bytes::from("1"))), (Bytes::from("b"), None)]);
        let list = json!([{"key": "a", "value": "1"}, {"key": "a"}]);
        let from_list = json_to_headers(&list).unwrap();
        assert_eq!(from_list, vec![(Bytes::from("a"), Some(Bytes::from("1"))), (Bytes::from("a"), None)]);
        assert_eq!(json_to_headers(&headers_to_json(&from_list)).unwrap(), from_list);
        assert!(json_to_headers(&json!([{"value": "x"}])).is_err());
        assert!(json_to_headers(&json!("a=1")).is_err());
    }
}
