//! Raw randomuser.me users -> the tutorial's formatted users. Pure; no I/O.
//!
//! [`format_user`] is the tutorial's `format_data`, field for field, with two corrections: the
//! id is the API's own `login.uuid` (stable when a request is retried or a file replayed, so
//! duplicates can be removed downstream), and `post_code` is always text (the API returns a
//! number for some nationalities). `nat`, `country` and `created_at` (the fetch time) are
//! added for the windowed counts. A raw user that lacks a field is an error naming the field,
//! never a record with holes.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user as the tutorial's `format_data` produced it, plus `nat`, `country` and `created_at`.
/// Serialized in this field order; this is also what the built-in generator emits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormattedUser {
    /// `login.uuid`, canonical lower-case text.
    pub id: String,
    /// `name.first`.
    pub first_name: String,
    /// `name.last`.
    pub last_name: String,
    /// `gender`.
    pub gender: String,
    /// `"{street.number} {street.name}, {city}, {state}, {country}"` of `location`.
    pub address: String,
    /// `location.postcode`, always text.
    pub post_code: String,
    /// `email`.
    pub email: String,
    /// `login.username`.
    pub username: String,
    /// `dob.date`.
    pub dob: String,
    /// `registered.date`.
    pub registered_date: String,
    /// `phone`.
    pub phone: String,
    /// `picture.medium`.
    pub picture: String,
    /// `nat`.
    pub nat: String,
    /// `location.country`.
    pub country: String,
    /// When the user was fetched: RFC 3339, UTC, milliseconds.
    pub created_at: String,
}

/// Why a record cannot be formatted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A field is absent or null.
    #[error("missing field {0}")]
    Missing(String),
    /// A field has the wrong JSON type.
    #[error("field {path} is {found}, expected {expected}")]
    Type {
        /// Dotted path of the field.
        path: String,
        /// What it is.
        found: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// The id is not a UUID.
    #[error("{path} {value:?} is not a UUID")]
    BadId {
        /// Where the id came from.
        path: &'static str,
        /// The offending text.
        value: String,
    },
    /// `created_at` is not an RFC 3339 time.
    #[error("created_at {0:?} is not an RFC 3339 time")]
    BadTime(String),
    /// The line is not JSON, or not a user at all.
    #[error("{0}")]
    NotAUser(String),
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn field<'v>(raw: &'v Value, path: &str) -> Result<&'v Value, FormatError> {
    let mut v = raw;
    for part in path.split('.') {
        v = match v.get(part) {
            Some(Value::Null) | None => return Err(FormatError::Missing(path.into())),
            Some(next) => next,
        };
    }
    Ok(v)
}

fn text(raw: &Value, path: &str) -> Result<String, FormatError> {
    match field(raw, path)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(FormatError::Type {
            path: path.into(),
            found: kind(other),
            expected: "text",
        }),
    }
}

/// Text, or a number rendered as the API would print it (street numbers, postcodes).
fn text_or_number(raw: &Value, path: &str) -> Result<String, FormatError> {
    match field(raw, path)? {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(FormatError::Type {
            path: path.into(),
            found: kind(other),
            expected: "text or a number",
        }),
    }
}

fn canonical_uuid(path: &'static str, text: &str) -> Result<String, FormatError> {
    uuid::Uuid::parse_str(text)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| FormatError::BadId {
            path,
            value: text.chars().take(64).collect(),
        })
}

/// Formats one element of the API's `results`, fetched at `created_at_ms` (epoch ms).
pub fn format_user(raw: &Value, created_at_ms: u64) -> Result<FormattedUser, FormatError> {
    if !raw.is_object() {
        return Err(FormatError::NotAUser(format!(
            "a user must be a JSON object, found {}",
            kind(raw)
        )));
    }
    let id = canonical_uuid("login.uuid", &text(raw, "login.uuid")?)?;
    let country = text(raw, "location.country")?;
    let address = format!(
        "{} {}, {}, {}, {}",
        text_or_number(raw, "location.street.number")?,
        text(raw, "location.street.name")?,
        text(raw, "location.city")?,
        text_or_number(raw, "location.state")?,
        country
    );
    Ok(FormattedUser {
        id,
        first_name: text(raw, "name.first")?,
        last_name: text(raw, "name.last")?,
        gender: text(raw, "gender")?,
        address,
        post_code: text_or_number(raw, "location.postcode")?,
        email: text(raw, "email")?,
        username: text(raw, "login.username")?,
        dob: text(raw, "dob.date")?,
        registered_date: text(raw, "registered.date")?,
        phone: text(raw, "phone")?,
        picture: text(raw, "picture.medium")?,
        nat: text(raw, "nat")?,
        country,
        created_at: crate::data::timestamp::rfc3339(created_at_ms),
    })
}

