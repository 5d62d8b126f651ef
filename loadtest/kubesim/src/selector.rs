//! Label and field selectors, in the query-string syntax of `labelSelector` / `fieldSelector`.

use serde_json::{Map, Value};

use crate::error::Error;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// `app=web,tier in (a,b),!canary`: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<(String, Op)>);

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let bad = || {
            Error::BadRequest(format!(
                "unable to parse requirement: invalid label selector {text:?}"
            ))
        };
        let mut reqs = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let req = if let Some(key) = term.strip_prefix('!') {
                (key.trim().to_string(), Op::NotExists)
            } else if let Some(open) = term.find('(') {
                let close = term.rfind(')').filter(|&c| c > open).ok_or_else(bad)?;
                let values = term[open + 1..close]
                    .split(',')
                    .map(|v| v.trim().to_string())
                    .collect();
                let mut head = term[..open].split_whitespace();
                let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
                    return Err(bad());
                };
                let op = match op {
                    "in" => Op::In(values),
                    "notin" => Op::NotIn(values),
                    _ => return Err(bad()),
                };
                (key.to_string(), op)
            } else if let Some((key, value)) = term.split_once("!=") {
                (
                    key.trim().to_string(),
                    Op::NotIn(vec![value.trim().to_string()]),
                )
            } else if let Some((key, value)) = term.split_once('=') {
                let value = value.strip_prefix('=').unwrap_or(value);
                (
                    key.trim().to_string(),
                    Op::In(vec![value.trim().to_string()]),
                )
            } else {
                (term.to_string(), Op::Exists)
            };
            let values_ok = match &req.1 {
                Op::In(values) | Op::NotIn(values) => {
                    values.iter().all(|v| v.chars().all(label_char))
                }
                Op::Exists | Op::NotExists => true,
            };
            if req.0.is_empty() || !req.0.chars().all(|c| label_char(c) || c == '/') || !values_ok {
                return Err(bad());
            }
            reqs.push(req);
        }
        Ok(LabelSelector(reqs))
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        self.0.iter().all(|(key, op)| {
            let value = labels.get(key).and_then(Value::as_str);
            match op {
                Op::In(values) => value.is_some_and(|v| values.iter().any(|x| x == v)),
                // a missing label satisfies `!=` and `notin`, as in Kubernetes
                Op::NotIn(values) => value.is_none_or(|v| values.iter().all(|x| x != v)),
                Op::Exists => value.is_some(),
                Op::NotExists => value.is_none(),
            }
        })
    }
}

/// Characters of label names and values (keys may add one `/` after a DNS prefix).
fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// Splits on commas outside parentheses (`a in (x,y),b` is two terms).
fn split_top_level(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

/// `spec.nodeName=node-1,metadata.name!=x`. Any dotted path into the object is accepted (the
/// real API server allows a per-kind list); absent fields compare as the empty string, which is
/// what makes `spec.nodeName=` select unscheduled pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut reqs = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, equal, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once('=') {
                (p, true, v.strip_prefix('=').unwrap_or(v))
            } else {
                return Err(Error::BadRequest(format!(
                    "invalid field selector: {term:?}"
                )));
            };
            let path = path.trim().split('.').map(str::to_string).collect();
            reqs.push((path, equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, equal, want)| {
            let field = path.iter().try_fold(obj, |v, step| v.get(step.as_str()));
            let have = match field {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *equal
        })
    }
}

/// Whether a plain `key: value` selector (a Service's, a ReplicationController's) selects an
/// object. An empty selector selects nothing, as for Services.
pub(crate) fn map_selects(selector: &Map<String, Value>, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A selector object (`matchLabels` / `matchExpressions`, or a plain map) in query-string syntax,
/// as the scale subresource reports it in `status.selector`.
pub(crate) fn to_query(selector: &Value) -> String {
    let Some(map) = selector.as_object() else {
        return String::new();
    };
    if !map.contains_key("matchLabels") && !map.contains_key("matchExpressions") {
        return pairs(map);
    }
    let mut terms = Vec::new();
    if let Some(labels) = selector["matchLabels"].as_object() {
        terms.push(pairs(labels));
    }
    for expr in selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = expr["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = expr["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        terms.push(match expr["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "DoesNotExist" => format!("!{key}"),
            _ => key.to_string(),
        });
    }
    terms.retain(|t| !t.is_empty());
    terms.join(",")
}

fn pairs(map: &Map<String, Value>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn labelled(labels: Value) -> Value {
        json!({ "metadata": { "labels": labels } })
    }

    #[test]
    fn label_selector_operators() {
        let obj = labelled(json!({ "app": "web", "tier": "front" }));
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("tier in (front, back),app", true),
            ("tier notin (front)", false),
            ("!canary", true),
            ("!app", false),
            ("canary!=yes", true),
            ("app=web,tier=back", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selector_paths() {
        let pod = json!({ "metadata": { "name": "p" }, "spec": { "nodeName": "n1" }, "status": { "phase": "Running" } });
        let sel = FieldSelector::parse("spec.nodeName=n1,metadata.name!=q").unwrap();
        assert!(sel.matches(&pod));
        assert!(
            !FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            FieldSelector::parse("spec.hostname=")
                .unwrap()
                .matches(&pod)
        );
        assert!(
            FieldSelector::parse("metadata.name==p")
                .unwrap()
                .matches(&pod)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn selector_objects_render_as_queries() {
        let sel = json!({ "matchLabels": { "app": "web" }, "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["a", "b"] }] });
        assert_eq!(to_query(&sel), "app=web,tier in (a,b)");
        assert_eq!(to_query(&json!({ "app": "web" })), "app=web");
        let map = json!({ "app": "web" });
        assert!(map_selects(
            map.as_object().unwrap(),
            &labelled(json!({ "app": "web", "x": "y" }))
        ));
        assert!(!map_selects(
            &Map::new(),
            &labelled(json!({ "app": "web" }))
        ));
    }
}
