//! Reading request bodies and query strings with errors that name the field at fault, and
//! writing JSON responses.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Parses a body that must be a JSON object. An empty body counts as `{}` only when `allow_empty`.
pub fn object(body: &[u8], allow_empty: bool) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(Map::new())
        } else {
            Err(ApiError::bad_request("request body is required"))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            reject_nul(&map)?;
            Ok(map)
        }
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(err) => Err(ApiError::bad_request(format!("invalid JSON body: {err}"))),
    }
}

/// Refuses a NUL character anywhere in a body, naming the field. Postgres text cannot hold one,
/// so it is refused here, once, for every backend alike (DESIGN.md §2.8: a clear 4xx, nothing
/// changed), rather than failing deep in one store. Every request body passes through here, so
/// the walk allocates nothing unless it finds a NUL.
fn reject_nul(map: &Map<String, Value>) -> ApiResult<()> {
    let Some(found) = map
        .iter()
        .find_map(|(name, value)| nul_in_field(name, value))
    else {
        return Ok(());
    };
    let path: String = found
        .steps
        .iter()
        .rev()
        .enumerate()
        .map(|(depth, step)| match step {
            Step::Field(name) if depth == 0 => (*name).to_owned(),
            Step::Field(name) => format!(".{name}"),
            Step::Index(i) => format!("[{i}]"),
        })
        .collect();
    Err(if found.in_name {
        let within = if path.is_empty() {
            "request body"
        } else {
            &path
        };
        ApiError::bad_request(format!(
            "field names in {within} must not contain NUL characters"
        ))
    } else {
        nul_error(&path)
    })
}

/// One step of the path to a NUL.
enum Step<'a> {
    Field(&'a str),
    Index(usize),
}

/// Where a NUL is: the steps to it, innermost first (pushed while the search unwinds), and
/// whether it is in a field name rather than a value.
struct Nul<'a> {
    steps: Vec<Step<'a>>,
    in_name: bool,
}

fn nul_in_field<'a>(name: &'a str, value: &'a Value) -> Option<Nul<'a>> {
    if name.contains('\0') {
        return Some(Nul {
            steps: Vec::new(),
            in_name: true,
        });
    }
    nul_in(value).map(|mut found| {
        found.steps.push(Step::Field(name));
        found
    })
}

fn nul_in(value: &Value) -> Option<Nul<'_>> {
    match value {
        Value::String(s) if s.contains('\0') => Some(Nul {
            steps: Vec::new(),
            in_name: false,
        }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            nul_in(item).map(|mut found| {
                found.steps.push(Step::Index(i));
                found
            })
        }),
        Value::Object(map) => map.iter().find_map(|(name, item)| nul_in_field(name, item)),
        _ => None,
    }
}

fn nul_error(name: &str) -> ApiError {
    ApiError::bad_request(format!("{name} must not contain NUL characters"))
}

/// Typed access to the fields of a JSON object; errors name the field by its full path
/// (`tasks[2].max_retries`). `null` counts as absent.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> Fields<'a> {
    /// Fields of a top-level object.
    pub fn new(map: &'a Map<String, Value>) -> Self {
        Self { map, prefix: "" }
    }

    /// Fields of a nested object whose path is `prefix` (e.g. `tasks[0]`).
    pub fn nested(map: &'a Map<String, Value>, prefix: &'a str) -> Self {
        Self { map, prefix }
    }

    /// The full path of a field, for messages.
    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.map.get(name).filter(|v| !v.is_null())
    }

    /// An optional string.
    pub fn str(&self, name: &str) -> ApiResult<Option<&'a str>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{} must be a string",
                self.path(name)
            ))),
        }
    }

    /// A required, non-empty string (after trimming) of at most `max_len` characters.
    pub fn required_str(&self, name: &str, max_len: usize) -> ApiResult<&'a str> {
        match self.str(name)? {
            None => Err(ApiError::bad_request(format!(
                "{} is required",
                self.path(name)
            ))),
            Some(s) if s.trim().is_empty() => Err(ApiError::bad_request(format!(
                "{} must be a non-empty string",
                self.path(name)
            ))),
            Some(s) if s.chars().count() > max_len => Err(ApiError::bad_request(format!(
                "{} must be at most {max_len} characters",
                self.path(name)
            ))),
            Some(s) => Ok(s),
        }
    }

    /// An optional integer within `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> ApiResult<Option<i64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v
                .as_i64()
                .or_else(|| integral(v, -TWO_POW_63, TWO_POW_63).map(|f| f as i64))
            {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(ApiError::bad_request(format!(
                    "{} must be an integer from {min} to {max}",
                    self.path(name)
                ))),
            },
        }
    }

    /// An optional non-negative integer.
    pub fn non_negative(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| integral(v, 0.0, TWO_POW_64).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{} must be a non-negative integer",
                        self.path(name)
                    ))
                }),
        }
    }

    /// An optional number.
    pub fn number(&self, name: &str) -> ApiResult<Option<f64>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("{} must be a number", self.path(name)))
            }),
        }
    }

    /// An optional boolean.
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{} must be true or false",
                self.path(name)
            ))),
        }
    }

    /// An optional array.
    pub fn array(&self, name: &str) -> ApiResult<Option<&'a Vec<Value>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(ApiError::bad_request(format!(
                "{} must be an array",
                self.path(name)
            ))),
        }
    }

    /// An optional array of strings.
    pub fn string_list(&self, name: &str) -> ApiResult<Option<Vec<String>>> {
        let Some(items) = self.array(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::bad_request(format!(
                    "{}[{i}] must be a string",
                    self.path(name)
                ))),
            })
            .collect::<ApiResult<Vec<_>>>()
            .map(Some)
    }

    /// An optional object whose values are all strings.
    pub fn string_map(&self, name: &str) -> ApiResult<Option<BTreeMap<String, String>>> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(ApiError::bad_request(format!(
                        "{}.{k} must be a string",
                        self.path(name)
                    ))),
                })
                .collect::<ApiResult<BTreeMap<_, _>>>()
                .map(Some),
            Some(_) => Err(ApiError::bad_request(format!(
                "{} must be an object of strings",
                self.path(name)
            ))),
        }
    }

    /// An optional JSON value of any type except null.
    pub fn value(&self, name: &str) -> Option<&'a Value> {
        self.get(name)
    }
}