/// The `results` of an API response, or why the response is unusable.
pub fn parse_response(body: &[u8]) -> Result<Vec<Value>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if let Some(error) = value.get("error") {
        return Err(format!("the API answered with an error: {error}"));
    }
    match value.get("results") {
        Some(Value::Array(results)) => Ok(results.clone()),
        Some(other) => Err(format!("`results` is {}, expected an array", kind(other))),
        None => Err("no `results` array".into()),
    }
}

impl FormattedUser {
    /// Checks a user that arrived already formatted (a replayed file): canonical id, and a
    /// `created_at` that parses. Returns `created_at` in epoch ms.
    pub fn validate(&mut self) -> Result<i64, FormatError> {
        self.id = canonical_uuid("id", &self.id)?;
        crate::data::timestamp::parse_rfc3339(&self.created_at)
            .ok_or_else(|| FormatError::BadTime(self.created_at.clone()))
    }

    /// The JSON bytes produced to Kafka.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One line of a replayed file, formatted: a whole API response (its `results`), one raw API
/// user, or one already formatted user. Raw users get `created_at = now_ms`.
pub fn format_line(line: &[u8], now_ms: u64) -> Vec<Result<FormattedUser, FormatError>> {
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return vec![Err(FormatError::NotAUser(format!("not JSON: {e}")))],
    };
    if value.get("results").is_some() || value.get("error").is_some() {
        return match parse_response(line) {
            Ok(results) => results.iter().map(|r| format_user(r, now_ms)).collect(),
            Err(e) => vec![Err(FormatError::NotAUser(e))],
        };
    }
    if value.get("login").is_some() {
        return vec![format_user(&value, now_ms)];
    }
    let formatted = serde_json::from_value::<FormattedUser>(value)
        .map_err(|e| {
            FormatError::NotAUser(format!("neither an API user nor a formatted user: {e}"))
        })
        .and_then(|mut u| u.validate().map(|_| u));
    vec![formatted]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A user in the API's documented format (https://randomuser.me/documentation#results).
    fn raw() -> Value {
        json!({
            "gender": "female",
            "name": {"title": "Miss", "first": "Jennie", "last": "Nichols"},
            "location": {
                "street": {"number": 8929, "name": "Valwood Pkwy"},
                "city": "Billings", "state": "Michigan", "country": "United States",
                "postcode": "63104",
                "coordinates": {"latitude": "-69.8246", "longitude": "134.8719"},
                "timezone": {"offset": "+9:30", "description": "Adelaide, Darwin"}
            },
            "email": "jennie.nichols@example.com",
            "login": {
                "uuid": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00",
                "username": "yellowpeacock117", "password": "addison",
                "salt": "sld1yGtd", "md5": "ab54ac4c0be9480ae8fa5e9e2a5196a3",
                "sha1": "edcf2ce613cbdea349133c52dc2f3b83168dc51b",
                "sha256": "48df5229235ada28389b91e60a935e4f9b73eb4bdb855ef9258a1751f10bdc5d"
            },
            "dob": {"date": "1992-03-08T15:13:16.688Z", "age": 30},
            "registered": {"date": "2007-07-09T05:51:59.390Z", "age": 14},
            "phone": "(272) 790-0888", "cell": "(489) 330-2385",
            "id": {"name": "SSN", "value": "405-88-3636"},
            "picture": {
                "large": "https://randomuser.me/api/portraits/men/75.jpg",
                "medium": "https://randomuser.me/api/portraits/med/men/75.jpg",
                "thumbnail": "https://randomuser.me/api/portraits/thumb/men/75.jpg"
            },
            "nat": "US"
        })
    }

    #[test]
    fn formats_the_documented_example_field_for_field() {
        let user = format_user(&raw(), 1_795_255_200_123).unwrap();
        assert_eq!(
            serde_json::to_value(&user).unwrap(),
            json!({
                "id": "7a0eed16-9430-4d68-901f-c0d4c1c3bf00",
                "first_name": "Jennie",
                "last_name": "Nichols",
                "gender": "female",
                "address": "8929 Valwood Pkwy, Billings, Michigan, United States",
                "post_code": "63104",
                "email": "jennie.nichols@example.com",
                "username": "yellowpeacock117",
                "dob": "1992-03-08T15:13:16.688Z",
                "registered_date": "2007-07-09T05:51:59.390Z",
                "phone": "(272) 790-0888",
                "picture": "https://randomuser.me/api/portraits/med/men/75.jpg",
                "nat": "US",
                "country": "United States",
                "created_at": "2026-11-21T10:00:00.123Z"
            })
        );
        // Field order is the tutorial's, then nat, country, created_at.
        let text = String::from_utf8(user.to_json()).unwrap();
        assert!(
            text.starts_with("{\"id\":")
                && text.ends_with("\"created_at\":\"2026-11-21T10:00:00.123Z\"}")
        );
    }