/// A parsed query string. The first occurrence of a parameter wins.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `a=1&b=x%20y`. A NUL character (`%00`) in a name or value is a 400 naming the
    /// parameter, as in a body.
    pub fn parse(raw: Option<&str>) -> ApiResult<Self> {
        let pairs: Vec<(String, String)> = raw
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some((name, _)) = pairs
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(if name.contains('\0') {
                ApiError::bad_request("query parameter names must not contain NUL characters")
            } else {
                nul_error(name)
            });
        }
        Ok(Self { pairs })
    }

    /// A parameter's value; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw(name).filter(|v| !v.is_empty())
    }

    /// A parameter's value as sent, empty included: a number sent empty (`limit=`) is not a
    /// number and must be refused, not taken as absent.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-negative integer parameter; anything else is a 400 naming it.
    pub fn non_negative(&self, name: &str) -> ApiResult<Option<u64>> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => match v.parse::<u64>() {
                Ok(n) => Ok(Some(n)),
                // Too large for u64 is still a non-negative integer: callers clamp it
                // (DESIGN.md §4: limits above their cap are clamped, not rejected).
                Err(_) if is_digits(v) => Ok(Some(u64::MAX)),
                Err(_) => Err(ApiError::bad_request(format!(
                    "{name} must be a non-negative integer"
                ))),
            },
        }
    }

    /// `limit`: absent or 0 means `default`; above `cap` is clamped.
    pub fn limit(&self, default: usize, cap: usize) -> ApiResult<usize> {
        Ok(match self.non_negative("limit")? {
            None | Some(0) => default,
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(cap),
        })
    }

    /// `limit` where it must be a positive integer when given (the audit log's paging, as the
    /// seed defines it): absent means `default`; above `cap` is clamped.
    pub fn positive_limit(&self, default: usize, cap: usize) -> ApiResult<usize> {
        match self.raw("limit") {
            None => Ok(default),
            Some(v) if is_digits(v) && v.bytes().any(|b| b != b'0') => {
                Ok(v.parse::<usize>().map_or(cap, |n| n.min(cap)))
            }
            Some(_) => Err(ApiError::bad_request("limit must be a positive integer")),
        }
    }

    /// `offset`: absent means 0.
    pub fn offset(&self) -> ApiResult<usize> {
        Ok(self
            .non_negative("offset")?
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX)))
    }
}

const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// A JSON number written with a fraction or exponent that is exactly an integer in
/// `lower..upper` (`2.0`, `1e3`): JSON Schema counts it as an integer, so clients generated from
/// the OpenAPI description may send it. Integral and in range, so casting it is exact.
fn integral(v: &Value, lower: f64, upper: f64) -> Option<f64> {
    v.as_f64()
        .filter(|f| f.fract() == 0.0 && *f >= lower && *f < upper)
}

/// True for a non-empty run of ASCII digits: an integer written without sign or exponent.
pub(crate) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_naming_the_field() {
        let refused = |body: &str| {
            object(body.as_bytes(), false)
                .map(|_| ())
                .unwrap_err()
                .message
        };
        assert_eq!(
            refused(r#"{"input":"a\u0000b"}"#),
            "input must not contain NUL characters"
        );
        assert_eq!(
            refused(r#"{"tasks":[{"inputs":{"k":"\u0000"}}]}"#),
            "tasks[0].inputs.k must not contain NUL characters"
        );
        assert_eq!(
            refused(r#"{"models":["ok","\u0000"]}"#),
            "models[1] must not contain NUL characters"
        );
        assert_eq!(
            refused(r#"{"a":{"k\u0000":"v"}}"#),
            "field names in a must not contain NUL characters"
        );
        assert!(object(br#"{"input":"a\\u0000 is text, not NUL"}"#, false).is_ok());
        assert_eq!(
            Query::parse(Some("limit=1&tenant=a%00b"))
                .unwrap_err()
                .message,
            "tenant must not contain NUL characters"
        );
        assert!(Query::parse(Some("a%00=1")).is_err());
        assert!(Query::parse(Some("tenant=a%20b")).is_ok());
    }

    #[test]
    fn integral_numbers_count_as_integers() {
        let body = object(
            br#"{"a": 2.0, "b": 1e3, "c": 2.5, "d": -1.0, "e": 1e30}"#,
            false,
        )
        .unwrap();
        let f = Fields::new(&body);
        assert_eq!(f.int("a", 0, 10).unwrap(), Some(2));
        assert_eq!(f.non_negative("b").unwrap(), Some(1000));
        assert!(f.int("c", 0, 10).is_err());
        assert!(f.non_negative("c").is_err());
        assert!(f.non_negative("d").is_err());
        assert_eq!(f.int("d", -5, 5).unwrap(), Some(-1));
        assert!(f.non_negative("e").is_err(), "beyond u64");
        assert!(f.int("e", 0, i64::MAX).is_err(), "beyond i64");
    }
}