    #[test]
    fn numeric_postcodes_and_street_numbers_become_text_and_names_keep_their_letters() {
        let mut r = raw();
        r["location"]["postcode"] = json!(7020);
        r["location"]["street"]["number"] = json!("12b");
        r["name"]["first"] = json!("Åse");
        r["name"]["last"] = json!("Søndergaard-Müller");
        r["location"]["city"] = json!("Tromsø");
        r["location"]["state"] = json!("Troms og Finnmark");
        r["location"]["country"] = json!("Norway");
        r["login"]["uuid"] = json!("7A0EED16-9430-4D68-901F-C0D4C1C3BF00");
        let user = format_user(&r, 0).unwrap();
        assert_eq!(user.post_code, "7020");
        assert_eq!(user.first_name, "Åse");
        assert_eq!(user.last_name, "Søndergaard-Müller");
        assert_eq!(
            user.address,
            "12b Valwood Pkwy, Tromsø, Troms og Finnmark, Norway"
        );
        assert_eq!(user.id, "7a0eed16-9430-4d68-901f-c0d4c1c3bf00");
        assert_eq!(user.created_at, "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn missing_or_mistyped_fields_are_errors_that_name_the_field() {
        for (path, expected) in [
            ("login", "missing field login.uuid"),
            ("email", "missing field email"),
            ("picture", "missing field picture.medium"),
            ("dob", "missing field dob.date"),
        ] {
            let mut r = raw();
            r.as_object_mut().unwrap().remove(path);
            assert_eq!(format_user(&r, 0).unwrap_err().to_string(), expected);
        }
        let mut r = raw();
        r["location"]["postcode"] = json!(null);
        assert_eq!(
            format_user(&r, 0).unwrap_err(),
            FormatError::Missing("location.postcode".into())
        );
        r["location"]["postcode"] = json!([1]);
        assert_eq!(
            format_user(&r, 0).unwrap_err().to_string(),
            "field location.postcode is an array, expected text or a number"
        );
        let mut r = raw();
        r["login"]["uuid"] = json!("not-a-uuid");
        assert_eq!(
            format_user(&r, 0).unwrap_err().to_string(),
            "login.uuid \"not-a-uuid\" is not a UUID"
        );
        assert!(format_user(&json!([1, 2]), 0).is_err());
    }

    #[test]
    fn responses_without_results_are_errors() {
        let ok = serde_json::to_vec(&json!({"results": [raw()], "info": {"seed": "x", "results": 1, "page": 1, "version": "1.4"}})).unwrap();
        assert_eq!(parse_response(&ok).unwrap().len(), 1);
        assert!(parse_response(&ok[..ok.len() / 2])
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(
            parse_response(br#"{"error":"Uh oh, something has gone wrong."}"#)
                .unwrap_err()
                .contains("Uh oh")
        );
        assert_eq!(
            parse_response(br#"{"info":{}}"#).unwrap_err(),
            "no `results` array"
        );
    }

    #[test]
    fn file_lines_may_be_responses_raw_users_or_formatted_users() {
        let response =
            serde_json::to_vec(&json!({"results": [raw(), {"gender": "male"}]})).unwrap();
        let out = format_line(&response, 5);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok() && out[1].is_err());

        let one = serde_json::to_vec(&raw()).unwrap();
        let user = format_line(&one, 5).remove(0).unwrap();
        assert_eq!(user.created_at, "1970-01-01T00:00:00.005Z");

        let again = format_line(&user.to_json(), 99).remove(0).unwrap();
        assert_eq!(again, user, "a formatted user keeps its created_at");

        let mut bad = serde_json::to_value(&user).unwrap();
        bad["created_at"] = json!("yesterday");
        let bad = serde_json::to_vec(&bad).unwrap();
        assert_eq!(
            format_line(&bad, 0).remove(0).unwrap_err(),
            FormatError::BadTime("yesterday".into())
        );
        assert!(format_line(b"{\"id\":", 0).remove(0).is_err());
        assert!(format_line(b"{\"name\":\"x\"}", 0).remove(0).is_err());
    }
}
